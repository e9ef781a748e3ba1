import { findCyclesSteps } from "./cycles.js";
import { InvalidScanRecord } from "./errors.js";
import { Counter, mapInSlices, runSteps, type Steps } from "./steps.js";
import { compilePattern, InvalidPattern, patternPrefix, pickBestMatch, type Matcher } from "./pattern.js";
import type { DependencyPattern, ScanRecord } from "./scan-record.js";

/** TreePackage is a scanned package with its dependencies resolved to PKGNAMEs. */
export interface TreePackage {
  readonly record: ScanRecord;
  /** PKGNAMEs the patterns resolved to, in first-seen order, without repeats. */
  readonly dependencies: readonly string[];
  /** Why resolution failed ('could not resolve dependency "p"'); "" when it did not. */
  readonly unresolved: string;
}

/** UnresolvedDependency names a pattern no package at its location matches. */
export interface UnresolvedDependency {
  readonly pkgname: string;
  readonly location: string;
  readonly pattern: string;
  readonly dependencyLocation: string;
}

export interface TreeSummary {
  readonly packages: number;
  readonly locations: number;
  readonly dependencyEdges: number;
  readonly prefailed: number;
  /** Each cycle's members, by PKGNAME. */
  readonly cycles: readonly (readonly string[])[];
}

/**
 * TreeChange is what one update did to the tree. An update that changed
 * nothing keeps the revision and has three empty lists.
 */
export interface TreeChange {
  /** The tree's revision after the update. */
  readonly revision: number;
  /** PKGNAMEs new to the tree, sorted. */
  readonly added: readonly string[];
  /** PKGNAMEs no longer in the tree, sorted. */
  readonly removed: readonly string[];
  /**
   * PKGNAMEs in the tree before and after whose record (any field but the
   * input line), resolved dependencies or unresolved patterns changed, sorted.
   */
  readonly changed: readonly string[];
}

/** TreeUpdate is the answer of applyLocations and applyTree. */
export interface TreeUpdate {
  /** Records refused (a PKGNAME given twice); the rest were applied. */
  readonly problems: InvalidScanRecord[];
  readonly change: TreeChange;
  /** For a whole-tree import: the locations the tree had before it (some may be gone now). */
  readonly locationsBefore?: readonly string[];
}

/** prefailReason says why a package cannot be built before any build starts; "" if it can. */
export function prefailReason(pkg: TreePackage): string {
  if (pkg.record.failReason !== "") return pkg.record.failReason;
  if (pkg.record.skipReason !== "") return pkg.record.skipReason;
  return pkg.unresolved;
}

const NONE: readonly string[] = Object.freeze([]);
const NO_UNRESOLVED: readonly UnresolvedDependency[] = Object.freeze([]);
// Packages resolved per slice of an import: a few milliseconds.
const RESOLVE_SLICE = 1_000;
// Above this many added or removed PKGNAMEs one sort beats splicing each name.
const RESORT_THRESHOLD = 256;

/**
 * PackageTree holds the tree's packages and resolves their requirements the
 * way pbulk's presolve does: each ALL_DEPENDS pattern is matched against every
 * PKGNAME of the tree (the location only says where pkgsrc builds it; pbulk
 * itself picks mpg123-nas for mpg123{,-nas}>=1 at audio/mpg123), and the best
 * match wins: highest version, then the greater name. MULTI_VERSION variants
 * are told apart by the pattern (py313-six-[0-9]* names one of them).
 *
 * Updates are incremental: each pattern's best match is kept across updates
 * and recomputed only when a PKGNAME it matches comes or goes, and only the
 * packages whose record changed or that use such a pattern are resolved
 * again. A full import goes the same way from an empty tree, so there is one
 * resolver to trust.
 */
export class PackageTree {
  private packages = new Map<string, TreePackage>();
  private byLocation = new Map<string, string[]>();
  /** Every PKGNAME in code-unit order, so a pattern's candidates are one slice. */
  private sortedNames: string[] = [];
  private matches = new BestMatches(() => this.sortedNames);
  /** Who depends on each PKGNAME, kept up to date once built. */
  private dependents: Multimap | undefined;
  private unresolvedOf = new Map<string, readonly UnresolvedDependency[]>();
  private unresolvedList: readonly UnresolvedDependency[] | undefined = NO_UNRESOLVED;
  private cycles: readonly (readonly string[])[] = [];
  private cycleOf = new Map<string, readonly string[]>();
  private edgeCount = 0;
  private prefailedCount = 0;
  private currentRevision = 0;

