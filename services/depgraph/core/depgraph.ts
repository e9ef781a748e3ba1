import { Build, type PassingOver, type BinaryPackage, type BuildMode, type BuildOptions, type InitialJob, type Job, type JobTransition, type PackageChanges, type RestoredJob, type TreeView } from "./build.js";
import type { InvalidScanRecord } from "./errors.js";
import type { ScanRecord } from "./scan-record.js";
import { EmptyTree, InvalidRequest, StaleLease, UnknownBuild, UnknownPackage, UnknownScan } from "./errors.js";
import { cycleReason } from "./cycles.js";
import { Heap } from "./heap.js";
import { packageFacts } from "./duration-model.js";
import type { DurationHistory } from "./history.js";
import { decideIncremental, type BinaryPackageFile } from "./incremental.js";
import { policies, type PolicyName } from "./priority.js";
import { isValidLocation, isValidPkgname } from "./scan-record.js";
import { ScanRun, type ScanJob, type ScannedLocation, type ScanScope } from "./scan-run.js";
import { Counter, ITEMS_PER_SLICE, mapInSlices, runSteps, type Steps } from "./steps.js";
import { PackageTree, prefailReason, type TreeChange } from "./tree.js";
import { createResourceBook, type NeedsWithOrigin, type ResourceBook } from "./resource-needs.js";
import { HostPlan, type Host } from "../../shared/placement.js";
import { quote } from "../../shared/quote.js";

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
  /**
   * The shared tree (platform "") has a scanner of its own on depgraph's host
   * (the scan helper), so a limited build on it can close its list there.
   */
  readonly sharedTreeScanner?: boolean;
  /** Finished scans kept, newest first; older ones are forgotten when a scan starts. */
  readonly keepFinishedScans?: number;
  /** What packages need of a build host (constraints, learnt peaks); none known without it. */
  readonly resources?: ResourceBook;
}

export const DEFAULT_KEEP_FINISHED_BUILDS = 20;

export interface CreateBuildRequest {
  /** "" means the only platform with a tree of its own (see resolvePlatform). */
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
  /**
   * The build host that runs the job, when the caller knows it: a dispatcher
   * leases jobs before it picks the agent, so the lease holder is the
   * dispatcher and only this says which host built the package.
   */
  readonly agentId?: string;
  /** Host name of that build host (its agent's hello), when the caller knows it. */
  readonly host?: string;
}

export interface JobResult extends LeaseRef {
  readonly succeeded: boolean;
  readonly durationMs: number;
  readonly binaryPackage: BinaryPackage | undefined;
  readonly logRef: string;
  readonly failureReason: string;
  /** The phase that failed, e.g. "checksum"; "" when not known. */
  readonly failedPhase?: string;
  /** The build host found the binary package current: nothing was built (succeeded is then true). */
  readonly upToDate?: boolean;
  /** Why it was rebuilt or found up to date, as the build host decided. */
  readonly decision?: string;
  /** Measured peak resident memory of the build (bytes; 0 or absent: not measured). */
  readonly peakMemoryBytes?: number;
  /** Measured peak disk use of the build's work directory (bytes; 0 or absent: not measured). */
  readonly peakDiskBytes?: number;
}

/** One entry of the lease heap: a build job's lease or a scan job's. */
type LeaseDeadline =
  | { readonly deadline: number; readonly build: Build; readonly job: Job; readonly leaseId: string; readonly scan?: undefined }
  | { readonly deadline: number; readonly scan: ScanRun; readonly scanJob: ScanJob; readonly leaseId: string; readonly build?: undefined };

/** ScanAssignment is a leased scan job. */
export interface ScanAssignment {
  readonly scan: ScanRun;
  readonly job: ScanJob;
  readonly lease: { readonly id: string; readonly deadline: number };
  /** For reuse: when each location was last scanned and what its scan depended on. */
  readonly previous: ReadonlyMap<string, { readonly scannedAt: number; readonly scanDepends: readonly string[] }>;
}

export interface StartScanRequest {
  readonly platform: string;
  readonly scope: ScanScope;
  readonly locations: readonly string[];
  readonly reuse: boolean;
  readonly locationsPerJob: number;
}

/** What a scan job brought back. */
export interface ScanJobResult extends LeaseRef {
  /** Why the job could not run at all; "" when it ran. */
  readonly failure: string;
  readonly locations: readonly ScannedLocation[];
  readonly enumerated: readonly string[] | undefined;
  readonly problems: readonly InvalidScanRecord[];
}

/**
 * PendingBuild is a limited build waiting for the scan that closes its list;
 * it becomes a Build (same id) when that scan ends.
 */
export interface PendingBuild {
  readonly options: BuildOptions;
  readonly scanId: string;
  readonly binaryPackages: ReadonlyMap<string, BinaryPackageFile> | undefined;
}

/** PlacementRound is one NextReadyJob call's placement (see DepGraph.placementRound). */
export interface PlacementRound {
  /** What is still free on the agents; each leased job takes its share. */
  readonly plan: HostPlan<Host>;
  /** The round's passing-over for one build (made on first use). */
  passingOver(build: Build): PassingOver;
  /** Puts every job the round passed over back in its ready queue. */
  end(): void;
}

