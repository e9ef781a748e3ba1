// Translation between the core's plain types and the wire messages; nothing
// here decides anything.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  BinaryPackageSchema,
  BuildMode as WireBuildMode,
  BuildSchema,
  BuildState as WireBuildState,
  JobSchema,
  JobState as WireJobState,
  PackageSchema,
  SchedulingPolicy as WireSchedulingPolicy,
  TreeSummarySchema,
  WatchJobsResponseSchema,
  type BinaryPackage as WireBinaryPackage,
  type Build as WireBuild,
  type Job as WireJob,
  type Package as WirePackage,
  type TreeSummary as WireTreeSummary,
  type WatchJobsResponse,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { JOB_STATES, type BinaryPackage, type Build, type BuildMode, type Job, type JobState, type JobTransition } from "./core/build.js";
import type { DurationHistory } from "./core/history.js";
import type { PolicyName } from "./core/priority.js";
import type { PackageTree, TreePackage, TreeSummary } from "./core/tree.js";

const jobStateToWire: Record<JobState, WireJobState> = {
  pending: WireJobState.PENDING,
  ready: WireJobState.READY,
  leased: WireJobState.LEASED,
  succeeded: WireJobState.SUCCEEDED,
  failed: WireJobState.FAILED,
  prefailed: WireJobState.PREFAILED,
  "indirect-failed": WireJobState.INDIRECT_FAILED,
  cycle: WireJobState.CYCLE,
  "up-to-date": WireJobState.UP_TO_DATE,
  cancelled: WireJobState.CANCELLED,
};

export function jobStateFromWire(state: WireJobState): JobState | undefined {
  return JOB_STATES.find((s) => jobStateToWire[s] === state);
}

export function jobStateName(state: JobState): string {
  return `JOB_STATE_${WireJobState[jobStateToWire[state]]}`;
}

const policyToWire: Record<PolicyName, WireSchedulingPolicy> = {
  "critical-path": WireSchedulingPolicy.CRITICAL_PATH,
  "pbulk-weight": WireSchedulingPolicy.PBULK_WEIGHT,
  fifo: WireSchedulingPolicy.FIFO,
};

export function policyFromWire(policy: WireSchedulingPolicy): PolicyName | undefined {
  return (Object.keys(policyToWire) as PolicyName[]).find((p) => policyToWire[p] === policy);
}

export function buildModeFromWire(mode: WireBuildMode): BuildMode | undefined {
  if (mode === WireBuildMode.UNSPECIFIED || mode === WireBuildMode.FULL) return "full";
  if (mode === WireBuildMode.INCREMENTAL) return "incremental";
  return undefined;
}

export function buildToWire(build: Build): WireBuild {
  const o = build.options;
  const jobCounts: Record<string, number> = {};
  for (const state of JOB_STATES) jobCounts[jobStateName(state)] = build.countOf(state);
  return create(BuildSchema, {
    id: o.id,
    platform: o.platform,
    mode: o.mode === "full" ? WireBuildMode.FULL : WireBuildMode.INCREMENTAL,
    policy: policyToWire[o.policy],
    state: build.state === "running" ? WireBuildState.RUNNING
      : build.state === "finished" ? WireBuildState.FINISHED : WireBuildState.CANCELLED,
    limitTo: [...o.limitTo],
    jobCounts,
    totalJobs: build.jobs.length,
    createTime: timestampFromMs(o.createdAt),
    finishTime: build.finishedAt === undefined ? undefined : timestampFromMs(build.finishedAt),
    packagesDir: o.packagesDir,
  });
}

export function binaryPackageToWire(p: BinaryPackage): WireBinaryPackage {
  return create(BinaryPackageSchema, { fileName: p.fileName, sha256: p.sha256, sizeBytes: BigInt(p.sizeBytes) });
}

// A built job's package as dependency_packages lists it, made once per job:
// a package deep in the graph is listed in thousands of assignments.
const dependencyWire = new WeakMap<Job, WireBinaryPackage>();

