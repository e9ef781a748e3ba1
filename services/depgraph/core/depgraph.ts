import { Build, type BinaryPackage, type BuildMode, type BuildOptions, type InitialJob, type Job, type JobTransition, type PackageChanges, type RestoredJob, type TreeView } from "./build.js";
import type { InvalidScanRecord } from "./errors.js";
import type { ScanRecord } from "./scan-record.js";
import { EmptyTree, InvalidRequest, StaleLease, UnknownBuild, UnknownPackage } from "./errors.js";
import { cycleReason } from "./cycles.js";
import { Heap } from "./heap.js";
import type { DurationHistory } from "./history.js";
import { upToDatePackages, type BinaryPackageFile } from "./incremental.js";
import { policies, type PolicyName } from "./priority.js";
import { isValidLocation, isValidPkgname } from "./scan-record.js";
import { Counter, ITEMS_PER_SLICE, mapInSlices, runSteps, type Steps } from "./steps.js";
import { PackageTree, prefailReason, type TreeChange } from "./tree.js";

export interface DepGraphOptions {
  /** Milliseconds since the epoch; read once per operation. */
  readonly now: () => number;
  /** Fresh unguessable ids for builds and leases. */
  readonly newId: () => string;
  readonly history: DurationHistory;
  readonly defaultPolicy: PolicyName;
  readonly defaultLeaseMs: number;
  readonly maxLeaseMs: number;
  /** Lost leases after which a job fails rather than going back to ready. */
  readonly maxLosses: number;
  /** Expected duration of a package never built, when history has nothing at all. */
  readonly fallbackDurationMs: number;
  /** A tree to start from (benchmarks share one resolved tree); a new empty one otherwise. */
  readonly tree?: PackageTree;
  /**
   * Finished and cancelled builds kept, newest first; older ones are
   * forgotten when a build starts. Without a bound every whole-tree build
   * would stay in memory and in the durable store for good.
   */
  readonly keepFinishedBuilds?: number;
}

export const DEFAULT_KEEP_FINISHED_BUILDS = 20;

export interface CreateBuildRequest {
  readonly platform: string;
  readonly mode: BuildMode;
  readonly policy: PolicyName | undefined;
  readonly limitTo: readonly string[];
  readonly packagesDir: string;
  /** Binary packages present in packagesDir (incremental builds only). */
  readonly binaryPackages: ReadonlyMap<string, BinaryPackageFile>;
}

/** Assignment is a leased job handed to a build host. */
export interface Assignment {
  readonly build: Build;
  readonly job: Job;
  readonly lease: { readonly id: string; readonly deadline: number };
}

export interface LeaseRef {
  readonly buildId: string;
  readonly pkgname: string;
  readonly leaseId: string;
}

export interface JobResult extends LeaseRef {
  readonly succeeded: boolean;
  readonly durationMs: number;
  readonly binaryPackage: BinaryPackage | undefined;
  readonly logRef: string;
  readonly failureReason: string;
}

interface LeaseDeadline {
  readonly deadline: number;
  readonly build: Build;
  readonly job: Job;
  readonly leaseId: string;
}

/** RestoredBuild is a build as a durable store remembered it. */
export interface RestoredBuild {
  readonly options: BuildOptions;
  readonly cancelled: boolean;
  readonly finishedAt: number | undefined;
  /** Jobs with something to remember, by PKGNAME. */
  readonly jobs: ReadonlyMap<string, RestoredJob>;
}

/** TreeChangeNotice says what a change of the tree touched, so a store can write it. */
export interface TreeChangeNotice {
  readonly revision: number;
  readonly locations: readonly string[];
  readonly packages: PackageChanges;
  /** When the change was applied: binary packages older than this are out of date for changed packages. */
  readonly time: number;
}

/** Tries at a build in slices before a moving tree makes it one step (see startBuild). */
const SLICED_ATTEMPTS = 3;
/** Packages a limited build's selection visits per slice. */
const SELECT_SLICE = 5_000;

const PLATFORM_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

/**
 * DepGraph is the whole depgraph service as a pure state machine: the tree,
 * the builds, and the leases. Adapters (gRPC, NATS, the store) call it and
 * never reach inside; it does no I/O and reads time only through options.now.
 */
