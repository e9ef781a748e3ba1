import { cycleReason } from "./cycles.js";
import { Heap } from "./heap.js";
import { mapInSlices, type Steps } from "./steps.js";
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
  /**
   * How long the holder asked its lease to run (ms), on grant or last renewal,
   * so a restart gives a restored lease that length again rather than the
   * default. Absent in jobs stored before it was kept: the default applies.
   */
  lengthMs?: number;
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
  /**
   * The build time (ms) the scheduler expected when it ordered the build
   * (history, or the duration model's prediction); undefined for a job that
   * joined later with a tree change. ETAs and "why" answers use it, so they
   * agree with the order jobs are handed out in.
   */
  readonly expectedMs: number | undefined;
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
  /** Host name of the build host that runs or last ran the job, as its agent said; "" when not known. */
  host: string;
  /** When the current (or last) lease was granted; undefined when never leased (or restored from a store that did not keep it). */
  startedAt: number | undefined;
  durationMs: number;
  binaryPackage: BinaryPackage | undefined;
  logRef: string;
  /** The build phase that failed (pbulk's last phase log), "" when not known or not failed. */
  failedPhase: string;
  /**
   * Incremental builds: why the job is built or skipped ("up to date",
   * "rebuilt: ..."); "" in a full build, or while the build host is still to
   * check the binary package.
   */
  decision: string;
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
  /** Host name of that agent's build host, when known. */
  readonly host: string;
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

/**
 * Longest reason a job keeps. Reasons come from outside (a fail reason in a
 * scan record, a builder's failure text, a give-back message) and are
 * repeated in every Job message, transition and event of the job.
 */
export const MAX_REASON_CHARS = 2000;

function boundedReason(reason: string): string {
  if (reason.length <= MAX_REASON_CHARS) return reason;
  return `${reason.slice(0, MAX_REASON_CHARS)}... (${reason.length} characters in all)`;
}

/** Not started: waiting, ready, blocked before building, or dropped with the tree. */
function notStarted(job: Job): boolean {
  return job.state === "pending" || job.state === "ready" || job.state === "prefailed" || job.state === "cycle"
    || job.state === "indirect-failed" || (job.state === "cancelled" && job.reason === REMOVED);
}

/** A dependency in this state means the job cannot be built in this build. */
function isBlocking(job: Job): boolean {
  return job.state === "failed" || job.state === "prefailed" || job.state === "cycle" || job.state === "indirect-failed" || job.state === "cancelled";
}

/** InitialState is what a job is before anything is built. */
export interface InitialJob {
  readonly pkg: TreePackage;
  readonly dependencies: readonly number[];
  readonly state: "pending" | "prefailed" | "cycle" | "up-to-date";
  readonly reason: string;
  readonly cycle: readonly string[];
  readonly priority: number;
  /** The build time the scheduler expects, ms (see Job.expectedMs). */
  readonly expectedMs?: number;
  /** Incremental builds: why the job is built or skipped; "" otherwise. */
  readonly decision?: string;
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
  readonly failedPhase?: string;
  /** Host name of the build host; absent in jobs stored before it was kept, or when not known. */
  readonly host?: string;
  /** When its lease was granted; absent in jobs stored before it was kept. */
  readonly startedAt?: number;
}

/**
 * Build is the state machine of one build: which jobs wait, which are ready
 * (a heap by priority), which are leased, and how each ended. It knows
 * nothing of time but what callers pass in, nor of I/O.
 */
export class Build {
  readonly jobs: Job[] = [];
  readonly byPkgname = new Map<string, Job>();
  private readonly ready = new Heap<Job>((a, b) => a.priority > b.priority || (a.priority === b.priority && a.readySeq < b.readySeq));
  private readonly counts = new Map<JobState, number>();
  private readySeq = 0;
  private active = 0;
  state: BuildState = "running";
  finishedAt: number | undefined;
  /** While set, transitions are not announced: a restore replays state, it does not change it. */
  private muted = false;
  /**
   * manifest is every job built so far (succeeded, or up to date), in the
   * order they were built; it only grows. A caller that keeps a copy learns
   * each job's binary package once instead of in every assignment that needs
   * it (GetDependencyManifest).
   */
  readonly manifest: Job[] = [];
  /** Visit marks of transitiveDependencies, and the mark of its last walk. */
  private walkMarks: Uint32Array | undefined;
  private walkMark = 0;
  /** jobs in PKGNAME order, for paging; dropped when a job is added. */
  private sorted: Job[] | undefined;