/**
 * dependencyPackageToWire is what an assignment lists for a dependency: the
 * binary package MarkDone reported, or, for one found up to date, its file
 * name alone (the build host has it already). undefined when not built.
 */
export function dependencyPackageToWire(dep: Job): WireBinaryPackage | undefined {
  let wire = dependencyWire.get(dep);
  if (wire === undefined) {
    if (dep.binaryPackage !== undefined) wire = binaryPackageToWire(dep.binaryPackage);
    else if (dep.state === "up-to-date") wire = binaryPackageToWire({ fileName: `${dep.pkgname}.tgz`, sha256: "", sizeBytes: 0 });
    else return undefined;
    dependencyWire.set(dep, wire);
  }
  return wire;
}

/**
 * Members of its cycle a Job message lists (Job.cycle_size has the count):
 * every job of an 8,000-package cycle naming all of them made a page of 100
 * jobs 40 MB.
 */
export const MAX_CYCLE_MEMBERS_PER_JOB = 32;

export function jobToWire(build: Build, job: Job): WireJob {
  return create(JobSchema, {
    buildId: build.id,
    pkgname: job.pkgname,
    location: job.pkg.record.location,
    state: jobStateToWire[job.state],
    reason: job.reason,
    blockedBy: job.blockedBy,
    cycle: job.cycle.slice(0, MAX_CYCLE_MEMBERS_PER_JOB),
    cycleSize: job.cycle.length,
    attempts: job.attempts,
    agentId: job.agentId,
    leaseDeadline: job.lease === undefined ? undefined : timestampFromMs(job.lease.deadline),
    duration: job.durationMs > 0 ? durationFromMs(Math.round(job.durationMs)) : undefined,
    binaryPackage: job.binaryPackage === undefined ? undefined : binaryPackageToWire(job.binaryPackage),
    logRef: job.logRef,
    priority: job.priority,
    multiVersion: job.pkg.record.multiVersion,
    failedPhase: job.failedPhase,
    decision: job.decision,
    host: job.host,
    startTime: job.startedAt === undefined ? undefined : timestampFromMs(job.startedAt),
  });
}

export interface PackageToWireOptions {
  /** SCAN_DEPENDS is most of a package's bytes (about 5 KB); lists leave it out unless asked (default: included). */
  readonly scanDepends?: boolean;
}

export function packageToWire(pkg: TreePackage, tree: PackageTree, history: DurationHistory, options: PackageToWireOptions = {}): WirePackage {
  const r = pkg.record;
  const expected = history.expectedMs(r.pkgname, r.location);
  return create(PackageSchema, {
    pkgname: r.pkgname,
    location: r.location,
    multiVersion: r.multiVersion,
    dependencyPatterns: r.dependencies.map((d) => `${d.pattern}:../../${d.location}`),
    dependencies: [...pkg.dependencies],
    failReason: r.failReason || pkg.unresolved,
    skipReason: r.skipReason,
    scanDepends: options.scanDepends === false || r.scanDepends === "" ? [] : r.scanDepends.split(" ").filter((s) => s !== ""),
    pbulkWeight: r.pbulkWeight,
    expectedDuration: expected === undefined ? undefined : durationFromMs(Math.round(expected)),
    categories: [...r.categories],
    maintainer: r.maintainer,
    directDependents: tree.dependentsOf(r.pkgname).length,
    scanVars: { ...r.vars },
  });
}

export function treeSummaryToWire(s: TreeSummary): WireTreeSummary {
  return create(TreeSummarySchema, {
    packages: s.packages,
    locations: s.locations,
    dependencyEdges: s.dependencyEdges,
    prefailed: s.prefailed,
    cycles: s.cycles.map((pkgnames) => ({ pkgnames: [...pkgnames] })),
  });
}

export function transitionToWire(t: JobTransition): WatchJobsResponse {
  return create(WatchJobsResponseSchema, {
    buildId: t.buildId,
    pkgname: t.pkgname,
    location: t.location,
    fromState: jobStateToWire[t.from],
    toState: jobStateToWire[t.to],
    reason: t.reason,
    time: timestampFromMs(t.time),
    agentId: t.agentId,
    host: t.host,
  });
}