export class DepGraph {
  readonly tree: PackageTree;
  private readonly builds = new Map<string, Build>();
  private readonly leaseDeadlines = new Heap<LeaseDeadline>((a, b) => a.deadline < b.deadline);
  private leasesHeld = 0;
  private readonly transitionListeners = new Set<(t: JobTransition) => void>();
  private readonly readyListeners = new Set<() => void>();
  private readonly buildListeners = new Set<(build: Build) => void>();
  private readonly forgetListeners = new Set<(build: Build) => void>();
  private readonly treeListeners = new Set<(notice: TreeChangeNotice) => void>();
  /** When each package's metadata last changed; its binary packages from before are out of date. */
  private readonly changedAt = new Map<string, number>();

  constructor(private readonly options: DepGraphOptions) {
    this.tree = options.tree ?? new PackageTree();
  }

  /** Calls listener on every job transition of every build. Returns an unsubscribe function. */
  onTransition(listener: (t: JobTransition) => void): () => void {
    this.transitionListeners.add(listener);
    return () => this.transitionListeners.delete(listener);
  }

  /** Calls listener whenever jobs may have become ready (so waiting callers retry). */
  onReady(listener: () => void): () => void {
    this.readyListeners.add(listener);
    return () => this.readyListeners.delete(listener);
  }

  /** Calls listener when a build is created or cancelled (its options or its end changed). */
  onBuildChange(listener: (build: Build) => void): () => void {
    this.buildListeners.add(listener);
    return () => this.buildListeners.delete(listener);
  }

  /** Calls listener when an old finished build is forgotten. */
  onBuildForgotten(listener: (build: Build) => void): () => void {
    this.forgetListeners.add(listener);
    return () => this.forgetListeners.delete(listener);
  }

  /** Calls listener after every change of the tree, with the locations it touched. */
  onTreeChange(listener: (notice: TreeChangeNotice) => void): () => void {
    this.treeListeners.add(listener);
    return () => this.treeListeners.delete(listener);
  }

  /**
   * replaceTree takes new scan records for the whole tree or for the
   * locations they name. Every change goes through here (or applyLocations),
   * so listeners see each one.
   */
  replaceTree(records: readonly ScanRecord[], scope: "tree" | "locations"): InvalidScanRecord[] {
    return runSteps(this.replaceTreeSteps(records, scope));
  }

  /**
   * replaceTreeSteps is replaceTree in slices: a whole-tree import resolves
   * tens of thousands of records (see PackageTree.applyTreeSteps), and the
   * tree changes, for builds and listeners, only in the last slice.
   */
  *replaceTreeSteps(records: readonly ScanRecord[], scope: "tree" | "locations"): Steps<InvalidScanRecord[]> {
    const touched = new Set(records.map((r) => r.location));
    const update = scope === "tree" ? yield* this.tree.applyTreeSteps(records) : this.tree.applyLocations(records, []);
    for (const location of update.locationsBefore ?? []) touched.add(location);
    this.takeTreeChange(update.change, touched);
    return update.problems;
  }

  /** applyLocations replaces the locations records name and drops removedLocations. */
  applyLocations(records: readonly ScanRecord[], removedLocations: readonly string[]): InvalidScanRecord[] {
    const update = this.tree.applyLocations(records, removedLocations);
    this.takeTreeChange(update.change, new Set([...removedLocations, ...records.map((r) => r.location)]));
    return update.problems;
  }

  /** restoreChangeTimes brings back when packages last changed (from a durable store). */
  restoreChangeTimes(times: Iterable<readonly [string, number]>): void {
    for (const [pkgname, time] of times) this.changedAt.set(pkgname, time);
  }

  /**
   * takeTreeChange carries a change of the tree into every running build and
   * remembers which packages changed, then tells the listeners.
   */
  private takeTreeChange(packages: TreeChange, locations: ReadonlySet<string>): void {
    if (packages.added.length === 0 && packages.removed.length === 0 && packages.changed.length === 0 && locations.size === 0) return;
    const now = this.options.now();
    // Only a package that was there before can have a binary package made
    // from older metadata; one new to the tree has none, or one made from
    // exactly these records.
    for (const name of packages.changed) this.changedAt.set(name, now);
    for (const name of packages.removed) this.changedAt.delete(name);
    const cycles = new Map<string, readonly string[]>();
    for (const cycle of this.tree.cyclesFound()) for (const name of cycle) cycles.set(name, cycle);
    const view: TreeView = { get: (name) => this.tree.get(name), cycleOf: (name) => cycles.get(name), prefailReason };
    let ready = false;
    for (const build of this.builds.values()) {
      if (build.state !== "running") continue;
      build.applyTreeChange(packages, view, build.options.limitTo.length === 0, now);
      ready ||= build.readyCount > 0;
    }
    const notice: TreeChangeNotice = { revision: this.tree.revision, locations: [...locations], packages, time: now };
    for (const listener of this.treeListeners) listener(notice);
    if (ready) this.announceReady();
  }