  /** Bumped on every update that changes something, so builds and caches can tell the tree moved. */
  get revision(): number {
    return this.currentRevision;
  }

  /**
   * replace takes new records: all of the tree (scope "tree") or only the
   * locations they name (scope "locations", every variant of a named location
   * is replaced). A PKGNAME seen twice is refused for the second record.
   */
  replace(records: readonly ScanRecord[], scope: "tree" | "locations"): InvalidScanRecord[] {
    return (scope === "tree" ? this.applyTree(records) : this.applyLocations(records, [])).problems;
  }

  /** removeLocations drops every package at these locations (a package deleted from the tree). */
  removeLocations(locations: Iterable<string>): void {
    this.applyLocations([], [...locations]);
  }

  /**
   * applyLocations makes each location named by a record hold exactly the
   * records given for it, and drops every package at removedLocations (unless
   * a record puts it back). A PKGNAME given again at another location moves
   * there, as it would in a rescan of both. Repeating an update is a no-op.
   */
  applyLocations(records: readonly ScanRecord[], removedLocations: readonly string[]): TreeUpdate {
    const { incoming, problems } = byPkgname(records);
    const dropped = new Set<string>();
    const touched = new Set(removedLocations);
    for (const record of incoming.values()) touched.add(record.location);
    for (const location of touched) for (const name of this.atLocation(location)) dropped.add(name);
    // A tree never imported has no indexes yet; they must describe it before anything moves.
    this.matches.indexUsers(this.packages.values());
    this.dependentsIndex();
    return { problems, change: this.finish(this.apply(incoming, dropped)) };
  }

  /**
   * applyTree makes the tree hold exactly these records: a full import,
   * resolved from scratch, with its change against the tree it replaces.
   * Unlike applyLocations it always makes a new revision, even when nothing
   * differs, so whoever follows revisions sees that an import happened.
   */
  applyTree(records: readonly ScanRecord[]): TreeUpdate {
    return runSteps(this.applyTreeSteps(records));
  }

  /**
   * applyTreeSteps is applyTree in slices (see steps.ts). The records are
   * resolved into a new tree of their own, which nobody sees; this tree
   * stays as it was, for reads and updates between the slices, until the
   * last slice takes the new one's contents and works out the change against
   * what this tree holds then. So an update made meanwhile is replaced by
   * the import, as if it had come first.
   */
  *applyTreeSteps(records: readonly ScanRecord[]): Steps<TreeUpdate> {
    const next = new PackageTree();
    const problems = yield* next.importSteps(records);
    yield;
    const before = this.packages;
    const unresolvedBefore = this.unresolvedOf;
    const locationsBefore = [...this.byLocation.keys()];
    this.adopt(next);
    const added: string[] = [];
    const changed: string[] = [];
    for (const [name, pkg] of this.packages) {
      const old = before.get(name);
      if (old === undefined) added.push(name);
      else if (!sameRecord(old.record, pkg.record) || !sameStrings(old.dependencies, pkg.dependencies) ||
        !sameUnresolved(unresolvedBefore.get(name) ?? [], this.unresolvedOf.get(name) ?? [])) changed.push(name);
    }
    const removed = [...before.keys()].filter((name) => !this.packages.has(name));
    return { problems, change: this.finish({ added, removed, changed }, true), locationsBefore };
  }

  /** importSteps fills an empty tree with records, in slices; returns the records refused. */
  private *importSteps(records: readonly ScanRecord[]): Steps<InvalidScanRecord[]> {
    const { incoming, problems } = byPkgname(records);
    yield;
    yield* this.applySteps(incoming, []);
    yield;
    // Built after the import rather than along it, which is cheaper, and
    // before the first incremental update, which should not wait for them.
    this.matches.indexUsers(this.packages.values());
    yield;
    this.dependentsIndex();
    return problems;
  }

