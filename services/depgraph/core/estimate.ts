/**
 * When a running build should end, from the durations the scheduler already
 * assumes (build history, or the typical duration scaled by PBULK_WEIGHT).
 * Pure: the caller gives the build, each job's expected duration and now.
 *
 * The estimate is the larger of two lower bounds on what is left: the
 * longest chain of unfinished work along dependencies, and all unfinished
 * work spread over as many hosts as run the build's jobs now. It is what
 * the critical-path benchmark calls the lower bound, applied to what is
 * left; failures to come (which end jobs early) and hosts joining or
 * leaving move it as the build goes.
 */

import { isTerminal, type Build, type Job } from "./build.js";

/** ExpectedMs gives a job's expected build time in ms. */
export type ExpectedMs = (job: Job) => number;

export interface BuildEstimate {
  /** Wall time expected until the build ends, ms. */
  readonly remainingMs: number;
  /** Expected build time of every unfinished job, summed (what is left of running ones), ms. */
  readonly workLeftMs: number;
  /** Expected build time along the longest chain of unfinished jobs, ms. */
  readonly criticalPathLeftMs: number;
  /** Jobs assumed to run at once: those running now, at least 1. */
  readonly parallelism: number;
}

/**
 * remainingMs is what is left of a job: all of it when not started, what
 * its expected duration has not used up when running (never below 0: a job
 * over its time may end any moment), nothing once ended.
 */
export function remainingMs(job: Job, expectedMs: ExpectedMs, now: number): number {
  if (isTerminal(job.state)) return 0;
  const expected = expectedMs(job);
  if (job.state !== "leased" || job.startedAt === undefined) return expected;
  return Math.max(0, expected - (now - job.startedAt));
}

/** estimateBuild is the estimate for a running build; undefined once it has ended. */
export function estimateBuild(build: Build, expectedMs: ExpectedMs, now: number): BuildEstimate | undefined {
  if (build.state !== "running") return undefined;
  const left = new Float64Array(build.jobs.length);
  let workLeftMs = 0;
  let running = 0;
  for (const job of build.jobs) {
    left[job.index] = remainingMs(job, expectedMs, now);
    workLeftMs += left[job.index]!;
    if (job.state === "leased") running++;
  }
  // chain[i]: the longest chain of unfinished work from job i up through its
  // dependents. Dependents first, by an explicit stack: chains in pkgsrc are
  // hundreds of jobs deep, and recursion would be too.
  const chain = new Float64Array(build.jobs.length).fill(-1);
  let criticalPathLeftMs = 0;
  for (const start of build.jobs) {
    if (isTerminal(start.state) || chain[start.index]! >= 0) continue;
    const stack: [number, number][] = [[start.index, 0]];
    // Marks jobs on the current path, so a malformed graph cannot loop.
    const onPath = new Set<number>([start.index]);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const job = build.jobs[top[0]]!;
      const next = job.dependents[top[1]];
      if (next !== undefined) {
        top[1]++;
        if (chain[next]! < 0 && !onPath.has(next) && !isTerminal(build.jobs[next]!.state)) {
          stack.push([next, 0]);
          onPath.add(next);
        }
        continue;
      }
      let longest = 0;
      for (const up of job.dependents) longest = Math.max(longest, chain[up]! > 0 ? chain[up]! : 0);
      chain[job.index] = left[job.index]! + longest;
      criticalPathLeftMs = Math.max(criticalPathLeftMs, chain[job.index]!);
      onPath.delete(job.index);
      stack.pop();
    }
  }
  const parallelism = Math.max(1, running);
  return { remainingMs: Math.max(criticalPathLeftMs, workLeftMs / parallelism), workLeftMs, criticalPathLeftMs, parallelism };
}