  private constructor(
    readonly options: BuildOptions,
    private readonly emit: (t: JobTransition) => void,
  ) {
    for (const s of JOB_STATES) this.counts.set(s, 0);
  }

  /**
   * create makes a build from its jobs' initial states, in slices (see
   * steps.ts): a whole-tree build has tens of thousands of jobs. The build is
   * the caller's alone until the last slice, so nothing sees it half made.
   */
  static *create(options: BuildOptions, initial: readonly InitialJob[], emit: (t: JobTransition) => void): Steps<Build> {
    const build = new Build(options, emit);
    yield* build.setUp(initial);
    return build;
  }

  private *setUp(initial: readonly InitialJob[]): Steps<void> {
    const createdAt = this.options.createdAt;
    yield* mapInSlices(initial, (init, index) => {
      const kept = init.restored;
      // An outcome a store remembered wins over what the tree says now; a
      // job that was given back only keeps its attempt counts.
      const state = kept === undefined || kept.state === "ready" ? init.state : kept.state;
      this.jobs.push({
        index,
        pkg: init.pkg,
        pkgname: init.pkg.record.pkgname,
        dependencies: init.dependencies,
        dependents: [],
        state,
        waitingOn: 0,
        priority: init.priority,
        expectedMs: init.expectedMs,
        readySeq: 0,
        reason: boundedReason(state === init.state ? init.reason : kept!.reason),
        blockedBy: "",
        cycle: init.cycle,
        attempts: kept?.attempts ?? 0,
        losses: kept?.losses ?? 0,
        lease: state === "leased" ? kept!.lease : undefined,
        agentId: kept?.agentId ?? "",
        host: kept?.host ?? "",
        startedAt: kept?.startedAt,
        durationMs: kept?.durationMs ?? 0,
        binaryPackage: kept?.binaryPackage,
        logRef: kept?.logRef ?? "",
        failedPhase: kept?.failedPhase ?? "",
        decision: init.decision ?? "",
      });
    });
    yield* mapInSlices(this.jobs, (job) => {
      this.byPkgname.set(job.pkgname, job);
      for (const dep of job.dependencies) this.jobs[dep]!.dependents.push(job.index);
    });
    // Each job is blocked once at most, so this pass is linear however it is sliced.
    yield* mapInSlices(this.jobs, (job) => {
      if (job.state === "prefailed" || job.state === "cycle" || job.state === "failed") this.blockDependents(job, createdAt, false);
    });
    yield* mapInSlices(this.jobs, (job) => {
      if (job.state === "pending") {
        for (const dep of job.dependencies) if (!isBuilt(this.jobs[dep]!.state)) job.waitingOn++;
        if (job.waitingOn === 0) this.makeReady(job, createdAt, false);
      }
      this.counts.set(job.state, this.counts.get(job.state)! + 1);
      if (!isTerminal(job.state)) this.active++;
    });
    yield* mapInSlices(this.jobs, (job) => {
      if (isBuilt(job.state)) this.manifest.push(job);
    });
    this.checkFinished(createdAt);
  }

  get id(): string {
    return this.options.id;
  }

  /** The jobs in PKGNAME order (by code unit), sorted once and kept until a job joins. */
  sortedJobs(): readonly Job[] {
    this.sorted ??= [...this.jobs].sort((a, b) => (a.pkgname < b.pkgname ? -1 : a.pkgname > b.pkgname ? 1 : 0));
    return this.sorted;
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
    job.host = "";
    job.startedAt = now;
    job.attempts++;
    this.move(job, "leased", "", now);
    return job;
  }