  /** adopt takes every part of other's contents (a tree no one else holds); the revision stays this tree's. */
  private adopt(other: PackageTree): void {
    this.packages = other.packages;
    this.byLocation = other.byLocation;
    this.sortedNames = other.sortedNames;
    this.matches = other.matches;
    this.matches.rebind(() => this.sortedNames);
    this.dependents = other.dependents;
    this.unresolvedOf = other.unresolvedOf;
    this.unresolvedList = other.unresolvedList;
    this.cycles = other.cycles;
    this.cycleOf = other.cycleOf;
    this.edgeCount = other.edgeCount;
    this.prefailedCount = other.prefailedCount;
  }

  private finish(change: { added: string[]; removed: string[]; changed: string[] }, always = false): TreeChange {
    if (!always && change.added.length + change.removed.length + change.changed.length === 0) {
      return { revision: this.currentRevision, added: NONE, removed: NONE, changed: NONE };
    }
    this.currentRevision++;
    return { revision: this.currentRevision, added: change.added.sort(), removed: change.removed.sort(), changed: change.changed.sort() };
  }

  /** apply puts incoming in the tree and drops the dropped names it does not give again. */
  private apply(incoming: ReadonlyMap<string, ScanRecord>, dropped: Iterable<string>): { added: string[]; removed: string[]; changed: string[] } {
    return runSteps(this.applySteps(incoming, dropped));
  }

  private *applySteps(incoming: ReadonlyMap<string, ScanRecord>, dropped: Iterable<string>): Steps<{ added: string[]; removed: string[]; changed: string[] }> {
    const removed: string[] = [];
    for (const name of dropped) if (!incoming.has(name)) removed.push(name);
    const added: string[] = [];
    const rewritten: string[] = [];
    for (const [name, record] of incoming) {
      const old = this.packages.get(name);
      if (old === undefined) added.push(name);
      else if (!sameRecord(old.record, record)) rewritten.push(name);
    }
    if (removed.length + added.length + rewritten.length === 0) return { added, removed, changed: [] };

    for (const name of removed) this.detach(name);
    // A rewritten record whose patterns and location stayed keeps its resolution,
    // unless a pattern's answer changes below.
    const toResolve = new Set<string>(added);
    for (const name of rewritten) {
      const before = this.packages.get(name)!.record;
      const after = incoming.get(name)!;
      if (before.location !== after.location) {
        this.unlinkLocation(before);
        this.linkLocation(after);
        toResolve.add(name);
      }
      if (!sameDependencies(before, after)) {
        this.matches.relink(name, before.dependencies, after.dependencies);
        toResolve.add(name);
      }
    }
    const slice = new Counter(RESOLVE_SLICE);
    yield;
    for (const name of added) {
      const record = incoming.get(name)!;
      this.linkLocation(record);
      this.matches.relink(name, [], record.dependencies);
      if (slice.tick(0.2)) yield;
    }
    yield;
    this.updateSortedNames(added, removed);
    yield;

    // Patterns whose best match a new or departed PKGNAME may change, and so
    // every package that uses one of them, are resolved again.
    for (const pattern of this.matches.refresh(added, removed)) {
      for (const user of this.matches.usersOf(pattern)) toResolve.add(user);
    }
    // changed starts as the rewritten records; in the loop below a name is
    // only added after its own record was chosen.
    const changed = new Set(rewritten);
    const edgesChanged: string[] = [];
    const newEdges: NewEdges = { from: [], to: new Set() };
    for (const name of rewritten) {
      if (toResolve.has(name)) continue;
      const before = this.packages.get(name)!;
      this.store(name, before, { ...before, record: incoming.get(name)! }, this.unresolvedOf.get(name) ?? NO_UNRESOLVED);
    }
    yield;
    for (const name of toResolve) {
      if (slice.tick()) yield;
      const before = this.packages.get(name);
      // A package resolved again only for a pattern keeps its record object.
      const record = before === undefined || changed.has(name) ? incoming.get(name)! : before.record;
      const { pkg, unresolved } = this.resolveRecord(record);
      const dependenciesChanged = before === undefined || !sameStrings(before.dependencies, pkg.dependencies);
      if (dependenciesChanged) {
        edgesChanged.push(name);
        let gained = false;
        for (const dep of pkg.dependencies) {
          if (before !== undefined && before.dependencies.includes(dep)) continue;
          gained = true;
          newEdges.to.add(dep);
        }
        if (gained) newEdges.from.push(name);
      }
      if (before !== undefined && (dependenciesChanged || !sameUnresolved(this.unresolvedOf.get(name) ?? [], unresolved))) {
        changed.add(name);
      }
      this.store(name, before, pkg, unresolved);
    }
    yield;
    yield* this.updateCycles(edgesChanged, newEdges, removed);
    return { added, removed, changed: [...changed] };
  }

