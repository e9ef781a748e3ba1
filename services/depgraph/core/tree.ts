import { findCycles } from "./cycles.js";
import { InvalidScanRecord } from "./errors.js";
import { InvalidPattern, matchPattern, patternPrefix, pickBestMatch } from "./pattern.js";
import type { ScanRecord } from "./scan-record.js";

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

/** prefailReason says why a package cannot be built before any build starts; "" if it can. */
export function prefailReason(pkg: TreePackage): string {
  if (pkg.record.failReason !== "") return pkg.record.failReason;
  if (pkg.record.skipReason !== "") return pkg.record.skipReason;
  return pkg.unresolved;
}

/**
 * PackageTree holds the tree's packages and resolves their requirements the
 * way pbulk's presolve does: each ALL_DEPENDS pattern is matched against every
 * PKGNAME of the tree (the location only says where pkgsrc builds it; pbulk
 * itself picks mpg123-nas for mpg123{,-nas}>=1 at audio/mpg123), and the best
 * match wins: highest version, then the greater name. MULTI_VERSION variants
 * are told apart by the pattern (py313-six-[0-9]* names one of them).
 */
export class PackageTree {
  private packages = new Map<string, TreePackage>();
  private byLocation = new Map<string, string[]>();
  private cycles: string[][] = [];
  private unresolvedList: UnresolvedDependency[] = [];
  private dependentsIndex: Map<string, string[]> | undefined;
  private edgeCount = 0;
  /** Bumped on every change, so builds and caches can tell the tree moved. */
  revision = 0;

  /**
   * replace takes new records: all of the tree (scope "tree") or only the
   * locations they name (scope "locations", every variant of a named location
   * is replaced). A PKGNAME seen twice is refused for the second record.
   */
  replace(records: readonly ScanRecord[], scope: "tree" | "locations"): InvalidScanRecord[] {
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
    const next = new Map<string, ScanRecord>();
    if (scope === "locations") {
      const replaced = new Set<string>();
      for (const record of incoming.values()) replaced.add(record.location);
      for (const [name, pkg] of this.packages) {
        if (!replaced.has(pkg.record.location)) next.set(name, pkg.record);
      }
    }
    for (const [name, record] of incoming) next.set(name, record);
    this.resolve(next);
    return problems;
  }

  /** remove drops every package at these locations (a package deleted from the tree). */
  removeLocations(locations: Iterable<string>): void {
    const gone = new Set(locations);
    const next = new Map<string, ScanRecord>();
    for (const [name, pkg] of this.packages) if (!gone.has(pkg.record.location)) next.set(name, pkg.record);
    this.resolve(next);
  }

  private resolve(records: Map<string, ScanRecord>): void {
    const byLocation = new Map<string, string[]>();
    for (const record of records.values()) {
      const names = byLocation.get(record.location);
      if (names === undefined) byLocation.set(record.location, [record.pkgname]);
      else names.push(record.pkgname);
    }
    const sortedNames = [...records.keys()].sort();
    // Many packages share the same patterns (gmake>=3.81 alone thousands of
    // times), so each distinct pattern is matched once per resolution.
    const best = new Map<string, string | null>();
    const bestMatch = (pattern: string): string | null => {
      let found = best.get(pattern);
      if (found === undefined) {
        found = pickBestMatch(pattern, namesStartingWith(sortedNames, patternPrefix(pattern))) ?? null;
        best.set(pattern, found);
      }
      return found;
    };
    const packages = new Map<string, TreePackage>();
    const unresolved: UnresolvedDependency[] = [];
    let edges = 0;
    for (const record of records.values()) {
      const dependencies: string[] = [];
      let why = "";
      for (const dep of record.dependencies) {
        let found: string | null;
        try {
          // As pbulk's presolve: an earlier choice that already satisfies this
          // pattern is kept, so qt5-qtbase>=5.9.1 and >=5.15.18 give one edge.
          if (dependencies.some((d) => matchPattern(dep.pattern, d, "pbulk"))) continue;
          found = bestMatch(dep.pattern);
        } catch (e) {
          if (!(e instanceof InvalidPattern)) throw e;
          found = null;
        }
        if (found === null) {
          unresolved.push({ pkgname: record.pkgname, location: record.location, pattern: dep.pattern, dependencyLocation: dep.location });
          if (why === "") why = `could not resolve dependency "${dep.pattern}"`;
        } else {
          dependencies.push(found);
        }
      }
      edges += dependencies.length;
      packages.set(record.pkgname, { record, dependencies, unresolved: why });
    }
    this.packages = packages;
    this.byLocation = byLocation;
    this.unresolvedList = unresolved;
    this.edgeCount = edges;
    this.dependentsIndex = undefined;
    this.cycles = this.findTreeCycles();
    this.revision++;
  }

  private findTreeCycles(): string[][] {
    const names = [...this.packages.keys()];
    const indexOf = new Map<string, number>();
    names.forEach((name, i) => indexOf.set(name, i));
    const edges = names.map((name) => this.packages.get(name)!.dependencies.map((d) => indexOf.get(d)!));
    return findCycles(edges).map((members) => members.map((i) => names[i]!));
  }

  get size(): number {
    return this.packages.size;
  }

  get(pkgname: string): TreePackage | undefined {
    return this.packages.get(pkgname);
  }

  /** PKGNAMEs at a location: one, or one per MULTI_VERSION variant. */
  atLocation(location: string): readonly string[] {
    return this.byLocation.get(location) ?? [];
  }

  /** All PKGNAMEs, in no particular order. */
  pkgnames(): IterableIterator<string> {
    return this.packages.keys();
  }

  values(): IterableIterator<TreePackage> {
    return this.packages.values();
  }

  /** Packages that depend on pkgname directly. */
  dependentsOf(pkgname: string): readonly string[] {
    if (this.dependentsIndex === undefined) {
      const index = new Map<string, string[]>();
      for (const [name, pkg] of this.packages) {
        for (const dep of pkg.dependencies) {
          const list = index.get(dep);
          if (list === undefined) index.set(dep, [name]);
          else list.push(name);
        }
      }
      this.dependentsIndex = index;
    }
    return this.dependentsIndex.get(pkgname) ?? [];
  }

  cyclesFound(): readonly (readonly string[])[] {
    return this.cycles;
  }

  unresolvedDependencies(): readonly UnresolvedDependency[] {
    return this.unresolvedList;
  }

  summary(): TreeSummary {
    let prefailed = 0;
    for (const pkg of this.packages.values()) if (prefailReason(pkg) !== "") prefailed++;
    return {
      packages: this.packages.size,
      locations: this.byLocation.size,
      dependencyEdges: this.edgeCount,
      prefailed,
      cycles: this.cycles,
    };
  }
}

/** The slice of sorted names that start with prefix (every candidate a pattern with that prefix can match). */
function namesStartingWith(sorted: readonly string[], prefix: string): readonly string[] {
  if (prefix === "") return sorted;
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < prefix) lo = mid + 1;
    else hi = mid;
  }
  let end = lo;
  while (end < sorted.length && sorted[end]!.startsWith(prefix)) end++;
  return sorted.slice(lo, end);
}