  /** Ends a lease with success: dependents whose last dependency this was become ready. */
  succeed(job: Job, result: { durationMs: number; binaryPackage: BinaryPackage; logRef: string; upToDate?: boolean; decision?: string }, now: number): number {
    job.lease = undefined;
    job.durationMs = result.durationMs;
    job.binaryPackage = result.binaryPackage;
    job.logRef = result.logRef;
    if (result.decision !== undefined && result.decision !== "") job.decision = result.decision;
    // An agent that found the package current (pbulk's pkg-up-to-date) ends
    // the job up to date: dependents go on as after a build.
    this.move(job, result.upToDate === true ? "up-to-date" : "succeeded", result.upToDate === true ? job.decision || "binary package is current" : "", now);
    this.manifest.push(job);
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
  fail(job: Job, result: { durationMs: number; reason: string; logRef: string; failedPhase?: string }, now: number): number {
    job.lease = undefined;
    job.durationMs = result.durationMs;
    job.logRef = result.logRef;
    job.failedPhase = result.failedPhase ?? "";
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
   * Then the changed jobs and everything downstream of them are decided
   * again from their dependencies; the rest of the build is not touched, so
   * a change costs what it affects. Returns how many jobs changed state.
   */
  applyTreeChange(changes: PackageChanges, tree: TreeView, addNew: boolean, now: number): number {
    if (this.state !== "running") return 0;
    const removed = new Set(changes.removed);
    const refresh: string[] = [...changes.changed, ...changes.removed];
    for (const name of changes.added) {
      if (this.byPkgname.has(name) || addNew) refresh.push(name);
    }
    // Take the new records; append jobs for packages the build did not have.
    const seeds: Job[] = [];
    const stack = [...refresh];
    while (stack.length > 0) {
      const name = stack.pop()!;
      let job = this.byPkgname.get(name);
      const pkg = tree.get(name);
      if (job === undefined) {
        if (pkg === undefined) continue;
        job = this.newJob(pkg);
      } else if (!notStarted(job)) continue;
      seeds.push(job);
      if (pkg === undefined || removed.has(name)) {
        this.setDependencies(job, []);
        continue;
      }
      job.pkg = pkg;
      this.setDependencies(job, pkg.dependencies.map((dep) => {
        const known = this.byPkgname.get(dep);
        if (known !== undefined) return known.index;
        stack.push(dep);
        return this.newJob(tree.get(dep)!).index;
      }));
    }
    // A new job is as urgent as the most urgent job waiting for it.
    for (const job of seeds) {
      if (job.attempts === 0 && job.priority === 0) {
        for (const up of job.dependents) job.priority = Math.max(job.priority, this.jobs[up]!.priority);
      }
    }

    // The region to decide again: the changed jobs and all downstream of
    // them, deepest dependencies first.
    const region = new Set<number>();
    const down = seeds.map((j) => j.index);
    while (down.length > 0) {
      const i = down.pop()!;
      if (region.has(i)) continue;
      region.add(i);
      down.push(...this.jobs[i]!.dependents);
    }
    const order: Job[] = [];
    const visited = new Set<number>();
    for (const start of region) {
      const path: [number, number][] = [[start, 0]];
      while (path.length > 0) {
        const top = path[path.length - 1]!;
        const job = this.jobs[top[0]]!;
        if (top[1] === 0) {
          if (visited.has(job.index)) {
            path.pop();
            continue;
          }
          visited.add(job.index);
        }
        const next = job.dependencies[top[1]];
        if (next !== undefined) {
          top[1]++;
          if (region.has(next) && !visited.has(next)) path.push([next, 0]);
          continue;
        }
        path.pop();
        order.push(job);
      }
    }

    let moved = 0;
    let readyLeft = false;
    for (const job of order) {
      if (!notStarted(job)) continue;
      const gone = removed.has(job.pkgname) || tree.get(job.pkgname) === undefined;
      const cycle = gone ? undefined : tree.cycleOf(job.pkgname);
      const prefail = gone ? "" : tree.prefailReason(job.pkg);
      job.cycle = cycle ?? [];
      let [to, reason, blockedBy]: [JobState, string, string] = gone ? ["cancelled", REMOVED, ""]
        : cycle !== undefined ? ["cycle", cycleReason(cycle), ""]
        : prefail !== "" ? ["prefailed", prefail, ""]
        : ["pending", "", ""];
      job.waitingOn = 0;
      if (to === "pending") {
        for (const i of job.dependencies) {
          const dep = this.jobs[i]!;
          if (isBlocking(dep)) {
            const root = dep.state === "indirect-failed" ? this.byPkgname.get(dep.blockedBy) ?? dep : dep;
            [to, reason, blockedBy] = ["indirect-failed", `needs ${root.pkgname}, which is ${root.state}`, root.pkgname];
            break;
          }
          if (!isBuilt(dep.state)) job.waitingOn++;
        }
        if (to === "pending" && job.waitingOn === 0) to = "ready";
      }
      job.blockedBy = blockedBy;
      if (to === job.state) {
        job.reason = boundedReason(reason);
        continue;
      }
      moved++;
      if (job.state === "ready") readyLeft = true;
      if (to === "ready") {
        job.readySeq = this.readySeq++;
        this.ready.push(job);
      }
      this.move(job, to, reason, now);
    }
    if (readyLeft) this.ready.retain((job) => job.state === "ready");
    this.checkFinished(now);
    return moved;
  }

  private setDependencies(job: Job, dependencies: readonly number[]): void {
    for (const i of job.dependencies) {
      const list = this.jobs[i]!.dependents;
      const at = list.indexOf(job.index);
      if (at >= 0) list.splice(at, 1);
    }
    job.dependencies = dependencies;
    for (const i of dependencies) this.jobs[i]!.dependents.push(job.index);
  }

  private newJob(pkg: TreePackage): Job {
    const job: Job = {
      index: this.jobs.length, pkg, pkgname: pkg.record.pkgname, dependencies: [], dependents: [], state: "pending",
      waitingOn: 0, priority: 0, expectedMs: undefined, readySeq: 0, reason: "", blockedBy: "", cycle: [], attempts: 0, losses: 0,
      lease: undefined, agentId: "", host: "", startedAt: undefined, durationMs: 0, binaryPackage: undefined, logRef: "", failedPhase: "",
      decision: this.options.mode === "incremental" ? "rebuilt: new in the tree during the build" : "",
    };
    this.jobs.push(job);
    this.sorted = undefined;
    this.byPkgname.set(job.pkgname, job);
    this.counts.set("pending", this.counts.get("pending")! + 1);
    this.active++;
    return job;
  }

  /**
   * Every job this one needs, directly or not, each once. Marks visited jobs
   * with a number per walk in one array kept by the build, so a walk costs
   * the closure it finds and allocates only its answer; deep in a build a
   * job's closure has thousands of jobs and one is walked per assignment.
   */
  transitiveDependencies(job: Job): Job[] {
    if (this.walkMarks === undefined || this.walkMarks.length < this.jobs.length) this.walkMarks = new Uint32Array(this.jobs.length * 2);
    const marks = this.walkMarks;
    const mark = ++this.walkMark;
    if (mark === 0xffffffff) {
      marks.fill(0);
      this.walkMark = 1;
      return this.transitiveDependencies(job);
    }
    const result: Job[] = [];
    const stack: number[] = [];
    for (const i of job.dependencies) stack.push(i);
    while (stack.length > 0) {
      const i = stack.pop()!;
      if (marks[i] === mark) continue;
      marks[i] = mark;
      const dep = this.jobs[i]!;
      result.push(dep);
      for (const d of dep.dependencies) if (marks[d] !== mark) stack.push(d);
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

  private move(job: Job, to: JobState, why: string, now: number): void {
    const from = job.state;
    const reason = boundedReason(why);
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
      host: job.host,
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