  /** detach forgets a package: its record, its edges and what it counted for. */
  private detach(name: string): void {
    const pkg = this.packages.get(name)!;
    this.unlinkLocation(pkg.record);
    this.matches.relink(name, pkg.record.dependencies, []);
    if (this.dependents !== undefined) {
      for (const dep of pkg.dependencies) this.dependents.delete(dep, name);
      // Every package that depended on it is resolved again and points elsewhere.
      this.dependents.deleteKey(name);
    }
    this.edgeCount -= pkg.dependencies.length;
    if (prefailReason(pkg) !== "") this.prefailedCount--;
    if (this.unresolvedOf.delete(name)) this.unresolvedList = undefined;
    this.packages.delete(name);
  }

  private linkLocation(record: ScanRecord): void {
    const names = this.byLocation.get(record.location);
    if (names === undefined) this.byLocation.set(record.location, [record.pkgname]);
    else names.push(record.pkgname);
  }

  private unlinkLocation(record: ScanRecord): void {
    const names = this.byLocation.get(record.location)!;
    names.splice(names.indexOf(record.pkgname), 1);
    if (names.length === 0) this.byLocation.delete(record.location);
  }

  private updateSortedNames(added: readonly string[], removed: readonly string[]): void {
    if (added.length + removed.length > RESORT_THRESHOLD) {
      this.sortedNames = [...this.packages.keys(), ...added].sort();
      return;
    }
    const sorted = this.sortedNames;
    for (const name of removed) sorted.splice(lowerBound(sorted, name), 1);
    for (const name of added) sorted.splice(lowerBound(sorted, name), 0, name);
  }

  private resolveRecord(record: ScanRecord): { pkg: TreePackage; unresolved: readonly UnresolvedDependency[] } {
    const dependencies: string[] = [];
    const unresolved: UnresolvedDependency[] = [];
    for (const dep of record.dependencies) {
      let found: string | null;
      try {
        // As pbulk's presolve: an earlier choice that already satisfies this
        // pattern is kept, so qt5-qtbase>=5.9.1 and >=5.15.18 give one edge.
        const matches = this.matches.matcher(dep.pattern);
        if (dependencies.some((d) => matches(d))) continue;
        found = this.matches.best(dep.pattern);
      } catch (e) {
        if (!(e instanceof InvalidPattern)) throw e;
        found = null;
      }
      if (found === null) {
        unresolved.push({ pkgname: record.pkgname, location: record.location, pattern: dep.pattern, dependencyLocation: dep.location });
      } else {
        dependencies.push(found);
      }
    }
    const why = unresolved.length === 0 ? "" : `could not resolve dependency "${unresolved[0]!.pattern}"`;
    return { pkg: { record, dependencies, unresolved: why }, unresolved: unresolved.length === 0 ? NO_UNRESOLVED : unresolved };
  }

  /** store puts pkg in place of before, keeping every count and index in step. */
  private store(name: string, before: TreePackage | undefined, pkg: TreePackage, unresolved: readonly UnresolvedDependency[]): void {
    const dependenciesBefore = before?.dependencies ?? NONE;
    if (this.dependents !== undefined && dependenciesBefore !== pkg.dependencies) {
      for (const dep of dependenciesBefore) if (!pkg.dependencies.includes(dep)) this.dependents.delete(dep, name);
      for (const dep of pkg.dependencies) if (!dependenciesBefore.includes(dep)) this.dependents.add(dep, name);
    }
    this.edgeCount += pkg.dependencies.length - dependenciesBefore.length;
    if (before !== undefined && prefailReason(before) !== "") this.prefailedCount--;
    if (prefailReason(pkg) !== "") this.prefailedCount++;
    const unresolvedBefore = this.unresolvedOf.get(name) ?? NO_UNRESOLVED;
    if (unresolved !== unresolvedBefore) {
      if (unresolved.length > 0) this.unresolvedOf.set(name, unresolved);
      else this.unresolvedOf.delete(name);
      this.unresolvedList = undefined;
    }
    this.packages.set(name, pkg);
  }

