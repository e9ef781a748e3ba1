/**
 * Why a job stands where it stands: what it waits for, or what made it
 * fail, as the answer to the operator's most asked question ("why is X not
 * building?"). Pure: the caller says whether build hosts of the build's
 * platform are asking for work, and gives the expected durations.
 */

import { isTerminal, type Build, type Job } from "./build.js";
import { formatDuration } from "../../shared/duration-text.js";
import { remainingMs, type ExpectedMs } from "./estimate.js";
import type { ResourceWait } from "../../shared/placement.js";

/**
 * WaitKind is why a job is not running; callers show `detail` for a kind
 * they do not know. The resource kinds come from placement (ResourceWait).
 */
export type WaitKind = "none" | "dependencies" | "no-agent-for-platform" | "agents-busy" | ResourceWait;

export interface WaitReason {
  readonly kind: WaitKind;
  /** For "dependencies": direct dependencies not yet built, running ones first. */
  readonly dependencies: readonly string[];
  readonly detail: string;
}

export interface Explanation {
  /** From the job (not included) to the root cause; each holds up the one before. */
  readonly chain: readonly Job[];
  readonly wait: WaitReason;
  /** One sentence for a person. */
  readonly summary: string;
}

export interface ExplainContext {
  readonly expectedMs: ExpectedMs;
  readonly now: number;
  /** A dispatcher asked for work of the build's platform recently (its hosts are connected). */
  readonly platformServed: boolean;
  /** How long "recently" is, for the words. */
  readonly servedWindowMs: number;
  /**
   * Why a ready job runs on none of the platform's agents because of what it
   * needs of them (placement's resourceWaitOf over the agents the dispatcher
   * last sent); undefined when its needs are not the reason, or not known.
   */
  readonly resourceWait?: (job: Job) => { readonly kind: ResourceWait; readonly detail: string; readonly origin: string } | undefined;
}

/** Dependencies waitOf lists (ExplainJob lists every one). */
export const MAX_WAIT_DEPENDENCIES = 32;

/** How many dependencies a sentence names before it says "and N more". */
const NAMED_IN_SUMMARY = 3;

export function explainJob(build: Build, job: Job, context: ExplainContext): Explanation {
  switch (job.state) {
    case "pending":
      return explainWaiting(build, job, context);
    case "ready":
      return explainReady(build, job, context);
    case "indirect-failed":
      return explainBlocked(build, job);
    default:
      return { chain: [], wait: { kind: "none", dependencies: [], detail: "" }, summary: describeEnded(job, context.now) };
  }
}

/** A pending job: which dependencies are not built, and the longest chain of them. */
function explainWaiting(build: Build, job: Job, context: ExplainContext): Explanation {
  const unbuilt = notBuilt(build, job);
  const order = (j: Job) => (j.state === "leased" ? 0 : j.state === "ready" ? 1 : 2);
  unbuilt.sort((a, b) => order(a) - order(b) || (a.pkgname < b.pkgname ? -1 : 1));
  const untilBuilt = timeUntilBuilt(build, context);
  // Follow the dependency expected to be built last, down to one that is
  // ready or running: that is where the wait is.
  const chain: Job[] = [];
  const seen = new Set<number>([job.index]);
  let at = job;
  for (;;) {
    const deps = notBuilt(build, at).filter((d) => !seen.has(d.index));
    if (deps.length === 0) break;
    let slowest = deps[0]!;
    for (const d of deps) if (untilBuilt(d) > untilBuilt(slowest)) slowest = d;
    chain.push(slowest);
    seen.add(slowest.index);
    if (slowest.state !== "pending") break;
    at = slowest;
  }
  const names = unbuilt.map((d) => d.pkgname);
  const detail = `waits for ${unbuilt.length} ${unbuilt.length === 1 ? "dependency" : "dependencies"}: ${listed(names)}`;
  const end = chain[chain.length - 1];
  let summary = `${job.pkgname} ${detail}`;
  if (end !== undefined) {
    const through = chain.length > 1 ? `; the longest chain runs through ${chain.map((j) => j.pkgname).join(" → ")}` : "";
    summary += `${through}, ${chain.length > 1 ? "which" : `and ${end.pkgname}`} ${describeNow(end, context.now)}`;
  }
  return { chain, wait: { kind: "dependencies", dependencies: names, detail }, summary };
}