  private readonly emit = (t: JobTransition): void => {
    for (const listener of this.transitionListeners) listener(t);
  };

  private announceReady(): void {
    for (const listener of this.readyListeners) listener();
  }

  createBuild(request: CreateBuildRequest): Build {
    return runSteps(this.createBuildSteps(request));
  }

  /**
   * createBuildSteps is createBuild in slices (see steps.ts), for adapters
   * that must go on answering other calls meanwhile. Nothing is visible
   * until the last slice registers the build; a change of the tree between
   * slices starts the work over on the new tree.
   */
  *createBuildSteps(request: CreateBuildRequest): Steps<Build> {
    if (!PLATFORM_SHAPE.test(request.platform)) {
      throw new InvalidRequest(`platform "${request.platform}" must be 1-128 letters, digits, '.', '_', '+' or '-' (e.g. "NetBSD-10.0-x86_64")`);
    }
    if (this.tree.size === 0) throw new EmptyTree();
    if (request.mode === "incremental" && request.packagesDir === "") {
      throw new InvalidRequest("an incremental build needs a packages directory (packages_dir, or the server's --packages-dir)");
    }
    const options: BuildOptions = {
      id: this.options.newId(),
      platform: request.platform,
      mode: request.mode,
      policy: request.policy ?? this.options.defaultPolicy,
      limitTo: [...request.limitTo],
      packagesDir: request.packagesDir,
      createdAt: this.options.now(),
    };
    const build = yield* this.startBuild(options, request.mode === "incremental" ? request.binaryPackages : undefined, new Map());
    for (const listener of this.buildListeners) listener(build);
    this.forgetOldBuilds();
    return build;
  }

  /**
   * forgetOldBuilds drops the finished and cancelled builds past the newest
   * keepFinishedBuilds, oldest first. Running builds are never forgotten.
   */
  forgetOldBuilds(): Build[] {
    const keep = this.options.keepFinishedBuilds ?? DEFAULT_KEEP_FINISHED_BUILDS;
    // Builds are kept in the order they started.
    const ended = [...this.builds.values()].filter((b) => b.state !== "running");
    const forgotten = ended.slice(0, Math.max(0, ended.length - keep));
    for (const build of forgotten) {
      this.builds.delete(build.options.id);
      for (const listener of this.forgetListeners) listener(build);
    }
    return forgotten;
  }

  /**
   * restoreBuild brings back a build a durable store remembered, against the
   * tree as it is now. Its leases get a fresh deadline: while depgraph was
   * down nobody could renew them, and the agents may still be building.
   */
  restoreBuild(restored: RestoredBuild): Build {
    return runSteps(this.restoreBuildSteps(restored));
  }

  /** restoreBuildSteps is restoreBuild in slices, as createBuildSteps is createBuild. */
  *restoreBuildSteps(restored: RestoredBuild): Steps<Build> {
    const build = yield* this.startBuild(restored.options, undefined, restored.jobs);
    const now = this.options.now();
    if (restored.cancelled) build.quietly(() => build.cancel(restored.finishedAt ?? now));
    for (const job of build.jobs) {
      if (job.lease === undefined) continue;
      job.lease.deadline = now + this.options.defaultLeaseMs;
      this.leaseDeadlines.push({ deadline: job.lease.deadline, build, job, leaseId: job.lease.id });
      this.leasesHeld++;
    }
    if (build.readyCount > 0) this.announceReady();
    return build;
  }