  /**
   * updateCycles keeps the cycle list exact without looking at the whole
   * graph. A cycle is new or grew only through a new edge u -> v, so its
   * members are reachable from v and reach u; a cycle broke only where a
   * member's dependencies changed. Tarjan over those packages (a set that
   * holds each of its members' whole component) finds their components as
   * the whole graph would; every other cycle kept its edges and gained none.
   */
  private *updateCycles(edgesChanged: readonly string[], newEdges: NewEdges, removed: readonly string[]): Steps<void> {
    if (edgesChanged.length === 0 && removed.length === 0) return;
    const gone = new Set<readonly string[]>();
    for (const name of [...removed, ...edgesChanged]) {
      const cycle = this.cycleOf.get(name);
      if (cycle !== undefined) gone.add(cycle);
    }
    let names: string[];
    if (edgesChanged.length * 2 > this.packages.size) {
      // Most of the tree (an import): narrowing it down would cost more than it saves.
      names = [...this.packages.keys()];
    } else {
      const dependents = this.dependentsIndex();
      const onNewCycles = meetingPoints(
        newEdges.to, newEdges.from,
        (name) => this.packages.get(name)?.dependencies ?? NONE,
        (name) => dependents.values(name),
      );
      for (const cycle of gone) for (const name of cycle) if (this.packages.has(name)) onNewCycles.add(name);
      names = [...onNewCycles];
    }
    yield;
    const at = new Map<string, number>();
    yield* mapInSlices(names, (name, i) => at.set(name, i));
    yield* mapInSlices(names, (name) => {
      const cycle = this.cycleOf.get(name);
      if (cycle !== undefined) gone.add(cycle);
    });
    const edges = yield* mapInSlices(names, (name) => {
      const out: number[] = [];
      for (const dep of this.packages.get(name)!.dependencies) {
        const i = at.get(dep);
        if (i !== undefined) out.push(i);
      }
      return out;
    });
    yield;
    const found = (yield* findCyclesSteps(edges)).map((members) => members.map((i) => names[i]!));
    if (gone.size === 0 && found.length === 0) return;
    for (const cycle of gone) for (const name of cycle) this.cycleOf.delete(name);
    for (const cycle of found) for (const name of cycle) this.cycleOf.set(name, cycle);
    this.cycles = [...this.cycles.filter((c) => !gone.has(c)), ...found];
  }

  get size(): number {
    return this.packages.size;
  }

  get(pkgname: string): TreePackage | undefined {
    return this.packages.get(pkgname);
  }

  /** PKGNAMEs at a location: one, or one per MULTI_VERSION variant. */
  atLocation(location: string): readonly string[] {
    return this.byLocation.get(location) ?? NONE;
  }

  /** All PKGNAMEs in code-unit order, as kept for matching (not to be changed; valid until the next update). */
  sortedPkgnames(): readonly string[] {
    return this.sortedNames;
  }

  /** All PKGNAMEs, in no particular order. */
  pkgnames(): IterableIterator<string> {
    return this.packages.keys();
  }

  values(): IterableIterator<TreePackage> {
    return this.packages.values();
  }

  /** Packages that depend on pkgname directly, in no particular order. */
  dependentsOf(pkgname: string): readonly string[] {
    return this.dependentsIndex().distinct(pkgname);
  }

  /** Left out while an import resolves, built once it is done. */
  private dependentsIndex(): Multimap {
    if (this.dependents === undefined) {
      const index = new Multimap();
      for (const [name, pkg] of this.packages) for (const dep of pkg.dependencies) index.add(dep, name);
      this.dependents = index;
    }
    return this.dependents;
  }

