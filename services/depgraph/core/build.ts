import { Heap } from "./heap.js";
import type { PolicyName } from "./priority.js";
import type { TreePackage } from "./tree.js";

export type JobState =
  | "pending"
  | "ready"
  | "leased"
  | "succeeded"
  | "failed"
  | "prefailed"
  | "indirect-failed"
  | "cycle"
  | "up-to-date"
  | "cancelled";

export const JOB_STATES: readonly JobState[] = [
  "pending", "ready", "leased", "succeeded", "failed", "prefailed", "indirect-failed", "cycle", "up-to-date", "cancelled",
];

const ACTIVE_STATES: ReadonlySet<JobState> = new Set(["pending", "ready", "leased"]);

export function isTerminal(state: JobState): boolean {
  return !ACTIVE_STATES.has(state);
}

/** Built, for the purpose of its dependents: they may start. */
function isBuilt(state: JobState): boolean {
  return state === "succeeded" || state === "up-to-date";
}

export type BuildMode = "full" | "incremental";
export type BuildState = "running" | "finished" | "cancelled";

/** BinaryPackage is a built package file as MarkDone reported it. */
export interface BinaryPackage {
  readonly fileName: string;
  readonly sha256: string;
  readonly sizeBytes: number;
}

/** Lease: who holds a job until when. Its id is what MarkDone must present. */
export interface Lease {
  readonly id: string;
  readonly agentId: string;
  deadline: number;
}

/** Job is one package in one build. Mutated only by its Build. */
export interface Job {
  readonly index: number;
  /** The package as the tree has it now; a change of the tree updates jobs not yet started. */
  pkg: TreePackage;
  readonly pkgname: string;
  dependencies: readonly number[];
  dependents: number[];
  state: JobState;
  /** Dependencies not yet built. */
  waitingOn: number;
  priority: number;
  /** Order in which the job became ready, to break priority ties first-come first-served. */
  readySeq: number;
  reason: string;
  blockedBy: string;
  cycle: readonly string[];
  /** Leases granted so far. */
  attempts: number;
  /** Leases lost (expired, or given back because the agent went away). */
  losses: number;
  lease: Lease | undefined;
  agentId: string;
  durationMs: number;
  binaryPackage: BinaryPackage | undefined;
  logRef: string;
}

/** JobTransition is one change of a job's state, as WatchJobs and NATS see it. */
export interface JobTransition {
  readonly buildId: string;
  readonly pkgname: string;
  readonly location: string;
  readonly from: JobState;
  readonly to: JobState;
  readonly reason: string;
  readonly agentId: string;
  readonly time: number;
}

export interface BuildOptions {
  readonly id: string;
  readonly platform: string;
  readonly mode: BuildMode;
  readonly policy: PolicyName;
  readonly limitTo: readonly string[];
  readonly packagesDir: string;
  readonly createdAt: number;
}

/** TreeView is what a build needs of the tree to take a change. */
export interface TreeView {
  get(pkgname: string): TreePackage | undefined;
  /** The cycle a package is on, if any. */
  cycleOf(pkgname: string): readonly string[] | undefined;
  /** Why a package cannot be built at all; "" if it can. */
  prefailReason(pkg: TreePackage): string;
}

/** A change of the tree, by PKGNAME. */
export interface PackageChanges {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly string[];
}

const REMOVED = "removed from the tree";

/** InitialState is what a job is before anything is built. */
export interface InitialJob {
  readonly pkg: TreePackage;
  readonly dependencies: readonly number[];
  readonly state: "pending" | "prefailed" | "cycle" | "up-to-date";
  readonly reason: string;
  readonly cycle: readonly string[];
  readonly priority: number;
  /** What a durable store remembered of this job, when a build is restored after a restart. */
  readonly restored?: RestoredJob;
}

/**
 * RestoredJob is the part of a job's state that cannot be derived from the
 * tree: outcomes, leases, and attempts. Waiting, ready and blocked jobs are
 * recomputed from the outcomes.
 */
export interface RestoredJob {
  readonly state: "leased" | "succeeded" | "failed" | "up-to-date" | "ready";
  readonly reason: string;
  readonly attempts: number;
  readonly losses: number;
  readonly agentId: string;
  readonly lease: Lease | undefined;
  readonly durationMs: number;
  readonly binaryPackage: BinaryPackage | undefined;
  readonly logRef: string;
}

