/**
 * What a finished build looks like to its reports and its repository,
 * gathered from depgraph (the build, its jobs, their packages) and the log
 * store (which logs each job left). The report modules and the repository
 * take plain data; this module is the one place that knows where that data
 * lives, so they stay free of RPCs and file layouts.
 */

import path from "node:path";
import { durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { JobState, type Build, type Job, type Package } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { DepGraphLink } from "./depgraph-link.js";
import type { LogStore } from "./log-store.js";
import type { FinishedBuild, ReportLog, ReportPackageInput, ReportState } from "./reports/index.js";
import type { PublishCandidate } from "./repository/index.js";

/** BuildOutcome is a finished build as the report and the repository need it. */
export interface BuildOutcome {
  readonly build: FinishedBuild;
  /** PKGNAMEs that have a current binary package after the build (succeeded or up to date). */
  readonly built: readonly string[];
  /** The packages of the build with their dependencies and scan variables, for selectPublishable. */
  readonly candidates: readonly PublishCandidate[];
}

const STATES: ReadonlyMap<JobState, ReportState> = new Map([
  [JobState.SUCCEEDED, "succeeded"],
  [JobState.UP_TO_DATE, "up-to-date"],
  [JobState.FAILED, "failed"],
  [JobState.PREFAILED, "prefailed"],
  [JobState.INDIRECT_FAILED, "indirect-failed"],
  [JobState.CYCLE, "cycle"],
  [JobState.CANCELLED, "cancelled"],
  [JobState.PENDING, "pending"],
  [JobState.READY, "ready"],
  [JobState.LEASED, "leased"],
]);

/**
 * pbulk's pkg-build order (the agent's PKGSRC_PHASES, plus the dispatcher's
 * own "upload"): phase logs are listed in it so the failing phase comes
 * last, as in pbulk's log directory. Phases it does not know follow by name.
 */
const PHASE_ORDER = ["pre-clean", "depends", "checksum", "configure", "build", "install", "package", "clean", "deinstall", "upload"];

/** The label of a job's whole log among its phase logs in the report. */
export const WHOLE_LOG = "log";

/**
 * Above this many jobs the packages come from ListPackages of the platform
 * (pages of thousands) rather than one GetPackage per job.
 */
const GET_PACKAGE_LIMIT = 200;

export interface GatherOptions {
  readonly depgraph: DepGraphLink;
  readonly logs: LogStore;
  /** The build's report directory: log links are made relative to it. */
  readonly reportDir: string;
  readonly signal?: AbortSignal;
}

/** gatherBuildOutcome reads a finished (or cancelled) build's jobs, packages and logs. */
export async function gatherBuildOutcome(build: Build, options: GatherOptions): Promise<BuildOutcome> {
  const { depgraph, logs, signal } = options;
  const jobs = await depgraph.listJobs(build.id, signal);
  const packages = await packagesOf(jobs, build.platform, depgraph, signal);
  const inputs: ReportPackageInput[] = [];
  for (const job of jobs) {
    const pkg = packages.get(job.pkgname);
    const state = STATES.get(job.state) ?? "pending";
    inputs.push({
      pkgname: job.pkgname,
      location: job.location,
      state,
      ...(job.failedPhase === "" ? {} : { failedPhase: job.failedPhase }),
      ...(job.blockedBy === "" ? {} : { blockedBy: job.blockedBy }),
      ...(job.duration === undefined ? {} : { durationMs: durationMs(job.duration) }),
      ...(job.reason === "" ? {} : { reason: job.reason }),
      ...(job.decision === "" ? {} : { decision: job.decision }),
      logs: await logLinks(logs, build.id, job.pkgname, options.reportDir),
      ...(pkg === undefined ? {} : { maintainer: pkg.maintainer, dependencies: pkg.dependencies }),
    });
  }
  const built = inputs.filter((p) => p.state === "succeeded" || p.state === "up-to-date").map((p) => p.pkgname);
  const candidates: PublishCandidate[] = [...packages.values()].map((p) => ({ pkgname: p.pkgname, dependencies: p.dependencies, scanVars: p.scanVars }));
  const startedAt = build.createTime === undefined ? new Date(Number.NaN) : new Date(timestampMs(build.createTime));
  const finishedAt = build.finishTime === undefined ? new Date() : new Date(timestampMs(build.finishTime));
  return { build: { buildId: build.id, platform: build.platform, startedAt, finishedAt, packages: inputs }, built, candidates };
}

/** The jobs' packages by PKGNAME; a job whose package left the tree since has none. */
async function packagesOf(jobs: readonly Job[], platform: string, depgraph: DepGraphLink, signal: AbortSignal | undefined): Promise<Map<string, Package>> {
  const out = new Map<string, Package>();
  if (jobs.length > GET_PACKAGE_LIMIT) {
    const wanted = new Set(jobs.map((j) => j.pkgname));
    for (const p of await depgraph.listPackages(platform, signal)) if (wanted.has(p.pkgname)) out.set(p.pkgname, p);
    return out;
  }
  // A few at a time: enough to hide the round trips, not a burst on depgraph.
  const queue = jobs.map((j) => j.pkgname);
  await Promise.all(Array.from({ length: Math.min(8, queue.length) }, async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const p = await depgraph.getPackage(name, platform, signal);
      if (p !== undefined) out.set(name, p);
    }
  }));
  return out;
}

async function logLinks(logs: LogStore, buildId: string, pkgname: string, reportDir: string): Promise<ReportLog[]> {
  const stored = await logs.listLogs(buildId, pkgname);
  const rank = (phase: string) => (phase === "" ? -1 : PHASE_ORDER.includes(phase) ? PHASE_ORDER.indexOf(phase) : PHASE_ORDER.length);
  stored.sort((a, b) => rank(a.phase) - rank(b.phase) || (a.phase < b.phase ? -1 : a.phase > b.phase ? 1 : 0));
  return stored.map((l) => ({ phase: l.phase === "" ? WHOLE_LOG : l.phase, href: path.relative(reportDir, l.file).split(path.sep).join("/") }));
}