  cyclesFound(): readonly (readonly string[])[] {
    return this.cycles;
  }

  unresolvedDependencies(): readonly UnresolvedDependency[] {
    if (this.unresolvedList === undefined) {
      const list: UnresolvedDependency[] = [];
      for (const name of this.packages.keys()) {
        const entries = this.unresolvedOf.get(name);
        if (entries !== undefined) list.push(...entries);
      }
      this.unresolvedList = list;
    }
    return this.unresolvedList;
  }

  summary(): TreeSummary {
    return {
      packages: this.packages.size,
      locations: this.byLocation.size,
      dependencyEdges: this.edgeCount,
      prefailed: this.prefailedCount,
      cycles: this.cycles,
    };
  }
}

/**
 * BestMatches keeps each pattern's best match among the tree's PKGNAMEs for
 * as long as some package uses the pattern, indexed by the pattern's literal
 * prefix so a PKGNAME finds the patterns it could match.
 */
class BestMatches {
  private readonly bestOf = new Map<string, string | null>();
  // More patterns than pattern.ts's matcher cache holds, so each keeps its own.
  private readonly matchers = new Map<string, Matcher>();
  private readonly byPrefix = new Map<string, Set<string>>();
  /** Packages using each pattern, once per use (a record may list a pattern twice). */
  /**
   * Packages using each pattern, once per use (a record may list a pattern
   * twice). Left out while an import resolves, built once it is done.
   */
  private users: Multimap | undefined;

  constructor(private sortedNames: () => readonly string[]) {}

  /** rebind reads the names from another tree (the one that adopted these matches). */
  rebind(sortedNames: () => readonly string[]): void {
    this.sortedNames = sortedNames;
  }

  indexUsers(packages: Iterable<TreePackage>): void {
    if (this.users !== undefined) return;
    this.users = new Multimap();
    for (const pkg of packages) for (const dep of pkg.record.dependencies) this.users.add(dep.pattern, pkg.record.pkgname);
  }

  /** relink moves pkgname's uses from the patterns of before to those of after. */
  relink(pkgname: string, before: readonly DependencyPattern[], after: readonly DependencyPattern[]): void {
    if (this.users === undefined) return;
    if (before.length === 0) {
      for (const dep of after) this.users.add(dep.pattern, pkgname);
      return;
    }
    // Only the difference is touched: gmake>=3.81 has thousands of users.
    const count = new Map<string, number>();
    for (const dep of after) count.set(dep.pattern, (count.get(dep.pattern) ?? 0) + 1);
    for (const dep of before) count.set(dep.pattern, (count.get(dep.pattern) ?? 0) - 1);
    for (const [pattern, n] of count) {
      for (let k = 0; k < n; k++) this.users.add(pattern, pkgname);
      for (let k = 0; k < -n; k++) this.users.delete(pattern, pkgname);
      if (n < 0 && !this.users.has(pattern)) this.forget(pattern);
    }
  }

  private forget(pattern: string): void {
    this.matchers.delete(pattern);
    if (!this.bestOf.delete(pattern)) return;
    const prefix = patternPrefix(pattern);
    const patterns = this.byPrefix.get(prefix);
    if (patterns === undefined) return;
    patterns.delete(pattern);
    if (patterns.size === 0) this.byPrefix.delete(prefix);
  }

  /** matcher is the pattern's pbulk pkg_match; throws InvalidPattern. */
  matcher(pattern: string): Matcher {
    let m = this.matchers.get(pattern);
    if (m === undefined) {
      m = compilePattern(pattern, "pbulk");
      this.matchers.set(pattern, m);
    }
    return m;
  }

  usersOf(pattern: string): Iterable<string> {
    return this.users?.values(pattern) ?? NONE;
  }

  /** best is the PKGNAME pbulk picks for pattern, or null: none matches, or the pattern is invalid. */
  best(pattern: string): string | null {
    let found = this.bestOf.get(pattern);
    if (found === undefined) {
      const prefix = patternPrefix(pattern);
      try {
        found = pickBestMatch(pattern, namesStartingWith(this.sortedNames(), prefix)) ?? null;
      } catch (e) {
        if (!(e instanceof InvalidPattern)) throw e;
        // No PKGNAME ever matches it, so it is never looked at again.
        this.bestOf.set(pattern, null);
        return null;
      }
      this.bestOf.set(pattern, found);
      const patterns = this.byPrefix.get(prefix);
      if (patterns === undefined) this.byPrefix.set(prefix, new Set([pattern]));
      else patterns.add(pattern);
    }
    return found;
  }