/** A ready job: no host of the platform, or every slot taken by jobs before it. */
function explainReady(build: Build, job: Job, context: ExplainContext): Explanation {
  const platform = build.options.platform || "the shared tree's platform";
  if (!context.platformServed) {
    const detail = `ready; no build host of platform ${platform} asked for work in the last ${Math.round(context.servedWindowMs / 1000)} s`;
    return { chain: [], wait: { kind: "no-agent-for-platform", dependencies: [], detail }, summary: `${job.pkgname} is ${detail}: connect an agent of that platform` };
  }
  const byNeeds = context.resourceWait?.(job);
  if (byNeeds !== undefined) {
    const detail = `ready; ${byNeeds.detail}`;
    const from = byNeeds.origin === "" ? "" : ` (its needs: ${byNeeds.origin})`;
    return { chain: [], wait: { kind: byNeeds.kind, dependencies: [], detail }, summary: `${job.pkgname} is ${detail}${from}` };
  }
  const ahead = build.jobs.filter((j) => j.state === "ready" && j !== job && (j.priority > job.priority || (j.priority === job.priority && j.readySeq < job.readySeq))).length;
  const running = build.countOf("leased");
  const detail = `ready; every slot of the build hosts of platform ${platform} is taken (${running} ${running === 1 ? "job" : "jobs"} of this build running, ${ahead} ready before it)`;
  return { chain: [], wait: { kind: "agents-busy", dependencies: [], detail }, summary: `${job.pkgname} is ${detail}` };
}

/**
 * waitOf is why a pending or ready job is not running, without the chain
 * and counts ExplainJob works out: cheap enough for every job of a
 * ListJobs page. Undefined for jobs that do not wait.
 */
export function waitOf(build: Build, job: Job, context: ExplainContext): WaitReason | undefined {
  if (job.state === "pending") {
    const names = notBuilt(build, job).map((d) => d.pkgname);
    // A page of thousands of jobs repeats these; the detail still counts them all.
    const dependencies = names.slice(0, MAX_WAIT_DEPENDENCIES);
    return { kind: "dependencies", dependencies, detail: `waits for ${names.length} ${names.length === 1 ? "dependency" : "dependencies"}: ${listed(names)}` };
  }
  if (job.state !== "ready") return undefined;
  const platform = build.options.platform || "the shared tree's platform";
  if (!context.platformServed) {
    return { kind: "no-agent-for-platform", dependencies: [], detail: `ready; no build host of platform ${platform} asked for work in the last ${Math.round(context.servedWindowMs / 1000)} s` };
  }
  const byNeeds = context.resourceWait?.(job);
  if (byNeeds !== undefined) return { kind: byNeeds.kind, dependencies: [], detail: `ready; ${byNeeds.detail}` };
  return { kind: "agents-busy", dependencies: [], detail: `ready; waiting for a free slot on a build host of platform ${platform}` };
}

/** An indirect-failed job: the path of failed dependencies down to the root cause. */
function explainBlocked(build: Build, job: Job): Explanation {
  const root = build.byPkgname.get(job.blockedBy);
  const chain = root === undefined ? [] : pathTo(build, job, root);
  const via = chain.length > 1 ? ` (through ${chain.slice(0, -1).map((j) => j.pkgname).join(" → ")})` : "";
  const summary = root === undefined
    ? `${job.pkgname} was not built: ${job.reason || "a dependency could not be built"}`
    : `${job.pkgname} was not built: it needs ${root.pkgname}${via}, which ${describeEnded(root, 0, false)}`;
  return { chain, wait: { kind: "none", dependencies: [], detail: "" }, summary };
}