  /**
   * startBuild works out a build's jobs from the tree in slices, then makes
   * and registers the build in one step. Each slice sees the tree as it is
   * then, so one that finds the tree moved starts over; after a few tries the
   * work is done in one go, so a stream of changes cannot hold a build back.
   */
  private *startBuild(options: BuildOptions, binaryPackages: ReadonlyMap<string, BinaryPackageFile> | undefined, restored: ReadonlyMap<string, RestoredJob>): Steps<Build> {
    for (let attempt = 1; ; attempt++) {
      const sliced = attempt <= SLICED_ATTEMPTS;
      const revision = this.tree.revision;
      const work = this.newBuild(options, binaryPackages, restored);
      let step = work.next();
      let moved = false;
      while (!step.done && !moved) {
        if (sliced) {
          yield;
          moved = this.tree.revision !== revision;
          if (moved) break;
        }
        step = work.next();
      }
      if (sliced && !moved) {
        yield;
        moved = this.tree.revision !== revision;
      }
      if (moved || !step.done) {
        work.return(undefined as never);
        continue;
      }
      const build = step.value;
      this.builds.set(options.id, build);
      if (build.readyCount > 0) this.announceReady();
      return build;
    }
  }

  private *newBuild(options: BuildOptions, binaryPackages: ReadonlyMap<string, BinaryPackageFile> | undefined, restored: ReadonlyMap<string, RestoredJob>): Steps<Build> {
    const initial = yield* this.initialJobs(options, binaryPackages, restored);
    return yield* Build.create(options, initial, this.emit);
  }

  /** initialJobs is what each job of a new build starts as: its dependencies, state, reason and priority. */
  private *initialJobs(options: BuildOptions, binaryPackages: ReadonlyMap<string, BinaryPackageFile> | undefined, restored: ReadonlyMap<string, RestoredJob>): Steps<InitialJob[]> {
    const selected = yield* this.selectPackages(options.limitTo, restored.size > 0);
    const indexOf = new Map<string, number>();
    yield* mapInSlices(selected, (name, i) => indexOf.set(name, i));
    const inCycle = new Map<string, readonly string[]>();
    for (const cycle of this.tree.cyclesFound()) yield* mapInSlices(cycle, (name) => inCycle.set(name, cycle));

    const packages = yield* mapInSlices(selected, (name) => this.tree.get(name)!);
    const dependencies = yield* mapInSlices(packages, (pkg) => pkg.dependencies.map((d) => indexOf.get(d)!));
    const dependents: number[][] = yield* mapInSlices(packages, () => []);
    yield* mapInSlices(dependencies, (deps, i) => deps.forEach((d) => dependents[d]!.push(i)));
    const typical = this.options.history.typicalMs() ?? this.options.fallbackDurationMs;
    const expectedMs = yield* mapInSlices(packages, (pkg) =>
      this.options.history.expectedMs(pkg.record.pkgname, pkg.record.location) ?? (typical * pkg.record.pbulkWeight) / 100);
    const pbulkWeight = yield* mapInSlices(packages, (pkg) => pkg.record.pbulkWeight);
    const priority = yield* policies[options.policy].priorities({ dependencies, dependents, pbulkWeight, expectedMs });
    yield;
    const upToDate = binaryPackages !== undefined
      ? upToDatePackages(packages.map((pkg) => pkg.record.pkgname), dependencies, this.withoutOutdated(binaryPackages))
      : new Set<number>();
    yield;

    return yield* mapInSlices(packages, (pkg, i) => {
      const cycle = inCycle.get(pkg.record.pkgname);
      const prefail = prefailReason(pkg);
      const [state, reason]: [InitialJob["state"], string] =
        cycle !== undefined ? ["cycle", cycleReason(cycle)]
        : prefail !== "" ? ["prefailed", prefail]
        : upToDate.has(i) ? ["up-to-date", "binary package is current"]
        : ["pending", ""];
      return { pkg, dependencies: dependencies[i]!, state, reason, cycle: cycle ?? [], priority: priority[i]!, restored: restored.get(pkg.record.pkgname) };
    });
  }

  /** Binary packages made before their package's metadata last changed are not current. */
  private withoutOutdated(files: ReadonlyMap<string, BinaryPackageFile>): ReadonlyMap<string, BinaryPackageFile> {
    const current = new Map(files);
    for (const [name, file] of files) {
      const changed = this.changedAt.get(name);
      if (changed !== undefined && file.mtimeMs < changed) current.delete(name);
    }
    return current;
  }