  /**
   * refresh recomputes, against the current names, every kept pattern that
   * an added or removed PKGNAME matches (only those can have a new answer),
   * and returns the patterns whose answer changed.
   */
  refresh(added: readonly string[], removed: readonly string[]): Set<string> {
    const changed = new Set<string>();
    if (this.byPrefix.size === 0) return changed;
    const stale = new Set<string>();
    for (const names of [added, removed]) {
      for (const name of names) {
        for (let end = 0; end <= name.length; end++) {
          const patterns = this.byPrefix.get(name.slice(0, end));
          if (patterns === undefined) continue;
          for (const pattern of patterns) if (this.matcher(pattern)(name)) stale.add(pattern);
        }
      }
    }
    for (const pattern of stale) {
      const found = this.compute(pattern);
      if (found === this.bestOf.get(pattern)) continue;
      this.bestOf.set(pattern, found);
      changed.add(pattern);
    }
    return changed;
  }

  private compute(pattern: string): string | null {
    return pickBestMatch(pattern, namesStartingWith(this.sortedNames(), patternPrefix(pattern))) ?? null;
  }
}

/** New dependency edges of one update: the packages that gained one, and what they point at. */
interface NewEdges {
  readonly from: string[];
  readonly to: Set<string>;
}

/**
 * meetingPoints is the set of nodes reachable from starts (along forward)
 * that also reach goals (along backward). Both walks advance in turn until
 * one is done, and the other then walks only inside its result, so the cost
 * follows the smaller side: a changed leaf has a deep closure but few
 * dependents, a changed library the opposite.
 */
function meetingPoints(
  starts: Iterable<string>, goals: Iterable<string>,
  forward: (name: string) => Iterable<string>, backward: (name: string) => Iterable<string>,
): Set<string> {
  const ahead = new Walk([...starts], forward);
  const behind = new Walk([...goals], backward);
  for (;;) {
    if (!ahead.advance()) return Walk.inside(behind.starts, backward, ahead.seen);
    if (!behind.advance()) return Walk.inside(ahead.starts, forward, behind.seen);
  }
}

/** Walk is a breadth-first walk taken one node at a time. */
class Walk {
  readonly seen: Set<string>;
  private readonly queue: string[];
  private next = 0;

  constructor(readonly starts: readonly string[], private readonly step: (name: string) => Iterable<string>) {
    this.seen = new Set(starts);
    this.queue = [...this.seen];
  }

  /** The nodes a walk from starts reaches without leaving within. */
  static inside(starts: readonly string[], step: (name: string) => Iterable<string>, within: ReadonlySet<string>): Set<string> {
    const walk = new Walk(starts.filter((n) => within.has(n)), step);
    while (walk.advance(within));
    return walk.seen;
  }

  /** advance takes the next node's neighbours; false when there is none left. */
  advance(within?: ReadonlySet<string>): boolean {
    if (this.next === this.queue.length) return false;
    for (const n of this.step(this.queue[this.next++]!)) {
      if (this.seen.has(n) || (within !== undefined && !within.has(n))) continue;
      this.seen.add(n);
      this.queue.push(n);
    }
    return true;
  }
}

// A key with more values than this keeps them counted in a Map, not a list.
const LARGE_KEY = 64;

/**
 * Multimap maps keys to values, repeats allowed. Most keys have a handful of
 * values, kept in an array; the few with thousands (gmake>=3.81, gmake
 * itself) move to a counted Map, so taking one value out stays cheap.
 */
class Multimap {
  private readonly small = new Map<string, string[]>();
  private readonly large = new Map<string, Map<string, number>>();

