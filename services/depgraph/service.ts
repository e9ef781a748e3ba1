import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  AssignmentSchema,
  DepGraphService,
  ImportMode,
  JobOutcome,
  JobSchema,
  PackageSchema,
  ReturnReason,
  ScanProblemSchema,
  type ImportScanRequest,
  type LeaseRef as WireLeaseRef,
  type ScanProblem,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { Build } from "./core/build.js";
import { SHARED_TREE, type DepGraph, type JobResult, type LeaseRef, type ScanJobResult } from "./core/depgraph.js";
import { pendingBuildToWire, problemToWire, scanOutputFromWire, scanScopeFromWire, scanTaskToWire, scanToWire } from "./convert-scan.js";
import { InvalidRequest, type InvalidScanRecord } from "./core/errors.js";
import { createScanRecordParser, isValidLocation, type ScanRecord } from "./core/scan-record.js";
import {
  binaryPackageToWire,
  buildModeFromWire,
  buildToWire,
  jobStateFromWire,
  jobToWire,
  packageToWire,
  policyFromWire,
  transitionToWire,
  treeSummaryToWire,
} from "./convert.js";
import type { DurationHistory } from "./core/history.js";
import { readBinaryPackages } from "./packages-dir.js";
import { pageOf } from "./paging.js";
import { runSliced } from "./slices.js";
import { runScanHelper, type ScanHelperOptions } from "./scan-helper.js";
import { toConnectError } from "./status.js";

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
  /** The clock the core was given, so the lease timer agrees with it. */
  readonly now: () => number;
  /**
   * Resolves once the state changes made so far are durable (or a bound
   * passes); calls that change state answer only after it.
   */
  readonly durable?: () => Promise<unknown>;
}

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
  const waiters = new Set<() => void>();
  depgraph.onReady(() => {
    for (const wake of [...waiters]) wake();
  });
  const leaseTimer = createLeaseTimer(depgraph, logger, options.now);
  // Leases restored from the store run out on their own deadlines, not
  // only once some NextReadyJob or RenewLease call arms the timer.
  leaseTimer.arm();

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
    return wire;
  };

  const applyImport = (records: ScanRecord[], problems: InvalidScanRecord[], scope: "tree" | "locations", platform: string) => {
    const started = performance.now();
    problems.push(...depgraph.replaceTree(records, scope, platform));
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
      problems: [...problems.map(problemToWire), ...unresolved],
      tree: treeSummaryToWire(summary),
    };
  };

  const impl: ServiceImpl<typeof DepGraphService> = {
    async importScan(requests: AsyncIterable<ImportScanRequest>) {
      return guard("ImportScan", async () => {
        const started = performance.now();
        const records: ScanRecord[] = [];
        const problems: InvalidScanRecord[] = [];
        const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
        let mode: ImportMode | undefined;
        let platform = "";
        for await (const request of requests) {
          if (mode === undefined) platform = request.platform;
          mode ??= request.mode;
          parser.push(request.pbulkIndex);
        }
        parser.end();
        if (mode === undefined) throw new InvalidRequest("the import stream was empty: send pbulk-index text");
        if (mode !== ImportMode.UNSPECIFIED && mode !== ImportMode.REPLACE_TREE && mode !== ImportMode.REPLACE_LOCATIONS) {
          throw new InvalidRequest(`unknown import mode ${mode}`);
        }
        const scope = mode === ImportMode.REPLACE_LOCATIONS ? "locations" : "tree";
        if (scope === "tree" && records.length === 0) {
          throw new InvalidRequest(`the import holds no valid record (${problems.length} refused; first: ${problems[0]?.message ?? "none"}); the tree was left as it was`);
        }
        const result = applyImport(records, problems, scope, depgraph.resolvePlatform(platform));
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
          if (!isValidLocation(location)) throw new InvalidRequest(`location "${location}" is not category/package`);
        }
        const outcome = await runScanHelper(options.scanHelper, request.locations, ctx.signal);
        // A location whose scan printed nothing usable keeps its old records:
        // a broken helper run must not delete packages from the tree.
        const result = applyImport(outcome.records, outcome.problems, "locations", depgraph.resolvePlatform(request.platform));
        return { recordsImported: outcome.records.length, ...result };
      });
    },

    getPackage(request) {
      return guard("GetPackage", () => {
        const tree = depgraph.platformTree(depgraph.resolvePlatform(request.platform));
        const pkg = tree.get(request.pkgname);
        if (pkg === undefined) throw new ConnectError(`the tree has no package "${request.pkgname.slice(0, 200)}"`, Code.NotFound);
        return { package: packageToWire(pkg, tree, history) };
      });
    },

    listPackages(request) {
      return guard("ListPackages", () => {
        const tree = depgraph.platformTree(depgraph.resolvePlatform(request.platform));
        const names = request.location === "" ? [...tree.pkgnames()] : [...tree.atLocation(request.location)];
        names.sort();
        const { page, next } = pageOf(names, request, PackageSchema, (name) => packageToWire(tree.get(name)!, tree, history));
        return { packages: page, nextPageToken: next };
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
        const { page, next } = pageOf(jobs, request, JobSchema, (job) => jobToWire(build, job));
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
        for (;;) {
          const scans = request.includeScanJobs ? depgraph.nextScanJobs(request.platform, request.agentId, max, leaseMs) : [];
          const assignments = scans.length < max ? depgraph.nextReadyJobs(request.platform, request.agentId, max - scans.length, leaseMs) : [];
          if (assignments.length + scans.length > 0) {
            leaseTimer.arm();
            return {
              assignments: [...scans.map((a) => create(AssignmentSchema, {
                buildId: a.scan.id,
                leaseId: a.lease.id,
                leaseDeadline: timestampFromMs(a.lease.deadline),
                attempt: a.job.attempts,
                scan: scanTaskToWire(a),
              })), ...assignments.map(({ build, job, lease }) => create(AssignmentSchema, {
                buildId: build.id,
                leaseId: lease.id,
                package: packageToWire(job.pkg, depgraph.treeOf(build.options.platform), history),
                dependencies: [...job.pkg.dependencies],
                incremental: build.options.mode === "incremental",
                leaseDeadline: timestampFromMs(lease.deadline),
                attempt: job.attempts,
                dependencyPackages: build.transitiveDependencies(job).flatMap((dep) =>
                  dep.binaryPackage !== undefined ? [binaryPackageToWire(dep.binaryPackage)]
                  : dep.state === "up-to-date" ? [binaryPackageToWire({ fileName: `${dep.pkgname}.tgz`, sha256: "", sizeBytes: 0 })]
                  : []),
              }))],
            };
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
          if (r.outcome !== JobOutcome.SUCCEEDED && r.outcome !== JobOutcome.FAILED) {
            throw new InvalidRequest(`result for ${r.pkgname || "(no pkgname)"} has no outcome: say JOB_OUTCOME_SUCCEEDED or JOB_OUTCOME_FAILED`);
          }
          const bp = r.binaryPackage;
          return {
            buildId: r.buildId,
            pkgname: r.pkgname,
            leaseId: r.leaseId,
            succeeded: r.outcome === JobOutcome.SUCCEEDED,
            durationMs: r.duration === undefined ? 0 : durationMs(r.duration),
            binaryPackage: bp === undefined ? undefined : { fileName: bp.fileName, sha256: bp.sha256, sizeBytes: Number(bp.sizeBytes) },
            logRef: r.logRef,
            failureReason: r.failureReason,
            failedPhase: r.failedPhase,
            agentId: r.agentId,
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
        platforms: depgraph.platforms().map((platform) => ({ platform, tree: treeSummaryToWire(depgraph.platformTree(platform).summary()) })),
      }));
    },

    async *watchJobs(request, ctx) {
      if (request.buildId !== "") {
        try {
          depgraph.getBuild(request.buildId);
        } catch (e) {
          throw toConnectError(e);
        }
      }
      const backlog: ReturnType<typeof transitionToWire>[] = [];
      let wake: (() => void) | undefined;
      let overflowed = false;
      const unsubscribe = depgraph.onTransition((t) => {
        if (request.buildId !== "" && t.buildId !== request.buildId) return;
        if (backlog.length >= options.maxWatchBacklog) overflowed = true;
        else backlog.push(transitionToWire(t));
        wake?.();
      });
      const onAbort = () => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        while (!ctx.signal.aborted) {
          if (overflowed) {
            throw new ConnectError(`this watcher fell more than ${options.maxWatchBacklog} transitions behind; reconnect and re-read the build`, Code.ResourceExhausted);
          }
          const next = backlog.shift();
          if (next !== undefined) {
            yield next;
            continue;
          }
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      } finally {
        unsubscribe();
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  };

  return {
    impl,
    close() {
      leaseTimer.stop();
      for (const wake of [...waiters]) wake();
    },
  };
}


function leaseRefFromWire(ref: WireLeaseRef): LeaseRef {
  return { buildId: ref.buildId, pkgname: ref.pkgname, leaseId: ref.leaseId, agentId: ref.agentId };
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
