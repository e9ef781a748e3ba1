import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  AssignmentSchema,
  DepGraphService,
  ImportMode,
  JobOutcome,
  DependencyManifestEntrySchema,
  JobSchema,
  PackageSchema,
  ReturnReason,
  ScanProblemSchema,
  type Assignment as WireAssignment,
  type ImportScanRequest,
  type LeaseRef as WireLeaseRef,
  type ScanProblem,
  type WatchJobsRequest,
  type WatchJobsResponse,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { Build, type Job } from "./core/build.js";
import { SHARED_TREE, type DepGraph, type JobResult, type LeaseRef, type ScanJobResult } from "./core/depgraph.js";
import { pendingBuildToWire, problemToWire, scanOutputFromWire, scanScopeFromWire, scanTaskToWire, scanToWire } from "./convert-scan.js";
import { InvalidRequest, type InvalidScanRecord } from "./core/errors.js";
import { createScanRecordParser, isValidLocation, type ScanRecord } from "./core/scan-record.js";
import {
  buildModeFromWire,
  buildToWire,
  dependencyPackageToWire,
  jobStateFromWire,
  jobToWire,
  packageToWire,
  policyFromWire,
  transitionToWire,
  treeSummaryToWire,
} from "./convert.js";
import type { DurationHistory } from "./core/history.js";
import { NO_NEEDS } from "../shared/placement.js";
import type { PlacementRound } from "./core/depgraph.js";
import { hostFromWire, needsToWire } from "./resources-wire.js";
import { waitOf } from "./core/explain.js";
import { explainContext, waitReasonToWire } from "./status-service.js";
import { readBinaryPackages } from "./packages-dir.js";
import { MAX_PAGE_SIZE, pageOf } from "./paging.js";
import { pushInSlices, runSliced } from "./slices.js";
import { runScanHelper, type ScanHelperOptions } from "./scan-helper.js";
import { toConnectError } from "./status.js";
import { buildEventToWire, watchBuildEvents } from "./build-events.js";
import { createStatusHandlers } from "./status-service.js";
import { checkRemovedShare, checkWhole, maxRemovedShareFromWire } from "./core/import-guard.js";
import { estimatePackageBytes, packagePage, pageSizeFromWire } from "./package-pages.js";
import { quote } from "../shared/quote.js";
import { cutOffStalled, DEFAULT_STALL_MS } from "../shared/stream-guard.js";

export interface DepGraphServiceOptions {
  readonly depgraph: DepGraph;
  readonly history: DurationHistory;
  readonly logger: Logger;
  /** Binary package directory used when a build names none. */
  readonly packagesDir: string;
  readonly scanHelper: ScanHelperOptions | undefined;
  /** Longest NextReadyJob wait a caller may ask for. */
  readonly maxWaitMs: number;
  /** Most jobs one NextReadyJob call may lease. */
  readonly maxJobsPerCall: number;
  /** Most transitions a WatchJobs stream may fall behind before it is ended. */
  readonly maxWatchBacklog: number;
  /** Most bytes of transitions a WatchJobs stream may fall behind (default DEFAULT_WATCH_BACKLOG_BYTES). */
  readonly maxWatchBacklogBytes?: number;
  /** Longest a streamed message may wait for its reader before the stream is cut off (default DEFAULT_STALL_MS). */
  readonly streamStallMs?: number;
  /** The clock the core was given, so the lease timer agrees with it. */
  readonly now: () => number;
  /**
   * Resolves once the state changes made so far are durable (or a bound
   * passes); calls that change state answer only after it.
   */
  readonly durable?: () => Promise<unknown>;
  /** Most characters one ImportScan stream may carry (default DEFAULT_MAX_IMPORT_BYTES); more is RESOURCE_EXHAUSTED. */
  readonly maxImportBytes?: number;
}

/**
 * A watcher's backlog in bytes: cancelling a 29,000-job build queues about
 * 4.5 MB of transitions at once, which a reader that keeps up takes; one
 * that does not is ended rather than buffered for.
 */