/**
 * Build is the state machine of one build: which jobs wait, which are ready
 * (a heap by priority), which are leased, and how each ended. It knows
 * nothing of time but what callers pass in, nor of I/O.
 */
export class Build {
  readonly jobs: Job[];
  readonly byPkgname = new Map<string, Job>();
  private readonly ready = new Heap<Job>((a, b) => a.priority > b.priority || (a.priority === b.priority && a.readySeq < b.readySeq));
  private readonly counts = new Map<JobState, number>();
  private readySeq = 0;
  private active = 0;
  state: BuildState = "running";
  finishedAt: number | undefined;
  /** While set, transitions are not announced: a restore replays state, it does not change it. */
  private muted = false;

  constructor(
    readonly options: BuildOptions,
    initial: readonly InitialJob[],
    private readonly emit: (t: JobTransition) => void,
  ) {
    for (const s of JOB_STATES) this.counts.set(s, 0);
    this.jobs = initial.map((init, index) => {
      const kept = init.restored;
      // An outcome a store remembered wins over what the tree says now; a
      // job that was given back only keeps its attempt counts.
      const state = kept === undefined || kept.state === "ready" ? init.state : kept.state;
      return {
        index,
        pkg: init.pkg,
        pkgname: init.pkg.record.pkgname,
        dependencies: init.dependencies,
        dependents: [],
        state,
        waitingOn: 0,
        priority: init.priority,
        readySeq: 0,
        reason: state === init.state ? init.reason : kept!.reason,
        blockedBy: "",
        cycle: init.cycle,
        attempts: kept?.attempts ?? 0,
        losses: kept?.losses ?? 0,
        lease: state === "leased" ? kept!.lease : undefined,
        agentId: kept?.agentId ?? "",
        durationMs: kept?.durationMs ?? 0,
        binaryPackage: kept?.binaryPackage,
        logRef: kept?.logRef ?? "",
      };
    });
    for (const job of this.jobs) {
      this.byPkgname.set(job.pkgname, job);
      for (const dep of job.dependencies) this.jobs[dep]!.dependents.push(job.index);
    }
    for (const job of this.jobs) {
      if (job.state === "prefailed" || job.state === "cycle" || job.state === "failed") this.blockDependents(job, options.createdAt, false);
    }
    for (const job of this.jobs) {
      if (job.state === "pending") {
        for (const dep of job.dependencies) if (!isBuilt(this.jobs[dep]!.state)) job.waitingOn++;
        if (job.waitingOn === 0) this.makeReady(job, options.createdAt, false);
      }
      this.counts.set(job.state, this.counts.get(job.state)! + 1);
      if (!isTerminal(job.state)) this.active++;
    }
    this.checkFinished(options.createdAt);
  }

  get id(): string {
    return this.options.id;
  }

  countOf(state: JobState): number {
    return this.counts.get(state)!;
  }

  get readyCount(): number {
    return this.ready.size;
  }

  /** Takes the highest-priority ready job and leases it. */
  leaseNext(lease: Lease, now: number): Job | undefined {
    const job = this.ready.pop();
    if (job === undefined) return undefined;
    job.lease = lease;
    job.agentId = lease.agentId;
    job.attempts++;
    this.move(job, "leased", "", now);
    return job;
  }

  /** Ends a lease with success: dependents whose last dependency this was become ready. */
  succeed(job: Job, result: { durationMs: number; binaryPackage: BinaryPackage; logRef: string }, now: number): number {
    job.lease = undefined;
    job.durationMs = result.durationMs;
    job.binaryPackage = result.binaryPackage;
    job.logRef = result.logRef;
    this.move(job, "succeeded", "", now);
    let newlyReady = 0;
    for (const up of job.dependents) {
      const dependent = this.jobs[up]!;
      dependent.waitingOn--;
      if (dependent.waitingOn === 0 && dependent.state === "pending") {
        this.makeReady(dependent, now, true);
        newlyReady++;
      }
    }
    this.checkFinished(now);
    return newlyReady;
  }

  /** Ends a job as failed; everything that needs it becomes indirect-failed. */
  fail(job: Job, result: { durationMs: number; reason: string; logRef: string }, now: number): number {
    job.lease = undefined;
    job.durationMs = result.durationMs;
    job.logRef = result.logRef;
    this.move(job, "failed", result.reason, now);
    const blocked = this.blockDependents(job, now, true);
    this.checkFinished(now);
    return blocked;
  }