  add(key: string, value: string): void {
    const counted = this.large.get(key);
    if (counted !== undefined) {
      counted.set(value, (counted.get(value) ?? 0) + 1);
      return;
    }
    const list = this.small.get(key);
    if (list === undefined) {
      this.small.set(key, [value]);
      return;
    }
    list.push(value);
    if (list.length > LARGE_KEY) {
      const many = new Map<string, number>();
      for (const v of list) many.set(v, (many.get(v) ?? 0) + 1);
      this.large.set(key, many);
      this.small.delete(key);
    }
  }

  /** delete takes one occurrence of value out, if there is one. */
  delete(key: string, value: string): void {
    const counted = this.large.get(key);
    if (counted !== undefined) {
      const n = counted.get(value);
      if (n === undefined) return;
      if (n > 1) counted.set(value, n - 1);
      else if (counted.delete(value) && counted.size === 0) this.large.delete(key);
      return;
    }
    const list = this.small.get(key);
    if (list === undefined) return;
    const at = list.lastIndexOf(value);
    if (at < 0) return;
    list[at] = list[list.length - 1]!;
    list.pop();
    if (list.length === 0) this.small.delete(key);
  }

  deleteKey(key: string): void {
    this.small.delete(key);
    this.large.delete(key);
  }

  has(key: string): boolean {
    return this.small.has(key) || this.large.has(key);
  }

  /** The values of key, each once, in no particular order. */
  distinct(key: string): readonly string[] {
    const counted = this.large.get(key);
    if (counted !== undefined) return [...counted.keys()];
    const list = this.small.get(key);
    if (list === undefined) return NONE;
    return new Set(list).size === list.length ? list : [...new Set(list)];
  }

  /** The values of key, repeats included, to be read at once. */
  values(key: string): Iterable<string> {
    return this.large.get(key)?.keys() ?? this.small.get(key) ?? NONE;
  }
}

function byPkgname(records: readonly ScanRecord[]): { incoming: Map<string, ScanRecord>; problems: InvalidScanRecord[] } {
  const problems: InvalidScanRecord[] = [];
  const incoming = new Map<string, ScanRecord>();
  for (const record of records) {
    const earlier = incoming.get(record.pkgname);
    if (earlier !== undefined) {
      problems.push(new InvalidScanRecord(record.line, record.location, record.pkgname,
        `PKGNAME ${record.pkgname} was already given at line ${earlier.line} (${earlier.location})`));
      continue;
    }
    incoming.set(record.pkgname, record);
  }
  return { incoming, problems };
}

/** sameRecord compares what a record says; the input line it came from is not part of that. */
function sameRecord(a: ScanRecord, b: ScanRecord): boolean {
  if (a === b) return true;
  return a.pkgname === b.pkgname && a.location === b.location && a.failReason === b.failReason &&
    a.skipReason === b.skipReason && a.multiVersion === b.multiVersion && a.scanDepends === b.scanDepends &&
    a.pbulkWeight === b.pbulkWeight && a.maintainer === b.maintainer && sameStrings(a.categories, b.categories) &&
    (a.resolvedByPbulk === undefined ? b.resolvedByPbulk === undefined
      : b.resolvedByPbulk !== undefined && sameStrings(a.resolvedByPbulk, b.resolvedByPbulk)) &&
    sameDependencies(a, b);
}

function sameDependencies(a: ScanRecord, b: ScanRecord): boolean {
  return a.dependencies.length === b.dependencies.length &&
    a.dependencies.every((d, i) => d.pattern === b.dependencies[i]!.pattern && d.location === b.dependencies[i]!.location);
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

function sameUnresolved(a: readonly UnresolvedDependency[], b: readonly UnresolvedDependency[]): boolean {
  return a.length === b.length && a.every((u, i) => u.pattern === b[i]!.pattern && u.dependencyLocation === b[i]!.dependencyLocation);
}

/** Index of the first name not below s. */
function lowerBound(sorted: readonly string[], s: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The slice of sorted names that start with prefix (every candidate a pattern with that prefix can match). */
function namesStartingWith(sorted: readonly string[], prefix: string): readonly string[] {
  if (prefix === "") return sorted;
  const start = lowerBound(sorted, prefix);
  let end = start;
  while (end < sorted.length && sorted[end]!.startsWith(prefix)) end++;
  return sorted.slice(start, end);
}