export const DEFAULT_WATCH_BACKLOG_BYTES = 8 * 1024 * 1024;

function transitionBytes(t: WatchJobsResponse): number {
  // A build event carries the build: its counts and its limit list.
  const build = t.buildEvent?.build;
  const buildBytes = build === undefined ? 0 : 512 + build.limitTo.reduce((n, s) => n + s.length + 2, 0) + build.problem.length;
  return 64 + t.buildId.length + t.pkgname.length + t.location.length + t.reason.length + t.agentId.length + t.host.length + buildBytes;
}

/** A whole pkgsrc scan is about 60 MB of text; four times that is still an import, more is not. */
export const DEFAULT_MAX_IMPORT_BYTES = 256 * 1024 * 1024;

/** ImportTooLarge: an ImportScan stream longer than the server takes. */
class ImportTooLarge extends ConnectError {
  constructor(limit: number) {
    super(`the import is longer than this server takes (${limit} bytes, --max-import-mib); nothing was imported`, Code.ResourceExhausted);
  }
}

/**
 * Encoded bytes after which a NextReadyJob answer takes no further job:
 * with the one that passed it, an answer stays under 4 MiB unless a single
 * assignment is bigger than 1 MiB (some 10,000 dependency packages).
 */
const MAX_ASSIGNMENT_BYTES = 3 * 1024 * 1024;

/** Calls that change state answer only once the change is durable (see DepGraphServiceOptions.durable). */
const STATE_CHANGING: ReadonlySet<string> = new Set(["ImportScan", "ScanLocations", "CreateBuild", "CancelBuild", "NextReadyJob", "MarkDone", "ReturnJob", "StartScan"]);

/**
 * createDepGraphService translates DepGraphService calls into calls on the
 * core. It owns what the core must not: waiting, timers, files, processes.
 */