export const SHARED_TREE = "";
/** How long a platform counts as served after a dispatcher last asked for its work. */
export const SERVED_FOR_MS = 120_000;
export const DEFAULT_KEEP_FINISHED_SCANS = 20;

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
  /** The tree that changed: a platform's, or SHARED_TREE. */
  readonly platform: string;
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
  /** The shared tree: builds of a platform without a tree of its own use it. */
  readonly tree: PackageTree;
  /** Trees of platforms scanned on their own hosts, by platform. */
  private readonly platformTrees = new Map<string, PackageTree>();
  private readonly builds = new Map<string, Build>();
  private readonly pending = new Map<string, PendingBuild>();
  /** Problems of builds whose closure scan left something out, by build id. */
  private readonly buildProblems = new Map<string, string>();
  /** The closure scan of each build that needed one, by build id. */
  private readonly buildScans = new Map<string, string>();
  private readonly scans = new Map<string, ScanRun>();
  /** When each location of each tree was last scanned, by tree then location. */
  private readonly scannedAt = new Map<string, Map<string, number>>();
  private readonly scanListeners = new Set<(scan: ScanRun) => void>();
  /** When a dispatcher last asked for each platform's work. */
  private readonly served = new Map<string, number>();
  private readonly leaseDeadlines = new Heap<LeaseDeadline>((a, b) => a.deadline < b.deadline);
  private leasesHeld = 0;
  private readonly transitionListeners = new Set<(t: JobTransition) => void>();
  private readonly readyListeners = new Set<() => void>();
  private readonly buildListeners = new Set<(build: Build) => void>();
  private readonly forgetListeners = new Set<(build: Build) => void>();
  private readonly treeListeners = new Set<(notice: TreeChangeNotice) => void>();
  /** When each package's metadata last changed; its binary packages from before are out of date. */
  private readonly changedAt = new Map<string, number>();

  /** What packages need of a build host; ExplainJob reads its view of each platform's agents too. */
  readonly resources: ResourceBook;

  constructor(private readonly options: DepGraphOptions) {
    this.tree = options.tree ?? new PackageTree();
    this.resources = options.resources ?? createResourceBook();
  }

  /** The tree a platform's builds use: its own, or the shared one. */
  treeOf(platform: string): PackageTree {
    return this.platformTrees.get(platform) ?? this.tree;
  }

  /** The key of the tree a platform's builds use (the platform, or SHARED_TREE). */
  treeKeyOf(platform: string): string {
    return this.platformTrees.has(platform) ? platform : SHARED_TREE;
  }

  /** The tree of one platform (SHARED_TREE for the shared one), made on first use. */
  platformTree(platform: string): PackageTree {
    if (platform === SHARED_TREE) return this.tree;
    let tree = this.platformTrees.get(platform);
    if (tree === undefined) {
      if (!PLATFORM_SHAPE.test(platform)) throw new InvalidRequest(platformShapeProblem(platform));
      tree = new PackageTree();
      this.platformTrees.set(platform, tree);
    }
    return tree;
  }

  /** Platforms with a tree of their own, by name. */
  platforms(): string[] {
    return [...this.platformTrees.keys()].sort();
  }

  /**
   * notePlatformServed records that some dispatcher asks for the platform's
   * work (its agents are connected), so a request naming no platform can
   * mean it before its tree exists.
   */
  notePlatformServed(platform: string): void {
    if (PLATFORM_SHAPE.test(platform)) this.served.set(platform, this.options.now());
  }

  /** Whether a dispatcher asked for the platform's work within the last SERVED_FOR_MS (its build hosts are connected). */
  platformServed(platform: string): boolean {
    const at = this.served.get(platform);
    return at !== undefined && this.options.now() - at <= SERVED_FOR_MS;
  }

  /**
   * expectedDurationMs is how long a job is expected to build: what the
   * scheduler expected when it ordered the build (the duration model's
   * measured or predicted time); for a job that joined the build later, its
   * history, else the typical duration scaled by PBULK_WEIGHT.
   */
  expectedDurationMs(job: Job): number {
    if (job.expectedMs !== undefined) return job.expectedMs;
    const pkg = job.pkg;
    const typical = this.options.history.typicalMs() ?? this.options.fallbackDurationMs;
    return this.options.history.expectedMs(pkg.record.pkgname, pkg.record.location) ?? (typical * pkg.record.pbulkWeight) / 100;
  }

  /** Platforms with a tree of their own or asked for within the last SERVED_FOR_MS, by name. */
  knownPlatforms(): string[] {
    const now = this.options.now();
    const names = new Set(this.platformTrees.keys());
    for (const [platform, at] of this.served) if (now - at <= SERVED_FOR_MS) names.add(platform);
    return [...names].sort();
  }

  /**
   * resolvePlatform turns a request's platform into a tree key: a named one
   * as given; "" as the only platform with a tree of its own, the shared
   * tree when there is none, and a refusal naming them when there are several.
   */
  resolvePlatform(requested: string): string {
    return this.resolveAmong(requested, this.knownPlatforms());
  }

  /**
   * resolveTree is resolvePlatform for writing records: "" is the only
   * platform with a tree of its own, else the shared tree, so an import
   * without a platform never starts a platform's tree by itself.
   */
  resolveTree(requested: string): string {
    return this.resolveAmong(requested, this.platforms());
  }

  private resolveAmong(requested: string, named: readonly string[]): string {
    if (requested !== "") return requested;
    if (named.length === 1) return named[0]!;
    if (named.length === 0) return SHARED_TREE;
    throw new InvalidRequest(`name a platform: depgraph has trees for ${named.map((p) => `"${p}"`).join(", ")}`);
  }

  /** Calls listener when a scan starts, makes progress or ends. */
  onScanChange(listener: (scan: ScanRun) => void): () => void {
    this.scanListeners.add(listener);
    return () => this.scanListeners.delete(listener);
  }

  /** When a location of a tree was last scanned, if known. */
  lastScanned(platform: string, location: string): number | undefined {
    return this.scannedAt.get(platform)?.get(location);
  }

  /** restoreScanTimes brings back when locations were last scanned (from a durable store). */
  restoreScanTimes(platform: string, times: Iterable<readonly [string, number]>): void {
    let map = this.scannedAt.get(platform);
    if (map === undefined) this.scannedAt.set(platform, map = new Map());
    for (const [location, time] of times) map.set(location, time);
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
  replaceTree(records: readonly ScanRecord[], scope: "tree" | "locations", platform: string = SHARED_TREE): InvalidScanRecord[] {
    return runSteps(this.replaceTreeSteps(records, scope, platform));
  }

  /**
   * replaceTreeSteps is replaceTree in slices: a whole-tree import resolves
   * tens of thousands of records (see PackageTree.applyTreeSteps), and the
   * tree changes, for builds and listeners, only in the last slice.
   */
  *replaceTreeSteps(records: readonly ScanRecord[], scope: "tree" | "locations", platform: string = SHARED_TREE): Steps<InvalidScanRecord[]> {
    const tree = this.platformTree(platform);
    const touched = new Set(records.map((r) => r.location));
    const update = scope === "tree" ? yield* tree.applyTreeSteps(records) : tree.applyLocations(records, []);
    for (const location of update.locationsBefore ?? []) touched.add(location);
    this.takeTreeChange(platform, update.change, touched);
    return update.problems;
  }

  /** applyLocations replaces the locations records name and drops removedLocations. */
  applyLocations(records: readonly ScanRecord[], removedLocations: readonly string[], platform: string = SHARED_TREE): InvalidScanRecord[] {
    const update = this.platformTree(platform).applyLocations(records, removedLocations);
    this.takeTreeChange(platform, update.change, new Set([...removedLocations, ...records.map((r) => r.location)]));
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
  private takeTreeChange(platform: string, packages: TreeChange, locations: ReadonlySet<string>): void {
    if (packages.added.length === 0 && packages.removed.length === 0 && packages.changed.length === 0 && locations.size === 0) return;
    const now = this.options.now();
    const tree = this.platformTree(platform);
    // Only a package that was there before can have a binary package made
    // from older metadata; one new to the tree has none, or one made from
    // exactly these records.
    for (const name of packages.changed) this.changedAt.set(name, now);
    for (const name of packages.removed) this.changedAt.delete(name);
    const cycles = new Map<string, readonly string[]>();
    for (const cycle of tree.cyclesFound()) for (const name of cycle) cycles.set(name, cycle);
    const view: TreeView = { get: (name) => tree.get(name), cycleOf: (name) => cycles.get(name), prefailReason };
    let ready = false;
    for (const build of this.builds.values()) {
      if (build.state !== "running" || this.treeKeyOf(build.options.platform) !== platform) continue;
      build.applyTreeChange(packages, view, build.options.limitTo.length === 0, now);
      ready ||= build.readyCount > 0;
    }
    const notice: TreeChangeNotice = { platform, revision: tree.revision, locations: [...locations], packages, time: now };
    for (const listener of this.treeListeners) listener(notice);
    if (ready) this.announceReady();
  }

  private readonly emit = (t: JobTransition): void => {
    for (const listener of this.transitionListeners) listener(t);
  };

  private announceReady(): void {
    for (const listener of this.readyListeners) listener();
  }

  /**
   * requestBuild starts a build, or, for a limited list naming locations the
   * platform's tree lacks (or whose dependencies it lacks), starts the scan
   * that closes the list and returns a PendingBuild that becomes the build
   * when the scan ends.
   */
  requestBuild(request: CreateBuildRequest): Build | PendingBuild {
    return runSteps(this.requestBuildSteps(request));
  }

  /**
   * requestBuildSteps is requestBuild in slices (see steps.ts), for adapters
   * that must go on answering other calls meanwhile. Nothing is visible
   * until the last slice registers the build; a change of the tree between
   * slices starts the work over on the new tree.
   */
  *requestBuildSteps(request: CreateBuildRequest): Steps<Build | PendingBuild> {
    const platform = this.resolvePlatform(request.platform);
    if (platform === SHARED_TREE) {
      throw new InvalidRequest("platform is required: no platform has a tree of its own yet; name the agents' platform (e.g. \"NetBSD-10.0-x86_64\")");
    }
    if (!PLATFORM_SHAPE.test(platform)) throw new InvalidRequest(platformShapeProblem(platform));
    if (request.mode === "incremental" && request.packagesDir === "") {
      throw new InvalidRequest("an incremental build needs a packages directory (packages_dir, or the server's --packages-dir)");
    }
    for (const entry of request.limitTo) {
      if (!isValidLocation(entry) && !isValidPkgname(entry)) {
        throw new InvalidRequest(`"${entry}" is neither a location (category/package) nor a PKGNAME (name-version)`);
      }
    }
    const treeKey = this.scanTreeFor(platform);
    const tree = this.platformTree(treeKey);
    const missing = request.limitTo.length === 0 ? [] : this.missingLocations(tree, request.limitTo);
    const scannable = treeKey !== SHARED_TREE || this.options.sharedTreeScanner === true;
    if (missing.length === 0 || !scannable) {
      if (tree.size === 0) throw new EmptyTree();
    }
    const options: BuildOptions = {
      id: this.options.newId(),
      platform,
      mode: request.mode,
      policy: request.policy ?? this.options.defaultPolicy,
      limitTo: [...request.limitTo],
      packagesDir: request.packagesDir,
      createdAt: this.options.now(),
    };
    const binaryPackages = request.mode === "incremental" ? request.binaryPackages : undefined;
    if (missing.length > 0 && scannable) {
      const scan = this.startScan({ platform: treeKey, scope: "closure", locations: missing, reuse: false, locationsPerJob: 0 }, options.id);
      const pending: PendingBuild = { options, scanId: scan.id, binaryPackages };
      this.pending.set(options.id, pending);
      this.settleScan(scan);
      return this.pending.get(options.id) ?? this.getBuild(options.id);
    }
    const build = yield* this.startBuild(options, binaryPackages, new Map());
    for (const listener of this.buildListeners) listener(build);
    this.forgetOldBuilds();
    return build;
  }

  /** createBuild is requestBuild for callers whose tree holds the whole list (no scan needed). */
  createBuild(request: CreateBuildRequest): Build {
    return runSteps(this.createBuildSteps(request));
  }

  /** createBuildSteps is createBuild in slices. */
  *createBuildSteps(request: CreateBuildRequest): Steps<Build> {
    const build = yield* this.requestBuildSteps(request);
    if (!(build instanceof Build)) throw new InvalidRequest(`build ${build.options.id} waits for scan ${build.scanId} to close its list`);
    return build;
  }

  /**
   * The tree a new build or scan of the platform fills: its own when it has
   * one; the shared tree when that holds packages or has a scanner; else a
   * new tree of its own, to be scanned by its agents.
   */
  private scanTreeFor(platform: string): string {
    if (this.platformTrees.has(platform)) return platform;
    if (this.tree.size > 0 || this.options.sharedTreeScanner === true) return SHARED_TREE;
    return platform;
  }

  /**
   * missingLocations walks the list through the tree and returns the
   * locations it needs that the tree has no records for: listed locations
   * never scanned, and locations dependency patterns point at.
   */
  private missingLocations(tree: PackageTree, limitTo: readonly string[]): string[] {
    const missing = new Set<string>();
    const seen = new Set<string>();
    const stack: string[] = [];
    for (const entry of limitTo) {
      if (tree.get(entry) !== undefined) stack.push(entry);
      else if (isValidLocation(entry)) {
        const names = tree.atLocation(entry);
        if (names.length === 0) missing.add(entry);
        stack.push(...names);
      }
    }
    while (stack.length > 0) {
      const name = stack.pop()!;
      if (seen.has(name)) continue;
      seen.add(name);
      const pkg = tree.get(name)!;
      for (const dep of pkg.record.dependencies) {
        if (tree.atLocation(dep.location).length === 0) missing.add(dep.location);
      }
      stack.push(...pkg.dependencies);
    }
    return [...missing].sort();
  }

  /** A pending build or a build, by id. */
  getBuildOrPending(buildId: string): Build | PendingBuild {
    return this.pending.get(buildId) ?? this.getBuild(buildId);
  }

  /** Why a build's closure scan left something out, if it did. */
  buildProblem(buildId: string): string {
    return this.buildProblems.get(buildId) ?? "";
  }

  /** The scan that closed a limited build's list, or "" when none was needed. */
  buildScan(buildId: string): string {
    return this.buildScans.get(buildId) ?? "";
  }

  // --- scans ---------------------------------------------------------------

  /** startScan queues scan jobs for the platform's agents (or the shared tree's scanner). */
  startScan(request: StartScanRequest, buildId = ""): ScanRun {
    const platform = request.platform;
    if (platform !== SHARED_TREE && !PLATFORM_SHAPE.test(platform)) throw new InvalidRequest(platformShapeProblem(platform));
    if (request.scope !== "tree" && request.locations.length === 0) throw new InvalidRequest("locations is empty: name at least one location to scan");
    for (const location of request.locations) {
      if (!isValidLocation(location)) throw new InvalidRequest(`location "${location}" is not category/package`);
    }
    const tree = this.platformTree(platform);
    const scan = new ScanRun({
      id: this.options.newId(),
      platform,
      scope: request.scope,
      locations: request.locations,
      reuse: request.reuse,
      locationsPerJob: request.locationsPerJob === 0 ? 8 : request.locationsPerJob,
      createdAt: this.options.now(),
      buildId,
    }, { hasLocation: (l) => tree.atLocation(l).length > 0 });
    this.scans.set(scan.id, scan);
    this.forgetOldScans();
    this.announceScan(scan);
    if (scan.readyCount > 0) this.announceReady();
    return scan;
  }

  getScan(scanId: string): ScanRun {
    const scan = this.scans.get(scanId);
    if (scan === undefined) throw new UnknownScan(scanId);
    return scan;
  }

  /** Scans, newest first. */
  listScans(platform = ""): ScanRun[] {
    return [...this.scans.values()].filter((s) => platform === "" || s.options.platform === platform).reverse();
  }

  /** Leases up to max ready scan jobs of the platform's running scans, oldest scan first. */
  nextScanJobs(platform: string, agentId: string, max: number, leaseMs: number | undefined): ScanAssignment[] {
    if (agentId === "") throw new InvalidRequest("agent_id is required, so leases can be traced to a build host");
    const deadline = this.options.now() + this.leaseLength(leaseMs);
    const assignments: ScanAssignment[] = [];
    for (const scan of this.scans.values()) {
      if (scan.state !== "running" || scan.options.platform !== platform) continue;
      const tree = this.platformTree(scan.options.platform);
      while (assignments.length < max) {
        const leaseId = this.options.newId();
        const job = scan.leaseNext({ id: leaseId, agentId, deadline });
        if (job === undefined) break;
        this.leaseDeadlines.push({ deadline, scan, scanJob: job, leaseId });
        this.leasesHeld++;
        const previous = new Map<string, { scannedAt: number; scanDepends: readonly string[] }>();
        if (scan.options.reuse) {
          for (const location of job.locations) {
            const at = this.lastScanned(scan.options.platform, location);
            const names = tree.atLocation(location);
            if (at === undefined || names.length === 0) continue;
            const files = new Set<string>();
            for (const name of names) for (const f of tree.get(name)!.record.scanDepends.split(/\s+/)) if (f !== "") files.add(f);
            previous.set(location, { scannedAt: at, scanDepends: [...files] });
          }
        }
        assignments.push({ scan, job, lease: { id: leaseId, deadline }, previous });
      }
      if (assignments.length >= max) break;
    }
    return assignments;
  }

  /** Whether an id names a scan (so a lease call is about a scan job). */
  isScan(id: string): boolean {
    return this.scans.has(id);
  }

  private heldScanJob(ref: LeaseRef): { scan: ScanRun; job: ScanJob } {
    const scan = this.getScan(ref.buildId);
    const job = scan.byName.get(ref.pkgname);
    if (job === undefined) throw new StaleLease(ref.buildId, ref.pkgname, ref.leaseId, "the scan has no such job");
    if (job.lease === undefined || job.lease.id !== ref.leaseId) {
      throw new StaleLease(ref.buildId, ref.pkgname, ref.leaseId, job.state === "leased" ? "the job is leased under another lease" : `the scan job is ${job.state}`);
    }
    return { scan, job };
  }

  /**
   * finishScanJob takes a scan job's answer: its records go into the tree at
   * once (a whole-tree scan's when it ends), a closure grows by what they
   * need, and a build waiting on the scan starts when it ends.
   */
  finishScanJob(result: ScanJobResult): void {
    const { scan, job } = this.heldScanJob(result);
    const now = this.options.now();
    this.leasesHeld--;
    if (result.failure !== "") scan.failJob(job, result.failure, now);
    else if (job.enumerate) {
      if (result.enumerated === undefined) scan.failJob(job, "the enumeration job brought back no locations", now);
      else {
        const bad = result.enumerated.filter((l) => !isValidLocation(l));
        if (bad.length > 0) scan.failJob(job, `the enumeration listed ${bad.length} locations that are not category/package, e.g. "${bad[0]!.slice(0, 100)}"`, now);
        else scan.enumerated(job, result.enumerated, now);
      }
    } else {
      const effect = scan.scanned(job, result.locations, result.problems, now);
      this.markScanned(scan.options.platform, result.locations.filter((l) => l.error === "" && !l.reused).map((l) => l.location), now);
      if (effect.replaced.length > 0) {
        for (const p of this.replaceTree(effect.apply, "locations", scan.options.platform)) scan.problems.length < 100 && scan.problems.push(p);
      }
    }
    this.settleScan(scan);
  }

  private markScanned(platform: string, locations: readonly string[], now: number): void {
    let map = this.scannedAt.get(platform);
    if (map === undefined) this.scannedAt.set(platform, map = new Map());
    for (const l of locations) map.set(l, now);
  }

  /** After any change of a scan: apply a finished tree scan, start the build waiting on it, tell listeners. */
  private settleScan(scan: ScanRun): void {
    if (scan.state === "finished" && scan.options.scope === "tree" && !this.appliedTreeScans.has(scan.id)) {
      this.appliedTreeScans.add(scan.id);
      const tree = this.platformTree(scan.options.platform);
      const { records, kept } = scan.treeResult();
      const keptRecords = kept.flatMap((l) => tree.atLocation(l).map((name) => tree.get(name)!.record));
      if (records.length + keptRecords.length > 0) this.replaceTree([...records, ...keptRecords], "tree", scan.options.platform);
    }
    if (scan.state !== "running" && scan.options.buildId !== "") this.startPendingBuild(scan);
    this.announceScan(scan);
    if (scan.readyCount > 0) this.announceReady();
  }

  private readonly appliedTreeScans = new Set<string>();

  private startPendingBuild(scan: ScanRun): void {
    const pending = this.pending.get(scan.options.buildId);
    if (pending === undefined) return;
    this.pending.delete(pending.options.id);
    this.buildScans.set(pending.options.id, pending.scanId);
    const tree = this.treeOf(pending.options.platform);
    const absent = pending.options.limitTo.filter((entry) => tree.get(entry) === undefined && tree.atLocation(entry).length === 0);
    const problems: string[] = [];
    if (scan.state === "failed") problems.push("the closure scan failed");
    if (absent.length > 0) problems.push(`not in the tree after the closure scan: ${absent.slice(0, 20).join(", ")}${absent.length > 20 ? ` and ${absent.length - 20} more` : ""}`);
    if (problems.length > 0) this.buildProblems.set(pending.options.id, problems.join("; "));
    const build = runSteps(this.startBuild(pending.options, pending.binaryPackages, new Map(), true));
    for (const listener of this.buildListeners) listener(build);
    this.forgetOldBuilds();
  }

  private announceScan(scan: ScanRun): void {
    for (const listener of this.scanListeners) listener(scan);
  }

  private forgetOldScans(): void {
    const keep = this.options.keepFinishedScans ?? DEFAULT_KEEP_FINISHED_SCANS;
    const ended = [...this.scans.values()].filter((s) => s.state !== "running");
    for (const scan of ended.slice(0, Math.max(0, ended.length - keep))) this.scans.delete(scan.id);
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
   * down nobody could renew them, and the agents may still be building. The
   * deadline is the lease's own length from now, not the default, so a dead
   * holder's job comes back as soon as it would have without the restart.
   */
  restoreBuild(restored: RestoredBuild): Build {
    return runSteps(this.restoreBuildSteps(restored));
  }

  /** restoreBuildSteps is restoreBuild in slices, as requestBuildSteps is requestBuild. */
  *restoreBuildSteps(restored: RestoredBuild): Steps<Build> {
    const build = yield* this.startBuild(restored.options, undefined, restored.jobs);
    const now = this.options.now();
    if (restored.cancelled) build.quietly(() => build.cancel(restored.finishedAt ?? now));
    for (const job of build.jobs) {
      if (job.lease === undefined) continue;
      job.lease.deadline = now + Math.min(job.lease.lengthMs ?? this.options.defaultLeaseMs, this.options.maxLeaseMs);
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
  private *startBuild(options: BuildOptions, binaryPackages: ReadonlyMap<string, BinaryPackageFile> | undefined, restored: ReadonlyMap<string, RestoredJob>, lenient = false): Steps<Build> {
    const tree = this.treeOf(options.platform);
    for (let attempt = 1; ; attempt++) {
      const sliced = attempt <= SLICED_ATTEMPTS;
      const revision = tree.revision;
      const work = this.newBuild(tree, options, binaryPackages, restored, lenient);
      let step = work.next();
      let moved = false;
      while (!step.done && !moved) {
        if (sliced) {
          yield;
          moved = tree.revision !== revision;
          if (moved) break;
        }
        step = work.next();
      }
      if (sliced && !moved) {
        yield;
        moved = tree.revision !== revision;
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

  private *newBuild(tree: PackageTree, options: BuildOptions, binaryPackages: ReadonlyMap<string, BinaryPackageFile> | undefined, restored: ReadonlyMap<string, RestoredJob>, lenient: boolean): Steps<Build> {
    const initial = yield* this.initialJobs(tree, options, binaryPackages, restored, lenient);
    return yield* Build.create(options, initial, this.emit);
  }

  /** initialJobs is what each job of a new build starts as: its dependencies, state, reason and priority. */
  private *initialJobs(tree: PackageTree, options: BuildOptions, binaryPackages: ReadonlyMap<string, BinaryPackageFile> | undefined, restored: ReadonlyMap<string, RestoredJob>, lenient: boolean): Steps<InitialJob[]> {
    const selected = yield* this.selectPackages(tree, options.limitTo, lenient || restored.size > 0);
    const indexOf = new Map<string, number>();
    yield* mapInSlices(selected, (name, i) => indexOf.set(name, i));
    const inCycle = new Map<string, readonly string[]>();
    for (const cycle of tree.cyclesFound()) yield* mapInSlices(cycle, (name) => inCycle.set(name, cycle));

    const packages = yield* mapInSlices(selected, (name) => tree.get(name)!);
    const dependencies = yield* mapInSlices(packages, (pkg) => pkg.dependencies.map((d) => indexOf.get(d)!));
    const dependents: number[][] = yield* mapInSlices(packages, () => []);
    yield* mapInSlices(dependencies, (deps, i) => deps.forEach((d) => dependents[d]!.push(i)));
    const facts = yield* mapInSlices(packages, (pkg) => packageFacts(pkg.record));
    const predicted = yield* this.options.history.predict(options.platform, { packages: facts, dependencies, dependents });
    const expectedMs = yield* mapInSlices(predicted, (p, i) =>
      Number.isFinite(p.ms) ? p.ms : (this.options.fallbackDurationMs * packages[i]!.record.pbulkWeight) / 100);
    const pbulkWeight = yield* mapInSlices(packages, (pkg) => pkg.record.pbulkWeight);
    const priority = yield* policies[options.policy].priorities({ dependencies, dependents, pbulkWeight, expectedMs });
    yield;
    const decision = binaryPackages !== undefined
      ? decideIncremental(packages.map((pkg) => pkg.record.pkgname), dependencies, this.withoutOutdated(binaryPackages))
      : undefined;
    const upToDate = decision?.upToDate ?? new Set<number>();
    // A platform's own tree was scanned by its build hosts, so they have the
    // tree and check a current-looking package as pbulk's pkg-up-to-date
    // does (its +BUILD_VERSION against the tree); the shared tree's builds
    // trust the dates.
    const checkedByHosts = binaryPackages !== undefined && this.platformTrees.has(options.platform);
    yield;

    return yield* mapInSlices(packages, (pkg, i) => {
      const cycle = inCycle.get(pkg.record.pkgname);
      const prefail = prefailReason(pkg);
      const [state, reason]: [InitialJob["state"], string] =
        cycle !== undefined ? ["cycle", cycleReason(cycle)]
        : prefail !== "" ? ["prefailed", prefail]
        : upToDate.has(i) && !checkedByHosts ? ["up-to-date", "binary package is current"]
        : ["pending", ""];
      return { pkg, dependencies: dependencies[i]!, state, reason, cycle: cycle ?? [], priority: priority[i]!, expectedMs: expectedMs[i], decision: checkedByHosts && upToDate.has(i) ? "" : decision?.reasons[i], restored: restored.get(pkg.record.pkgname) };
    });
  }

  /** Binary packages made before their package's metadata last changed are not current. */
  private withoutOutdated(files: ReadonlyMap<string, BinaryPackageFile>): ReadonlyMap<string, BinaryPackageFile> {
    const current = new Map(files);
    for (const [name, file] of files) {
      const changed = this.changedAt.get(name);
      if (changed !== undefined && file.mtimeMs < changed && file.outdated === undefined) {
        current.set(name, { ...file, outdated: "its scan record changed after the package was made" });
      }
    }
    return current;
  }

  /** All packages, or the named locations/PKGNAMEs plus everything they need. */
  private *selectPackages(tree: PackageTree, limitTo: readonly string[], lenient = false): Steps<string[]> {
    if (limitTo.length === 0) {
      const all: string[] = [];
      for (const name of tree.pkgnames()) if (all.push(name) % ITEMS_PER_SLICE === 0) yield;
      return all;
    }
    const selected = new Set<string>();
    const stack: string[] = [];
    for (const entry of limitTo) {
      if (!isValidLocation(entry) && !isValidPkgname(entry)) {
        throw new InvalidRequest(`${quote(entry)} is neither a location (category/package) nor a PKGNAME (name-version)`);
      }
      const names = tree.get(entry) !== undefined ? [entry] : tree.atLocation(entry);
      // A restored build keeps what is left of its selection after the tree moved.
      if (names.length === 0 && !lenient) throw new UnknownPackage(entry);
      stack.push(...names);
    }
    const slice = new Counter(SELECT_SLICE);
    while (stack.length > 0) {
      const name = stack.pop()!;
      if (selected.has(name)) continue;
      selected.add(name);
      stack.push(...tree.get(name)!.dependencies);
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

  /** Builds waiting for their closure scan, newest first. */
  listPending(platform = ""): PendingBuild[] {
    return [...this.pending.values()].filter((p) => platform === "" || p.options.platform === platform).reverse();
  }

  cancelBuild(buildId: string): Build {
    const pending = this.pending.get(buildId);
    if (pending !== undefined) {
      // The scan goes on (its records are good for the tree); the build is
      // made, cancelled, so it has an end like any other.
      this.pending.delete(buildId);
      const build = runSteps(this.startBuild(pending.options, undefined, new Map(), true));
      build.quietly(() => build.cancel(this.options.now()));
      for (const listener of this.buildListeners) listener(build);
      return build;
    }
    const build = this.getBuild(buildId);
    if (build.state !== "running") return build;
    this.leasesHeld -= build.cancel(this.options.now()).length;
    for (const listener of this.buildListeners) listener(build);
    return build;
  }

  /**
   * Leases up to max ready jobs of the platform's running builds, oldest
   * build first and, within a build, highest priority first. With a
   * placement round (the platform's agents and what is free on them), only
   * jobs whose needs fit some agent's free part are leased, each taking its
   * share of it; the caller ends the round (PlacementRound.end).
   */
  nextReadyJobs(platform: string, agentId: string, max: number, leaseMs: number | undefined, round?: PlacementRound): Assignment[] {
    if (platform === "") throw new InvalidRequest("platform is required: the agent's platform, e.g. \"NetBSD-10.0-x86_64\"");
    if (agentId === "") throw new InvalidRequest("agent_id is required, so leases can be traced to a build host");
    const now = this.options.now();
    const lengthMs = this.leaseLength(leaseMs);
    const deadline = now + lengthMs;
    const assignments: Assignment[] = [];
    for (const build of this.builds.values()) {
      if (build.state !== "running" || build.options.platform !== platform) continue;
      while (assignments.length < max) {
        const leaseId = this.options.newId();
        if (round !== undefined && !round.plan.open) break;
        const job = build.leaseNext({ id: leaseId, agentId, deadline, lengthMs }, now, round?.passingOver(build));
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
      if (result.agentId) job.agentId = result.agentId;
      if (result.host) job.host = result.host;
      // Learnt before the transition, so a store that writes on it sees it.
      if (result.upToDate !== true) this.recordPeaks(job, build, result, result.succeeded);
      if (result.succeeded) {
        newlyReady += build.succeed(job, { durationMs: result.durationMs, binaryPackage: result.binaryPackage!, logRef: result.logRef, upToDate: result.upToDate, decision: result.decision }, now);
        if (result.upToDate !== true) this.options.history.record(job.pkg.record.pkgname, job.pkg.record.location, result.durationMs, { platform: build.options.platform, host: job.agentId });
      } else {
        newlyBlocked += build.fail(job, { durationMs: result.durationMs, reason: result.failureReason || "build failed", logRef: result.logRef, failedPhase: result.failedPhase }, now);
      }
    });
    if (newlyReady > 0) this.announceReady();
    return { newlyReady, newlyBlocked };
  }

  /**
   * placementRound starts one NextReadyJob call's placement over the
   * platform's agents. Jobs it passes over stay out of the ready queues
   * until the round ends, so a call that leases many jobs looks at each
   * job that fits nowhere once, not once per job leased. End it before
   * anything else touches the builds (in the same turn of the event loop).
   */
  placementRound(hosts: readonly Host[]): PlacementRound {
    const plan = new HostPlan(hosts);
    const passing = new Map<Build, PassingOver>();
    return {
      plan,
      passingOver: (build) => {
        let p = passing.get(build);
        if (p === undefined) passing.set(build, p = { accept: (job) => plan.take(this.needsOf(job).needs) !== undefined, passed: [] });
        return p;
      },
      end: () => {
        for (const [build, p] of passing) build.restorePassedOver(p.passed);
        passing.clear();
      },
    };
  }

  /** What a job's package needs of a build host, and where that comes from. */
  needsOf(job: Job): NeedsWithOrigin {
    return this.resources.needsOf(job.pkg.record.pkgname, job.pkg.record.location);
  }

  /**
   * Learns what the build used. A measure can err high (where the kernel
   * has no Pss, shared pages count once per process), and a need above
   * every agent would keep the package from ever building again, so it is
   * capped at what the agent that ran it has: a package that built on an
   * agent fits that agent.
   */
  private recordPeaks(job: Job, build: Build, result: JobResult, succeeded: boolean): void {
    const ranOn = this.resources.agentsOf(build.options.platform, this.options.now())?.find((h) => h.id === (result.agentId || job.agentId));
    const cap = (measured: number, has: number | undefined) => (has !== undefined && has > 0 ? Math.min(measured, has) : measured);
    this.resources.record(job.pkg.record.pkgname, job.pkg.record.location, {
      memoryBytes: cap(result.peakMemoryBytes ?? 0, ranOn?.memoryBytes),
      diskBytes: cap(result.peakDiskBytes ?? 0, ranOn?.diskBytes),
    }, succeeded);
  }

  /** Pushes held leases' deadlines forward; leases no longer held are reported as lost. */
  renewLeases(refs: readonly LeaseRef[], leaseMs: number | undefined): { renewed: LeaseRef[]; lost: LeaseRef[]; deadline: number } {
    const lengthMs = this.leaseLength(leaseMs);
    const deadline = this.options.now() + lengthMs;
    const renewed: LeaseRef[] = [];
    const lost: LeaseRef[] = [];
    for (const ref of refs) {
      if (this.scans.has(ref.buildId)) {
        try {
          const held = this.heldScanJob(ref);
          held.job.lease!.deadline = deadline;
          this.leaseDeadlines.push({ deadline, scan: held.scan, scanJob: held.job, leaseId: ref.leaseId });
          renewed.push(ref);
        } catch (e) {
          if (!(e instanceof StaleLease)) throw e;
          lost.push(ref);
        }
        continue;
      }
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
      held.job.lease!.lengthMs = lengthMs;
      if (ref.agentId) held.job.agentId = ref.agentId;
      if (ref.host) held.job.host = ref.host;
      this.leaseDeadlines.push({ deadline, build: held.build, job: held.job, leaseId: ref.leaseId });
      renewed.push(ref);
    }
    this.shedStaleDeadlines();
    return { renewed, lost, deadline };
  }

  /** Gives leased jobs back; all or nothing, like markDone. */
  returnJobs(refs: readonly LeaseRef[], agentLost: boolean, message: string): { requeued: number; failed: number } {
    if (refs.length === 0) throw new InvalidRequest("leases is empty: name at least one lease to give back");
    const scanRefs = refs.filter((ref) => this.scans.has(ref.buildId));
    const heldScans = scanRefs.map((ref) => this.heldScanJob(ref));
    const buildRefs = refs.filter((ref) => !this.scans.has(ref.buildId));
    const held = buildRefs.map((ref) => this.heldJob(ref));
    const now = this.options.now();
    let requeued = 0;
    let failed = 0;
    for (const { scan, job } of heldScans) {
      this.leasesHeld--;
      const reason = message || (agentLost ? `agent ${job.agentId} went away` : `agent ${job.agentId} gave it back`);
      if (scan.requeue(job, reason, agentLost, this.options.maxLosses, now) === "requeued") requeued++;
      else failed++;
      this.settleScan(scan);
    }
    held.forEach(({ build, job }, i) => {
      this.leasesHeld--;
      if (buildRefs[i]!.agentId) job.agentId = buildRefs[i]!.agentId!;
      if (buildRefs[i]!.host) job.host = buildRefs[i]!.host!;
      const reason = message || (agentLost ? `agent ${job.agentId} went away` : `agent ${job.agentId} gave it back`);
      if (build.requeue(job, reason, agentLost, this.options.maxLosses, now) === "requeued") requeued++;
      else failed++;
    });
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
      if (top.scan !== undefined) {
        top.scan.requeue(top.scanJob, `lease ${top.leaseId} held by ${top.scanJob.agentId} expired`, true, this.options.maxLosses, now);
        this.settleScan(top.scan);
      } else top.build.requeue(top.job, `lease ${top.leaseId} held by ${top.job.agentId} expired`, true, this.options.maxLosses, now);
    }
    if (expired > 0) this.announceReady();
    return expired;
  }

  private isLive(entry: LeaseDeadline): boolean {
    const lease = entry.scan !== undefined ? entry.scanJob.lease : entry.job.lease;
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

function platformShapeProblem(platform: string): string {
  return `platform ${quote(platform, 140)} must be 1-128 letters, digits, '.', '_', '+' or '-' (e.g. "NetBSD-10.0-x86_64")`;
}
