import { DepGraph } from "../services/depgraph/core/depgraph.js";
import { Heap } from "../services/depgraph/core/heap.js";
import type { DurationHistory } from "../services/depgraph/core/history.js";
import type { PolicyName } from "../services/depgraph/core/priority.js";
import type { PackageTree } from "../services/depgraph/core/tree.js";

export interface SimulationResult {
  readonly policy: PolicyName;
  readonly agents: number;
  readonly makespanHours: number;
  readonly lowerBoundHours: number;
  readonly ratio: number;
  readonly jobsBuilt: number;
  readonly criticalPathHours: number;
  readonly totalWorkHours: number;
}

const PLATFORM = "Sim-1.0-x86_64";
const BINARY = { fileName: "sim.tgz", sha256: "0".repeat(64), sizeBytes: 1 };

/**
 * simulateBulkBuild runs a whole bulk build through the real core with a
 * scripted clock: `agents` build hosts each take the next ready job the
 * moment they are free, and a job takes its true duration. The policy sees
 * only what `history` tells it, never trueMs.
 */
export function simulateBulkBuild(
  tree: PackageTree,
  policy: PolicyName,
  agents: number,
  trueMs: (pkgname: string) => number,
  history: DurationHistory,
): SimulationResult {
  let now = 0;
  let ids = 0;
  const depgraph = new DepGraph({
    now: () => now,
    newId: () => String(++ids),
    history,
    defaultPolicy: policy,
    defaultLeaseMs: 1e12,
    maxLeaseMs: 1e12,
    maxLosses: 3,
    fallbackDurationMs: 60_000,
    tree,
  });
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy, limitTo: [], packagesDir: "", binaryPackages: new Map() });

  interface Running { end: number; pkgname: string; leaseId: string }
  const running = new Heap<Running>((a, b) => a.end < b.end);
  let free = agents;
  let built = 0;
  const startWork = () => {
    if (free === 0) return;
    for (const a of depgraph.nextReadyJobs(PLATFORM, "sim", free, undefined)) {
      running.push({ end: now + trueMs(a.job.pkgname), pkgname: a.job.pkgname, leaseId: a.lease.id });
      free--;
    }
  };
  startWork();
  while (running.size > 0) {
    const done = running.pop()!;
    now = done.end;
    depgraph.markDone([{ buildId: build.id, pkgname: done.pkgname, leaseId: done.leaseId, succeeded: true, durationMs: trueMs(done.pkgname), binaryPackage: BINARY, logRef: "", failureReason: "" }]);
    free++;
    built++;
    // Finish everything that ends at this instant before choosing, as a real
    // dispatcher would see simultaneous completions together.
    if (running.peek()?.end === now) continue;
    startWork();
  }
  if (build.state !== "finished") throw new Error(`simulation stalled with ${build.countOf("pending")} jobs pending`);
  const work = workFigures(build.jobs, trueMs);
  const lowerBound = Math.max(work.criticalPathMs, work.totalWorkMs / agents);
  return {
    policy,
    agents,
    criticalPathHours: work.criticalPathMs / 3_600_000,
    totalWorkHours: work.totalWorkMs / 3_600_000,
    makespanHours: now / 3_600_000,
    lowerBoundHours: lowerBound / 3_600_000,
    ratio: now / lowerBound,
    jobsBuilt: built,
  };
}

interface SimJob {
  readonly pkgname: string;
  readonly state: string;
  readonly dependencies: readonly number[];
}

/** Critical path and total work over the jobs that were built, with true durations. */
export function workFigures(jobs: readonly SimJob[], trueMs: (pkgname: string) => number): { criticalPathMs: number; totalWorkMs: number; jobs: number } {
  const finish = new Float64Array(jobs.length).fill(-1);
  let criticalPathMs = 0;
  let totalWorkMs = 0;
  let count = 0;
  const visit = (root: number): number => {
    const stack = [root];
    while (stack.length > 0) {
      const i = stack[stack.length - 1]!;
      if (finish[i]! >= 0) {
        stack.pop();
        continue;
      }
      const pendingDeps = jobs[i]!.dependencies.filter((d) => finish[d]! < 0);
      if (pendingDeps.length > 0) {
        stack.push(...pendingDeps);
        continue;
      }
      stack.pop();
      let start = 0;
      for (const d of jobs[i]!.dependencies) start = Math.max(start, finish[d]!);
      finish[i] = start + (jobs[i]!.state === "succeeded" ? trueMs(jobs[i]!.pkgname) : 0);
    }
    return finish[root]!;
  };
  jobs.forEach((job, i) => {
    if (job.state !== "succeeded") return;
    count++;
    totalWorkMs += trueMs(job.pkgname);
    criticalPathMs = Math.max(criticalPathMs, visit(i));
  });
  return { criticalPathMs, totalWorkMs, jobs: count };
}

/** A small fast PRNG with a fixed seed, so every run draws the same durations. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