export function createDepGraphService(options: DepGraphServiceOptions): {
  impl: ServiceImpl<typeof DepGraphService>;
  /** Stops the lease timer and wakes every waiting call. */
  close(): void;
} {
  const { depgraph, logger, history } = options;
  const maxImportChars = options.maxImportBytes ?? DEFAULT_MAX_IMPORT_BYTES;
  const waiters = new Set<() => void>();
  depgraph.onReady(() => {
    for (const wake of [...waiters]) wake();
  });
  const leaseTimer = createLeaseTimer(depgraph, logger, options.now);
  // Leases restored from the store run out on their own deadlines, not
  // only once some NextReadyJob or RenewLease call arms the timer.
  leaseTimer.arm();
  // Builds (and their manifests) are made again only when a new process
  // restores them, so one generation per service instance tells copies apart.
  const manifestGeneration = randomUUID();

  const guard = async <T>(method: string, run: () => Promise<T> | T): Promise<T> => {
    try {
      const result = await run();
      if (STATE_CHANGING.has(method)) await options.durable?.();
      return result;
    } catch (e) {
      const error = toConnectError(e);
      if (error.code === Code.Internal) logger.error({ err: e, method }, "request failed");
      throw error;
    }
  };

  const wireBuild = (build: Build) => {
    const wire = buildToWire(build);
    wire.problem = depgraph.buildProblem(build.id);
    wire.scanId = depgraph.buildScan(build.id);
    return wire;
  };

  const applyImport = async (records: ScanRecord[], problems: InvalidScanRecord[], scope: "tree" | "locations", platform: string, signal: AbortSignal) => {
    const started = performance.now();
    // In slices: resolving a whole tree would hold every other call meanwhile.
    problems.push(...await runSliced(depgraph.replaceTreeSteps(records, scope, platform), signal));
    const tree = depgraph.platformTree(platform);
    const unresolved: ScanProblem[] = tree.unresolvedDependencies().map((u) =>
      create(ScanProblemSchema, {
        location: u.location,
        pkgname: u.pkgname,
        message: `could not resolve dependency "${u.pattern}" (from ../../${u.dependencyLocation}): no package in the tree matches it`,
      }));
    const summary = tree.summary();
    logger.info({ platform, records: records.length, problems: problems.length, unresolved: unresolved.length, packages: summary.packages, cycles: summary.cycles.length, resolveMs: Math.round(performance.now() - started) }, "scan imported");
    return {
      problems: capProblems([...problems.map(problemToWire), ...unresolved]),
      tree: treeSummaryToWire(summary),
    };
  };

  /**
   * leaseWithinBudget leases up to max jobs one at a time and stops once the
   * answer passes MAX_ASSIGNMENT_BYTES: deep in a graph one assignment lists
   * thousands of dependency packages, and max_jobs of them in one answer
   * would pass any message limit. The job that passes it is still handed out
   * (it is leased already), so one answer is at most one assignment over.
   */
  const leaseWithinBudget = (platform: string, agentId: string, max: number, leaseMs: number | undefined, closure: boolean, round: PlacementRound | undefined): WireAssignment[] => {
    const answer: WireAssignment[] = [];
    let bytes = 0;
    while (answer.length < max && bytes < MAX_ASSIGNMENT_BYTES) {
      const [leased] = depgraph.nextReadyJobs(platform, agentId, 1, leaseMs, round);
      if (leased === undefined) break;
      const { build, job, lease } = leased;
      const needs = needsToWire(depgraph.needsOf(job));
      const wire = create(AssignmentSchema, {
        buildId: build.id,
        leaseId: lease.id,
        needs,
        package: { ...packageToWire(job.pkg, depgraph.treeOf(build.options.platform), history), needs },
        leaseDeadline: timestampFromMs(lease.deadline),
        attempt: job.attempts,
        dependencies: job.dependencies.map((i) => build.jobs[i]!.pkgname),
        incremental: build.options.mode === "incremental",
        rebuildReason: build.options.mode === "incremental" ? rebuildReason(build, job) : "",
        dependencyPackages: closure ? build.transitiveDependencies(job).flatMap((dep) => dependencyPackageToWire(dep) ?? []) : [],
        manifestSize: build.manifest.length,
        manifestGeneration,
      });
      answer.push(wire);
      // Only an answer that may take another job needs its size.
      if (answer.length < max) bytes += toBinary(AssignmentSchema, wire).byteLength;
    }
    return answer;
  };

  const impl: ServiceImpl<typeof DepGraphService> = {
    async importScan(requests: AsyncIterable<ImportScanRequest>, ctx) {
      return guard("ImportScan", async () => {
        const started = performance.now();
        const records: ScanRecord[] = [];
        const problems: InvalidScanRecord[] = [];
        const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
        let first: ImportScanRequest | undefined;
        let chars = 0;
        for await (const request of requests) {
          first ??= request;
          // Characters, not bytes: counting is free, and a character is at
          // least a byte, so the limit holds for bytes too.
          chars += request.pbulkIndex.length;
          if (chars > maxImportChars) throw new ImportTooLarge(maxImportChars);
          await pushInSlices((piece) => parser.push(piece), request.pbulkIndex, ctx.signal);
        }
        parser.end();
        if (first === undefined) throw new InvalidRequest("the import stream was empty: send pbulk-index text");
        const { mode } = first;
        if (mode !== ImportMode.UNSPECIFIED && mode !== ImportMode.REPLACE_TREE && mode !== ImportMode.REPLACE_LOCATIONS) {
          throw new InvalidRequest(`unknown import mode ${mode}`);
        }
        const maxRemovedShare = maxRemovedShareFromWire(first.maxRemovedShare);
        if (typeof maxRemovedShare === "string") throw new InvalidRequest(maxRemovedShare);
        const scope = mode === ImportMode.REPLACE_LOCATIONS ? "locations" : "tree";
        if (scope === "tree" && records.length === 0) {
          throw new InvalidRequest(`the import holds no valid record (${problems.length} refused; first: ${problems[0]?.message ?? "none"}); the tree was left as it was`);
        }
        const platform = depgraph.resolveTree(first.platform);
        if (scope === "tree") {
          checkWhole(problems, maxRemovedShare);
          checkRemovedShare(depgraph.platformTree(platform).values(), records, maxRemovedShare);
        }
        const result = await applyImport(records, problems, scope, platform, ctx.signal);
        return { recordsImported: records.length, ...result, elapsed: durationFromMs(Math.round(performance.now() - started)) };
      });
    },

    async scanLocations(request, ctx) {
      return guard("ScanLocations", async () => {
        if (options.scanHelper === undefined) {
          throw new ConnectError("no scan helper is configured; start depgraph with --scan-helper", Code.FailedPrecondition);
        }
        if (request.locations.length === 0) throw new InvalidRequest("locations is empty: name at least one location");
        for (const location of request.locations) {
          if (!isValidLocation(location)) throw new InvalidRequest(`location ${quote(location)} is not category/package`);
        }
        const outcome = await runScanHelper(options.scanHelper, request.locations, ctx.signal);
        // A location whose scan printed nothing usable keeps its old records:
        // a broken helper run must not delete packages from the tree.
        const result = await applyImport(outcome.records, outcome.problems, "locations", depgraph.resolveTree(request.platform), ctx.signal);
        return { recordsImported: outcome.records.length, ...result };
      });
    },

    getPackage(request) {
      return guard("GetPackage", () => {
        const tree = depgraph.treeOf(depgraph.resolveTree(request.platform));
        const pkg = tree.get(request.pkgname);
        if (pkg === undefined) throw new ConnectError(`the tree has no package ${quote(request.pkgname)}`, Code.NotFound);
        return { package: { ...packageToWire(pkg, tree, history), needs: needsToWire(depgraph.resources.needsOf(pkg.record.pkgname, pkg.record.location)) } };
      });
    },

    listPackages(request) {
      return guard("ListPackages", () => {
        const tree = depgraph.treeOf(depgraph.resolveTree(request.platform));
        // The tree keeps its names sorted; sorting 40,000 of them per page cost a page 40 ms.
        const names = request.location === "" ? tree.sortedPkgnames() : [...tree.atLocation(request.location)].sort();
        const scanDepends = request.includeScanDepends;
        const { page, next } = packagePage(names, request, (name) => estimatePackageBytes(tree.get(name)!, scanDepends));
        return {
          packages: page.map((name) => {
            const pkg = tree.get(name)!;
            return { ...packageToWire(pkg, tree, history, { scanDepends }), needs: needsToWire(depgraph.resources.needsOf(pkg.record.pkgname, pkg.record.location)) };
          }),
          nextPageToken: next,
        };
      });
    },

    createBuild(request, ctx) {
      return guard("CreateBuild", async () => {
        const mode = buildModeFromWire(request.mode);
        if (mode === undefined) throw new InvalidRequest(`unknown build mode ${request.mode}`);
        const policy = policyFromWire(request.policy);
        if (policy === undefined && request.policy !== 0) throw new InvalidRequest(`unknown scheduling policy ${request.policy}`);
        const packagesDir = request.packagesDir || options.packagesDir;
        const binaryPackages = mode === "incremental" && packagesDir !== "" ? await readBinaryPackages(packagesDir) : new Map();
        // In slices: a build of a large tree would hold the event loop for
        // as long as it takes, and health checks and reads with it.
        const build = await runSliced(depgraph.requestBuildSteps({ platform: request.platform, mode, policy, limitTo: request.limitTo, packagesDir, binaryPackages }), ctx.signal);
        if (!(build instanceof Build)) {
          logger.info({ buildId: build.options.id, platform: build.options.platform, scanId: build.scanId }, "build waits for the scan closing its list");
          return { build: pendingBuildToWire(build) };
        }
        logger.info({ buildId: build.id, platform: build.options.platform, mode, policy: build.options.policy, jobs: build.jobs.length, ready: build.readyCount }, "build created");
        return { build: wireBuild(build) };
      });
    },

    getBuild(request) {
      return guard("GetBuild", () => {
        const build = depgraph.getBuildOrPending(request.buildId);
        return { build: build instanceof Build ? wireBuild(build) : pendingBuildToWire(build) };
      });
    },

    listBuilds(request) {
      return guard("ListBuilds", () => ({
        builds: [...depgraph.listPending(request.platform).map(pendingBuildToWire), ...depgraph.listBuilds(request.platform).map(wireBuild)],
      }));
    },

    cancelBuild(request) {
      return guard("CancelBuild", () => {
        const build = depgraph.cancelBuild(request.buildId);
        logger.info({ buildId: build.id }, "build cancelled");
        return { build: wireBuild(build) };
      });
    },

    listJobs(request) {
      return guard("ListJobs", () => {
        const build = depgraph.getBuild(request.buildId);
        const states = new Set(request.states.map((s) => {
          const state = jobStateFromWire(s);
          if (state === undefined) throw new InvalidRequest(`unknown job state ${s}`);
          return state;
        }));
        const sorted = build.sortedJobs();
        const jobs = states.size === 0 ? sorted : sorted.filter((j) => states.has(j.state));
        // Every waiting job says why (Job.wait), as ExplainJob would without its chain.
        const context = explainContext(depgraph, build, (job) => depgraph.expectedDurationMs(job), options.now());
        const { page, next } = pageOf(jobs, request, JobSchema, (job) => {
          const wire = jobToWire(build, job);
          const wait = waitOf(build, job, context);
          if (wait !== undefined) wire.wait = waitReasonToWire(wait);
          return wire;
        });
        return { jobs: page, nextPageToken: next };
      });
    },

    nextReadyJob(request, ctx) {
      return guard("NextReadyJob", async () => {
        const max = request.maxJobs === 0 ? 1 : request.maxJobs;
        if (max > options.maxJobsPerCall) throw new InvalidRequest(`max_jobs ${max} is over the limit of ${options.maxJobsPerCall}`);
        const waitMs = optionalMs(request.wait, "wait") ?? 0;
        if (waitMs > options.maxWaitMs) throw new InvalidRequest(`wait must be at most ${options.maxWaitMs / 1000} s`);
        const leaseMs = optionalMs(request.leaseDuration, "lease_duration");
        const deadline = performance.now() + waitMs;
        if (request.platform === "") throw new InvalidRequest("platform is required: the agent's platform, e.g. \"NetBSD-10.0-x86_64\"");
        depgraph.notePlatformServed(request.platform);
        // With the dispatcher's agents, only what fits them is leased (placement.ts).
        const unnamed = request.agents.findIndex((a) => a.agentId === "");
        if (unnamed >= 0) throw new InvalidRequest(`agents[${unnamed}].agent_id is required: each agent of the list is named, so a wait can say which`);
        const hosts = request.agents.map(hostFromWire);
        if (hosts.length > 0) depgraph.resources.noteAgents(request.platform, hosts, options.now());
        for (;;) {
          const round = hosts.length > 0 ? depgraph.placementRound(hosts) : undefined;
          const scans = request.includeScanJobs ? depgraph.nextScanJobs(request.platform, request.agentId, max, leaseMs) : [];
          for (const _ of scans) round?.plan.take(NO_NEEDS);
          let assignments: WireAssignment[];
          try {
            assignments = [
              ...scans.map((a) => create(AssignmentSchema, {
                buildId: a.scan.id,
                leaseId: a.lease.id,
                leaseDeadline: timestampFromMs(a.lease.deadline),
                attempt: a.job.attempts,
                scan: scanTaskToWire(a),
              })),
              ...(scans.length < max ? leaseWithinBudget(request.platform, request.agentId, max - scans.length, leaseMs, !request.omitDependencyPackages, round) : []),
            ];
          } finally {
            // Before anything else can run: passed-over jobs are back in their queues.
            round?.end();
          }
          if (assignments.length > 0) {
            leaseTimer.arm();
            return { assignments };
          }
          const left = deadline - performance.now();
          if (left <= 0 || ctx.signal.aborted) return { assignments: [] };
          await waitForReady(waiters, left, ctx);
        }
      });
    },

    markDone(request) {
      return guard("MarkDone", () => {
        if (request.results.length === 0) throw new InvalidRequest("results is empty: report at least one job");
        const scanResults: ScanJobResult[] = request.results.filter((r) => depgraph.isScan(r.buildId)).map((r) => {
          const output = scanOutputFromWire(r.scanOutput);
          return { buildId: r.buildId, pkgname: r.pkgname, leaseId: r.leaseId, failure: r.outcome === JobOutcome.FAILED ? r.failureReason || "the scan job failed" : "", ...output };
        });
        for (const r of scanResults) {
          depgraph.finishScanJob(r);
          logger.debug({ scanId: r.buildId, job: r.pkgname, locations: r.locations.length }, "scan job done");
        }
        const buildResults = request.results.filter((r) => !depgraph.isScan(r.buildId));
        if (buildResults.length === 0) return { newlyReady: 0, newlyBlocked: 0 };
        const results: JobResult[] = buildResults.map((r) => {
          if (r.outcome !== JobOutcome.SUCCEEDED && r.outcome !== JobOutcome.FAILED && r.outcome !== JobOutcome.UP_TO_DATE) {
            throw new InvalidRequest(`result for ${r.pkgname || "(no pkgname)"} has no outcome: say JOB_OUTCOME_SUCCEEDED, JOB_OUTCOME_FAILED or JOB_OUTCOME_UP_TO_DATE`);
          }
          const bp = r.binaryPackage;
          return {
            buildId: r.buildId,
            pkgname: r.pkgname,
            leaseId: r.leaseId,
            succeeded: r.outcome === JobOutcome.SUCCEEDED || r.outcome === JobOutcome.UP_TO_DATE,
            upToDate: r.outcome === JobOutcome.UP_TO_DATE,
            decision: r.decision,
            durationMs: r.duration === undefined ? 0 : durationMs(r.duration),
            binaryPackage: bp === undefined ? undefined : { fileName: bp.fileName, sha256: bp.sha256, sizeBytes: Number(bp.sizeBytes) },
            logRef: r.logRef,
            failureReason: r.failureReason,
            failedPhase: r.failedPhase,
            agentId: r.agentId,
            host: r.host,
            peakMemoryBytes: Number(r.peakMemoryBytes),
            peakDiskBytes: Number(r.peakDiskBytes),
          };
        });
        for (const r of results) {
          if (r.binaryPackage !== undefined && !/^[0-9a-f]{64}$/.test(r.binaryPackage.sha256)) {
            throw new InvalidRequest(`binary package of ${r.pkgname} needs a sha256 of 64 lower-case hex digits`);
          }
        }
        const outcome = depgraph.markDone(results);
        for (const r of results) logger.debug({ buildId: r.buildId, pkgname: r.pkgname, succeeded: r.succeeded }, "job done");
        return outcome;
      });
    },

    renewLease(request) {
      return guard("RenewLease", () => {
        const { renewed, lost, deadline } = depgraph.renewLeases(request.leases.map(leaseRefFromWire), optionalMs(request.leaseDuration, "lease_duration"));
        leaseTimer.arm();
        return { renewed: renewed.map(leaseRefToWire), lost: lost.map(leaseRefToWire), deadline: timestampFromMs(deadline) };
      });
    },

    returnJob(request) {
      return guard("ReturnJob", () => {
        if (request.reason !== ReturnReason.UNSPECIFIED && request.reason !== ReturnReason.AGENT_LOST && request.reason !== ReturnReason.DRAINING) {
          throw new InvalidRequest(`unknown return reason ${request.reason}`);
        }
        const agentLost = request.reason !== ReturnReason.DRAINING;
        const outcome = depgraph.returnJobs(request.leases.map(leaseRefFromWire), agentLost, request.message);
        logger.info({ leases: request.leases.length, agentLost, ...outcome }, "jobs given back");
        return outcome;
      });
    },

    getDependencyManifest(request) {
      return guard("GetDependencyManifest", () => {
        const build = depgraph.getBuild(request.buildId);
        const { page } = pageOf(build.manifest, { pageSize: request.pageSize === 0 ? MAX_PAGE_SIZE : request.pageSize, pageToken: String(request.offset) },
          DependencyManifestEntrySchema, (job) => create(DependencyManifestEntrySchema, {
            pkgname: job.pkgname,
            binaryPackage: dependencyPackageToWire(job),
            dependencies: job.dependencies.map((i) => build.jobs[i]!.pkgname),
          }));
        return { entries: page, offset: request.offset, size: build.manifest.length, generation: manifestGeneration };
      });
    },

    startScan(request) {
      return guard("StartScan", () => {
        const scope = scanScopeFromWire(request.scope);
        if (scope === undefined) throw new InvalidRequest("scope is required: SCAN_SCOPE_TREE, SCAN_SCOPE_LOCATIONS or SCAN_SCOPE_CLOSURE");
        if (request.locationsPerJob > 1000) throw new InvalidRequest("locations_per_job must be at most 1000");
        const platform = depgraph.resolvePlatform(request.platform);
        if (platform === SHARED_TREE && options.scanHelper === undefined) {
          throw new InvalidRequest("name the platform whose agents scan (no platform has a tree of its own yet, and depgraph has no --scan-helper)");
        }
        const scan = depgraph.startScan({ platform, scope, locations: request.locations, reuse: request.reuse, locationsPerJob: request.locationsPerJob });
        logger.info({ scanId: scan.id, platform, scope, locations: request.locations.length, reuse: request.reuse }, "scan started");
        return { scan: scanToWire(scan) };
      });
    },
    getScan(request) {
      return guard("GetScan", () => ({ scan: scanToWire(depgraph.getScan(request.scanId)) }));
    },
    listScans(request) {
      return guard("ListScans", () => ({ scans: depgraph.listScans(request.platform).map(scanToWire) }));
    },
    listPlatforms() {
      return guard("ListPlatforms", () => ({
        platforms: depgraph.knownPlatforms().map((platform) => ({ platform, tree: treeSummaryToWire(depgraph.treeOf(platform).summary()) })),
      }));
    },

    ...createStatusHandlers({ depgraph, wireBuild, now: options.now, logger }),

    watchJobs(request, ctx) {
      // A reader that takes nothing holds its backlog for as long as its
      // connection lives: it is cut off once a transition waits too long.
      return cutOffStalled(watchTransitions(request, ctx), ctx, {
        stallMs: options.streamStallMs ?? DEFAULT_STALL_MS,
        onCutOff: () => logger.warn({ buildId: request.buildId }, "WatchJobs reader took nothing for too long; stream cut off"),
      });
    },
  };

  async function* watchTransitions(request: WatchJobsRequest, ctx: HandlerContext) {
    if (request.buildId !== "") {
      try {
        depgraph.getBuild(request.buildId);
      } catch (e) {
        throw toConnectError(e);
      }
    }
    const backlog: ReturnType<typeof transitionToWire>[] = [];
    let backlogBytes = 0;
    let wake: (() => void) | undefined;
    let overflowed = false;
    const maxBytes = options.maxWatchBacklogBytes ?? DEFAULT_WATCH_BACKLOG_BYTES;
    const queue = (message: WatchJobsResponse) => {
      backlogBytes += transitionBytes(message);
      if (backlog.length >= options.maxWatchBacklog || backlogBytes > maxBytes) {
        // What is queued is of no use to a watcher that must re-read the build anyway.
        overflowed = true;
        backlog.length = 0;
        backlogBytes = 0;
      } else {
        backlog.push(message);
      }
      wake?.();
    };
    const offTransitions = depgraph.onTransition((t) => {
      if (overflowed || (request.buildId !== "" && t.buildId !== request.buildId)) return;
      queue(transitionToWire(t));
    });
    const offBuildEvents = watchBuildEvents(depgraph, options.now, (event) => {
      if (overflowed || (request.buildId !== "" && event.build.id !== request.buildId)) return;
      queue(buildEventToWire(event, wireBuild(event.build)));
    });
    const onAbort = () => wake?.();
    ctx.signal.addEventListener("abort", onAbort);
    try {
      while (!ctx.signal.aborted) {
        if (overflowed) {
          throw new ConnectError(`this watcher fell more than ${options.maxWatchBacklog} transitions or ${maxBytes} bytes behind; reconnect and re-read the build`, Code.ResourceExhausted);
        }
        const next = backlog.shift();
        if (next !== undefined) {
          backlogBytes -= transitionBytes(next);
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      offTransitions();
      offBuildEvents();
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  return {
    impl,
    close() {
      leaseTimer.stop();
      for (const wake of [...waiters]) wake();
    },
  };
}

/**
 * Problems one answer lists; a file of garbage must not make an answer
 * bigger than the 4 MiB clients take by default. The rest are counted.
 */
const MAX_PROBLEMS_LISTED = 1000;

function capProblems(problems: ScanProblem[]): ScanProblem[] {
  if (problems.length <= MAX_PROBLEMS_LISTED) return problems;
  const listed = problems.slice(0, MAX_PROBLEMS_LISTED);
  listed.push(create(ScanProblemSchema, { message: `... and ${problems.length - MAX_PROBLEMS_LISTED} more problems, not listed` }));
  return listed;
}


function leaseRefFromWire(ref: WireLeaseRef): LeaseRef {
  return { buildId: ref.buildId, pkgname: ref.pkgname, leaseId: ref.leaseId, agentId: ref.agentId, host: ref.host };
}

function leaseRefToWire(ref: LeaseRef): { buildId: string; pkgname: string; leaseId: string } {
  return { buildId: ref.buildId, pkgname: ref.pkgname, leaseId: ref.leaseId };
}

function optionalMs(d: Duration | undefined, field: string): number | undefined {
  if (d === undefined) return undefined;
  const ms = durationMs(d);
  if (!(ms >= 0)) throw new InvalidRequest(`${field} must not be negative`);
  return ms;
}

function waitForReady(waiters: Set<() => void>, ms: number, ctx: HandlerContext): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      waiters.delete(done);
      ctx.signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    waiters.add(done);
    ctx.signal.addEventListener("abort", done);
  });
}

/**
 * One timer for all leases: it is armed for the earliest deadline only, and
 * when it fires the core requeues whatever ran out and the timer moves on.
 */
function createLeaseTimer(depgraph: DepGraph, logger: Logger, now: () => number): { arm(): void; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let armedFor = Infinity;
  let stopped = false;
  const fire = () => {
    timer = undefined;
    armedFor = Infinity;
    const expired = depgraph.expireLeases();
    if (expired > 0) logger.warn({ expired }, "leases expired; jobs back to ready");
    arm();
  };
  const arm = () => {
    if (stopped) return;
    const next = depgraph.nextLeaseDeadline();
    if (next === undefined || next >= armedFor) return;
    if (timer !== undefined) clearTimeout(timer);
    armedFor = next;
    timer = setTimeout(fire, Math.max(0, next - now()));
    timer.unref();
  };
  return {
    arm,
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}

/**
 * rebuildReason tells an incremental job's build host that it must build,
 * whatever its binary package says: depgraph already knows why (no package,
 * a changed scan, a dependency not current), or a dependency was rebuilt in
 * this build. "" leaves the check to the host (pbulk's pkg-up-to-date).
 */
function rebuildReason(build: Build, job: Job): string {
  if (job.decision.startsWith("rebuilt:")) return job.decision;
  const rebuilt = job.dependencies.map((i) => build.jobs[i]!).find((dep) => dep.state === "succeeded");
  if (rebuilt === undefined) return "";
  job.decision = `rebuilt: dependency ${rebuilt.pkgname} was rebuilt`;
  return job.decision;
}