  /** All packages, or the named locations/PKGNAMEs plus everything they need. */
  private *selectPackages(limitTo: readonly string[], lenient = false): Steps<string[]> {
    if (limitTo.length === 0) {
      const all: string[] = [];
      for (const name of this.tree.pkgnames()) if (all.push(name) % ITEMS_PER_SLICE === 0) yield;
      return all;
    }
    const selected = new Set<string>();
    const stack: string[] = [];
    for (const entry of limitTo) {
      if (!isValidLocation(entry) && !isValidPkgname(entry)) {
        throw new InvalidRequest(`"${entry}" is neither a location (category/package) nor a PKGNAME (name-version)`);
      }
      const names = this.tree.get(entry) !== undefined ? [entry] : this.tree.atLocation(entry);
      // A restored build keeps what is left of its selection after the tree moved.
      if (names.length === 0 && !lenient) throw new UnknownPackage(entry);
      stack.push(...names);
    }
    const slice = new Counter(SELECT_SLICE);
    while (stack.length > 0) {
      const name = stack.pop()!;
      if (selected.has(name)) continue;
      selected.add(name);
      stack.push(...this.tree.get(name)!.dependencies);
      if (slice.tick()) yield;
    }
    return [...selected];
  }

  getBuild(buildId: string): Build {
    const build = this.builds.get(buildId);
    if (build === undefined) throw new UnknownBuild(buildId);
    return build;
  }

  /** Builds, newest first. */
  listBuilds(platform = ""): Build[] {
    return [...this.builds.values()]
      .filter((b) => platform === "" || b.options.platform === platform)
      .reverse();
  }

  cancelBuild(buildId: string): Build {
    const build = this.getBuild(buildId);
    if (build.state !== "running") return build;
    this.leasesHeld -= build.cancel(this.options.now()).length;
    for (const listener of this.buildListeners) listener(build);
    return build;
  }

  /**
   * Leases up to max ready jobs of the platform's running builds, oldest
   * build first and, within a build, highest priority first.
   */
  nextReadyJobs(platform: string, agentId: string, max: number, leaseMs: number | undefined): Assignment[] {
    if (platform === "") throw new InvalidRequest("platform is required: the agent's platform, e.g. \"NetBSD-10.0-x86_64\"");
    if (agentId === "") throw new InvalidRequest("agent_id is required, so leases can be traced to a build host");
    const now = this.options.now();
    const deadline = now + this.leaseLength(leaseMs);
    const assignments: Assignment[] = [];
    for (const build of this.builds.values()) {
      if (build.state !== "running" || build.options.platform !== platform) continue;
      while (assignments.length < max) {
        const leaseId = this.options.newId();
        const job = build.leaseNext({ id: leaseId, agentId, deadline }, now);
        if (job === undefined) break;
        this.leaseDeadlines.push({ deadline, build, job, leaseId });
        this.leasesHeld++;
        assignments.push({ build, job, lease: { id: leaseId, deadline } });
      }
      if (assignments.length >= max) break;
    }
    return assignments;
  }

  private leaseLength(leaseMs: number | undefined): number {
    if (leaseMs === undefined || leaseMs === 0) return this.options.defaultLeaseMs;
    if (!(leaseMs > 0) || leaseMs > this.options.maxLeaseMs) {
      throw new InvalidRequest(`lease_duration must be between 0 and ${this.options.maxLeaseMs / 1000} s`);
    }
    return leaseMs;
  }

  private heldJob(ref: LeaseRef): { build: Build; job: Job } {
    const build = this.getBuild(ref.buildId);
    const job = build.byPkgname.get(ref.pkgname);
    if (job === undefined) throw new StaleLease(ref.buildId, ref.pkgname, ref.leaseId, "the build has no such job");
    if (job.lease === undefined || job.lease.id !== ref.leaseId) {
      const why = job.state === "leased" ? "the job is leased under another lease"
        : `the job is ${job.state}${job.reason ? ` (${job.reason})` : ""}`;
      throw new StaleLease(ref.buildId, ref.pkgname, ref.leaseId, why);
    }
    return { build, job };
  }

