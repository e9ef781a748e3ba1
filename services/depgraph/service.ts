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
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { DepGraph, JobResult, LeaseRef } from "./core/depgraph.js";
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
import { readBinaryPackages } from "./packages-dir.js";
import { MAX_PAGE_SIZE, pageOf } from "./paging.js";
import { pushInSlices, runSliced } from "./slices.js";
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

/**
 * Encoded bytes after which a NextReadyJob answer takes no further job:
 * with the one that passed it, an answer stays under 4 MiB unless a single
 * assignment is bigger than 1 MiB (some 10,000 dependency packages).
 */
const MAX_ASSIGNMENT_BYTES = 3 * 1024 * 1024;

/** Calls that change state answer only once the change is durable (see DepGraphServiceOptions.durable). */
const STATE_CHANGING: ReadonlySet<string> = new Set(["ImportScan", "ScanLocations", "CreateBuild", "CancelBuild", "NextReadyJob", "MarkDone", "ReturnJob"]);

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

  const applyImport = async (records: ScanRecord[], problems: InvalidScanRecord[], scope: "tree" | "locations", signal: AbortSignal) => {
    const started = performance.now();
    // In slices: resolving a whole tree would hold every other call meanwhile.
    problems.push(...await runSliced(depgraph.replaceTreeSteps(records, scope), signal));
    const unresolved: ScanProblem[] = depgraph.tree.unresolvedDependencies().map((u) =>
      create(ScanProblemSchema, {
        location: u.location,
        pkgname: u.pkgname,
        message: `could not resolve dependency "${u.pattern}" (from ../../${u.dependencyLocation}): no package in the tree matches it`,
      }));
    const summary = depgraph.tree.summary();
    logger.info({ records: records.length, problems: problems.length, unresolved: unresolved.length, packages: summary.packages, cycles: summary.cycles.length, resolveMs: Math.round(performance.now() - started) }, "scan imported");
    return {
      problems: [...problems.map(problemToWire), ...unresolved],
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
  const leaseWithinBudget = (platform: string, agentId: string, max: number, leaseMs: number | undefined, closure: boolean): WireAssignment[] => {
    const answer: WireAssignment[] = [];
    let bytes = 0;
    while (answer.length < max && bytes < MAX_ASSIGNMENT_BYTES) {
      const [leased] = depgraph.nextReadyJobs(platform, agentId, 1, leaseMs);
      if (leased === undefined) break;
      const { build, job, lease } = leased;
      const wire = create(AssignmentSchema, {
        buildId: build.id,
        leaseId: lease.id,
        package: packageToWire(job.pkg, depgraph.tree, history),
        leaseDeadline: timestampFromMs(lease.deadline),
        attempt: job.attempts,
        dependencies: job.dependencies.map((i) => build.jobs[i]!.pkgname),
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
        let mode: ImportMode | undefined;
        for await (const request of requests) {
          mode ??= request.mode;
          await pushInSlices((piece) => parser.push(piece), request.pbulkIndex, ctx.signal);
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
        const result = await applyImport(records, problems, scope, ctx.signal);
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
        const result = await applyImport(outcome.records, outcome.problems, "locations", ctx.signal);
        return { recordsImported: outcome.records.length, ...result };
      });
    },

    getPackage(request) {
      return guard("GetPackage", () => {
        const pkg = depgraph.tree.get(request.pkgname);
        if (pkg === undefined) throw new ConnectError(`the tree has no package "${request.pkgname}"`, Code.NotFound);
        return { package: packageToWire(pkg, depgraph.tree, history) };
      });
    },

    listPackages(request) {
      return guard("ListPackages", () => {
        // The tree keeps its names sorted; sorting 40,000 of them per page cost a page 40 ms.
        const names = request.location === "" ? depgraph.tree.sortedPkgnames() : [...depgraph.tree.atLocation(request.location)].sort();
        const { page, next } = pageOf(names, request, PackageSchema, (name) => packageToWire(depgraph.tree.get(name)!, depgraph.tree, history));
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
        const build = await runSliced(depgraph.createBuildSteps({ platform: request.platform, mode, policy, limitTo: request.limitTo, packagesDir, binaryPackages }), ctx.signal);
        logger.info({ buildId: build.id, platform: build.options.platform, mode, policy: build.options.policy, jobs: build.jobs.length, ready: build.readyCount }, "build created");
        return { build: buildToWire(build) };
      });
    },

    getBuild(request) {
      return guard("GetBuild", () => ({ build: buildToWire(depgraph.getBuild(request.buildId)) }));
    },

    listBuilds(request) {
      return guard("ListBuilds", () => ({ builds: depgraph.listBuilds(request.platform).map(buildToWire) }));
    },

    cancelBuild(request) {
      return guard("CancelBuild", () => {
        const build = depgraph.cancelBuild(request.buildId);
        logger.info({ buildId: build.id }, "build cancelled");
        return { build: buildToWire(build) };
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
        for (;;) {
          const assignments = leaseWithinBudget(request.platform, request.agentId, max, leaseMs, !request.omitDependencyPackages);
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
        const results: JobResult[] = request.results.map((r) => {
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

    startScan() {
      throw new ConnectError("StartScan is not implemented yet", Code.Unimplemented);
    },
    getScan() {
      throw new ConnectError("GetScan is not implemented yet", Code.Unimplemented);
    },
    listScans() {
      throw new ConnectError("ListScans is not implemented yet", Code.Unimplemented);
    },
    listPlatforms() {
      throw new ConnectError("ListPlatforms is not implemented yet", Code.Unimplemented);
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

function problemToWire(p: InvalidScanRecord): ScanProblem {
  return create(ScanProblemSchema, { line: p.line, location: p.location, pkgname: p.pkgname, message: p.problem });
}

function leaseRefFromWire(ref: WireLeaseRef): LeaseRef {
  return { buildId: ref.buildId, pkgname: ref.pkgname, leaseId: ref.leaseId };
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