  /**
   * Puts a leased job back in the ready queue. A lost lease counts against
   * maxLosses, so a package that kills every agent it meets fails instead of
   * going round for ever; a draining agent's give-back does not count.
   */
  requeue(job: Job, reason: string, counts: boolean, maxLosses: number, now: number): "requeued" | "failed" {
    job.lease = undefined;
    if (counts) job.losses++;
    if (counts && job.losses >= maxLosses) {
      this.fail(job, { durationMs: 0, reason: `gave up after ${job.losses} lost leases; last: ${reason}`, logRef: job.logRef }, now);
      return "failed";
    }
    this.move(job, "ready", reason, now);
    job.readySeq = this.readySeq++;
    this.ready.push(job);
    return "requeued";
  }

  /** Runs fn without announcing the transitions it makes (restoring a cancelled build). */
  quietly<T>(fn: () => T): T {
    this.muted = true;
    try {
      return fn();
    } finally {
      this.muted = false;
    }
  }

  /** Ends every job not yet terminal as cancelled; returns the leases that were held. */
  cancel(now: number): Lease[] {
    const dropped: Lease[] = [];
    for (const job of this.jobs) {
      if (isTerminal(job.state)) continue;
      if (job.lease !== undefined) dropped.push(job.lease);
      job.lease = undefined;
      this.move(job, "cancelled", "build cancelled", now);
    }
    this.ready.retain(() => false);
    this.state = "cancelled";
    this.finishedAt = now;
    return dropped;
  }

  /**
   * applyTreeChange brings a running build up to date with the tree. Jobs
   * not started yet (waiting, ready, or blocked) take the new records and
   * dependencies, packages new to the tree join a whole-tree build, and
   * removed ones leave it; jobs leased or finished keep what they built.
   * Then every job not started is decided again from its dependencies.
   * Returns how many jobs changed state.
   */
  applyTreeChange(changes: PackageChanges, tree: TreeView, addNew: boolean, now: number): number {
    if (this.state !== "running") return 0;
    const notStarted = (job: Job) => job.state === "pending" || job.state === "ready" || job.state === "prefailed"
      || job.state === "cycle" || job.state === "indirect-failed" || (job.state === "cancelled" && job.reason === REMOVED);
    const removed = new Set(changes.removed);
    const refresh: string[] = [...changes.changed];
    for (const name of changes.added) {
      if (this.byPkgname.has(name) || addNew) refresh.push(name);
    }
    // Take the new records; append jobs for packages the build did not have.
    const stack = [...refresh];
    const appended: Job[] = [];
    while (stack.length > 0) {
      const name = stack.pop()!;
      const pkg = tree.get(name);
      if (pkg === undefined) continue;
      let job = this.byPkgname.get(name);
      if (job === undefined) {
        job = this.newJob(pkg, 0);
        appended.push(job);
      } else if (!notStarted(job) || removed.has(name)) continue;
      job.pkg = pkg;
      job.dependencies = pkg.dependencies.map((dep) => {
        const known = this.byPkgname.get(dep);
        if (known !== undefined) return known.index;
        stack.push(dep);
        const added = this.newJob(tree.get(dep)!, 0);
        appended.push(added);
        return added.index;
      });
    }
    for (const job of this.jobs) job.dependents = [];
    for (const job of this.jobs) for (const dep of job.dependencies) this.jobs[dep]!.dependents.push(job.index);
    // A new job is as urgent as the most urgent job waiting for it.
    for (const job of appended) {
      let priority = 0;
      const seen = new Set<number>();
      const up = [...job.dependents];
      while (up.length > 0) {
        const i = up.pop()!;
        if (seen.has(i)) continue;
        seen.add(i);
        priority = Math.max(priority, this.jobs[i]!.priority);
        if (seen.size > 64) break;
        up.push(...this.jobs[i]!.dependents);
      }
      job.priority = priority;
    }

    // Decide every job not started again: first what it is on its own...
    const next = new Map<Job, [JobState, string, string]>();
    for (const job of this.jobs) {
      if (!notStarted(job)) continue;
      const cycle = removed.has(job.pkgname) ? undefined : tree.cycleOf(job.pkgname);
      const prefail = removed.has(job.pkgname) ? "" : tree.prefailReason(job.pkg);
      job.cycle = cycle ?? [];
      next.set(job, removed.has(job.pkgname) || (job.state === "cancelled" && tree.get(job.pkgname) === undefined) ? ["cancelled", REMOVED, ""]
        : cycle !== undefined ? ["cycle", `dependency cycle: ${cycle.join(" -> ")}`, ""]
        : prefail !== "" ? ["prefailed", prefail, ""]
        : ["pending", "", ""]);
    }
    // ...then what its dependencies make of it.
    const stateOf = (job: Job) => next.get(job)?.[0] ?? job.state;
    const roots = this.jobs.filter((job) => { const s = stateOf(job); return s === "failed" || s === "prefailed" || s === "cycle" || (s === "cancelled" && next.has(job)); });
    for (const root of roots) {
      const down = [...root.dependents];
      while (down.length > 0) {
        const job = this.jobs[down.pop()!]!;
        if (next.get(job)?.[0] !== "pending") continue;
        next.set(job, ["indirect-failed", `needs ${root.pkgname}, which is ${stateOf(root)}`, root.pkgname]);
        down.push(...job.dependents);
      }
    }
    let moved = 0;
    this.ready.retain(() => false);
    for (const [job, [state, reason, blockedBy]] of next) {
      job.waitingOn = 0;
      let to = state;
      if (to === "pending") {
        for (const dep of job.dependencies) if (!isBuilt(stateOf(this.jobs[dep]!))) job.waitingOn++;
        if (job.waitingOn === 0) to = "ready";
      }
      job.blockedBy = blockedBy;
      if (to === "ready" && job.state !== "ready") job.readySeq = this.readySeq++;
      if (to !== job.state) {
        moved++;
        this.move(job, to, reason, now);
      } else {
        job.reason = reason;
      }
      if (to === "ready") this.ready.push(job);
    }
    this.checkFinished(now);
    return moved;
  }