  /**
   * Reports outcomes. Every lease is checked before anything changes, so a
   * call with one stale lease leaves every job as it was.
   */
  markDone(results: readonly JobResult[]): { newlyReady: number; newlyBlocked: number } {
    if (results.length === 0) throw new InvalidRequest("results is empty: report at least one job");
    const held = results.map((result) => {
      if (result.succeeded && result.binaryPackage === undefined) {
        throw new InvalidRequest(`result for ${result.pkgname} says succeeded but names no binary package`);
      }
      if (!(result.durationMs >= 0)) throw new InvalidRequest(`duration of ${result.pkgname} is negative`);
      return this.heldJob(result);
    });
    const twice = results.find((r, i) => results.findIndex((s) => s.buildId === r.buildId && s.pkgname === r.pkgname) !== i);
    if (twice !== undefined) throw new InvalidRequest(`${twice.pkgname} is reported twice in one call`);
    const now = this.options.now();
    let newlyReady = 0;
    let newlyBlocked = 0;
    results.forEach((result, i) => {
      const { build, job } = held[i]!;
      this.leasesHeld--;
      if (result.succeeded) {
        newlyReady += build.succeed(job, { durationMs: result.durationMs, binaryPackage: result.binaryPackage!, logRef: result.logRef }, now);
        this.options.history.record(job.pkgname, job.pkg.record.location, result.durationMs);
      } else {
        newlyBlocked += build.fail(job, { durationMs: result.durationMs, reason: result.failureReason || "build failed", logRef: result.logRef }, now);
      }
    });
    if (newlyReady > 0) this.announceReady();
    return { newlyReady, newlyBlocked };
  }

  /** Pushes held leases' deadlines forward; leases no longer held are reported as lost. */
  renewLeases(refs: readonly LeaseRef[], leaseMs: number | undefined): { renewed: LeaseRef[]; lost: LeaseRef[]; deadline: number } {
    const deadline = this.options.now() + this.leaseLength(leaseMs);
    const renewed: LeaseRef[] = [];
    const lost: LeaseRef[] = [];
    for (const ref of refs) {
      let held: { build: Build; job: Job };
      try {
        held = this.heldJob(ref);
      } catch (e) {
        if (e instanceof StaleLease || e instanceof UnknownBuild) {
          lost.push(ref);
          continue;
        }
        throw e;
      }
      held.job.lease!.deadline = deadline;
      this.leaseDeadlines.push({ deadline, build: held.build, job: held.job, leaseId: ref.leaseId });
      renewed.push(ref);
    }
    this.shedStaleDeadlines();
    return { renewed, lost, deadline };
  }

  /** Gives leased jobs back; all or nothing, like markDone. */
  returnJobs(refs: readonly LeaseRef[], agentLost: boolean, message: string): { requeued: number; failed: number } {
    if (refs.length === 0) throw new InvalidRequest("leases is empty: name at least one lease to give back");
    const held = refs.map((ref) => this.heldJob(ref));
    const now = this.options.now();
    let requeued = 0;
    let failed = 0;
    for (const { build, job } of held) {
      this.leasesHeld--;
      const reason = message || (agentLost ? `agent ${job.agentId} went away` : `agent ${job.agentId} gave it back`);
      if (build.requeue(job, reason, agentLost, this.options.maxLosses, now) === "requeued") requeued++;
      else failed++;
    }
    if (requeued > 0) this.announceReady();
    return { requeued, failed };
  }

  /** When the next lease runs out, or undefined when none is held. */
  nextLeaseDeadline(): number | undefined {
    this.dropDeadEntries();
    return this.leaseDeadlines.peek()?.deadline;
  }

  /** Puts every job whose lease has run out back to ready. Returns how many. */
  expireLeases(): number {
    const now = this.options.now();
    let expired = 0;
    for (;;) {
      this.dropDeadEntries();
      const top = this.leaseDeadlines.peek();
      if (top === undefined || top.deadline > now) break;
      this.leaseDeadlines.pop();
      this.leasesHeld--;
      expired++;
      top.build.requeue(top.job, `lease ${top.leaseId} held by ${top.job.agentId} expired`, true, this.options.maxLosses, now);
    }
    if (expired > 0) this.announceReady();
    return expired;
  }

  private isLive(entry: LeaseDeadline): boolean {
    const lease = entry.job.lease;
    return lease !== undefined && lease.id === entry.leaseId && lease.deadline === entry.deadline;
  }

  private dropDeadEntries(): void {
    for (let top = this.leaseDeadlines.peek(); top !== undefined && !this.isLive(top); top = this.leaseDeadlines.peek()) {
      this.leaseDeadlines.pop();
    }
  }

  // Renewals leave superseded entries behind; shed them before they outgrow the live ones.
  private shedStaleDeadlines(): void {
    if (this.leaseDeadlines.size > 4 * this.leasesHeld + 1024) this.leaseDeadlines.retain((e) => this.isLive(e));
  }
}