/** Direct dependencies of a job not yet built (pending, ready or running). */
function notBuilt(build: Build, job: Job): Job[] {
  return job.dependencies.map((i) => build.jobs[i]!).filter((d) => !isTerminal(d.state));
}

/**
 * timeUntilBuilt(j): expected time until j is built, if hosts were free:
 * what is left of j plus the longest such time among its unbuilt
 * dependencies. Memoised per call; depth-first with an explicit stack.
 */
function timeUntilBuilt(build: Build, context: ExplainContext): (job: Job) => number {
  const memo = new Map<number, number>();
  return (start) => {
    const stack: [Job, number][] = [[start, 0]];
    const onPath = new Set<number>([start.index]);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const [job] = top;
      if (memo.has(job.index)) {
        stack.pop();
        onPath.delete(job.index);
        continue;
      }
      const next = job.dependencies[top[1]];
      if (next !== undefined) {
        top[1]++;
        const dep = build.jobs[next]!;
        if (!isTerminal(dep.state) && !memo.has(next) && !onPath.has(next)) {
          stack.push([dep, 0]);
          onPath.add(next);
        }
        continue;
      }
      let longest = 0;
      for (const i of job.dependencies) longest = Math.max(longest, memo.get(i) ?? 0);
      memo.set(job.index, remainingMs(job, context.expectedMs, context.now) + longest);
      onPath.delete(job.index);
      stack.pop();
    }
    return memo.get(start.index)!;
  };
}

/**
 * pathTo is the shortest path of dependencies from job to root, root last,
 * job not included, through jobs that are themselves not built.
 */
function pathTo(build: Build, job: Job, root: Job): Job[] {
  const previous = new Map<number, number>();
  const queue = [job.index];
  previous.set(job.index, -1);
  for (let i = 0; i < queue.length; i++) {
    const at = build.jobs[queue[i]!]!;
    if (at === root) break;
    for (const d of at.dependencies) {
      const dep = build.jobs[d]!;
      if (previous.has(d) || (dep !== root && dep.state !== "indirect-failed")) continue;
      previous.set(d, at.index);
      queue.push(d);
    }
  }
  if (!previous.has(root.index)) return [root];
  const path: Job[] = [];
  for (let i = root.index; i !== job.index; i = previous.get(i)!) path.push(build.jobs[i]!);
  return path.reverse();
}

/** What a ready or running job is doing now, e.g. "is building on host a1 for 4m10s". */
function describeNow(job: Job, now: number): string {
  if (job.state === "leased") {
    const where = job.host !== "" ? `host ${job.host}` : `agent ${job.agentId}`;
    return job.startedAt === undefined ? `is building on ${where}` : `is building on ${where} for ${formatDuration(now - job.startedAt)}`;
  }
  if (job.state === "ready") return "is ready, waiting for a build host";
  return `is ${job.state}`;
}

/** How a job that does not wait stands: running, built, or why it failed. */
function describeEnded(job: Job, now: number, named = true): string {
  const who = named ? `${job.pkgname} ` : "";
  const why = job.reason !== "" ? `: ${job.reason}` : "";
  switch (job.state) {
    case "leased":
      return `${who}${describeNow(job, now)}`;
    case "succeeded":
      return `${who}was built${job.host !== "" ? ` on host ${job.host}` : ""}`;
    case "up-to-date":
      return `${who}was up to date`;
    case "failed":
      return `${who}failed${job.failedPhase !== "" ? ` in phase ${job.failedPhase}` : ""}${why}`;
    case "prefailed":
      return `${who}cannot be built${why}`;
    case "cycle":
      return `${who}is in a dependency cycle with ${listed(job.cycle.filter((p) => p !== job.pkgname))}`;
    case "cancelled":
      return `${who}was cancelled${why}`;
    default:
      return `${who}is ${job.state}${why}`;
  }
}

function listed(names: readonly string[]): string {
  if (names.length <= NAMED_IN_SUMMARY) return names.join(", ");
  return `${names.slice(0, NAMED_IN_SUMMARY).join(", ")} and ${names.length - NAMED_IN_SUMMARY} more`;
}