  private newJob(pkg: TreePackage, priority: number): Job {
    const job: Job = {
      index: this.jobs.length, pkg, pkgname: pkg.record.pkgname, dependencies: [], dependents: [], state: "pending",
      waitingOn: 0, priority, readySeq: 0, reason: "", blockedBy: "", cycle: [], attempts: 0, losses: 0,
      lease: undefined, agentId: "", durationMs: 0, binaryPackage: undefined, logRef: "",
    };
    this.jobs.push(job);
    this.byPkgname.set(job.pkgname, job);
    this.counts.set("pending", this.counts.get("pending")! + 1);
    this.active++;
    return job;
  }

  /** Every job this one needs, directly or not. */
  transitiveDependencies(job: Job): Job[] {
    const seen = new Set<number>();
    const stack = [...job.dependencies];
    const result: Job[] = [];
    while (stack.length > 0) {
      const i = stack.pop()!;
      if (seen.has(i)) continue;
      seen.add(i);
      const dep = this.jobs[i]!;
      result.push(dep);
      stack.push(...dep.dependencies);
    }
    return result;
  }

  private makeReady(job: Job, now: number, announce: boolean): void {
    job.readySeq = this.readySeq++;
    if (announce) this.move(job, "ready", "", now);
    else job.state = "ready";
    this.ready.push(job);
  }

  private blockDependents(root: Job, now: number, announce: boolean): number {
    let blocked = 0;
    const stack = [...root.dependents];
    while (stack.length > 0) {
      const job = this.jobs[stack.pop()!]!;
      if (job.state !== "pending") continue;
      job.blockedBy = root.pkgname;
      const reason = `needs ${root.pkgname}, which is ${root.state}`;
      if (announce) this.move(job, "indirect-failed", reason, now);
      else {
        job.state = "indirect-failed";
        job.reason = reason;
      }
      blocked++;
      stack.push(...job.dependents);
    }
    return blocked;
  }

  private move(job: Job, to: JobState, reason: string, now: number): void {
    const from = job.state;
    job.state = to;
    job.reason = reason;
    this.counts.set(from, this.counts.get(from)! - 1);
    this.counts.set(to, this.counts.get(to)! + 1);
    if (!isTerminal(from) && isTerminal(to)) this.active--;
    if (isTerminal(from) && !isTerminal(to)) this.active++;
    if (this.muted) return;
    this.emit({
      buildId: this.options.id,
      pkgname: job.pkgname,
      location: job.pkg.record.location,
      from,
      to,
      reason,
      agentId: job.agentId,
      time: now,
    });
  }

  private checkFinished(now: number): void {
    if (this.active === 0 && this.state === "running") {
      this.state = "finished";
      this.finishedAt = now;
    }
  }
}
