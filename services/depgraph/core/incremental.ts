/** BinaryPackageFile is what an incremental build needs to know of a file in packages/All. */
export interface BinaryPackageFile {
  /** Last modification, ms since the epoch. */
  readonly mtimeMs: number;
  /**
   * Why the package is out of date although it exists, from a check of its
   * recorded build (pbulk's pkg-up-to-date: +BUILD_VERSION against the tree,
   * recorded dependencies against the new ones); undefined when current or
   * not checked.
   */
  readonly outdated?: string;
}

/** IncrementalDecision says, for each package, whether it is current and why. */
export interface IncrementalDecision {
  /** Indices of the packages that are up to date. */
  readonly upToDate: Set<number>;
  /** For every package: "up to date", or why it is rebuilt ("rebuilt: ..."). */
  readonly reasons: string[];
}

/**
 * upToDatePackages finds the packages an incremental build may skip, as
 * pbulk does: the binary package of this exact PKGNAME exists, every
 * dependency is itself up to date, and none of their packages is newer than
 * this one (a rebuilt dependency means this one must be rebuilt against it).
 * Returns the indices of the up-to-date packages.
 */
export function upToDatePackages(
  pkgnames: readonly string[],
  dependencies: readonly (readonly number[])[],
  binaryPackages: ReadonlyMap<string, BinaryPackageFile>,
): Set<number> {
  return decideIncremental(pkgnames, dependencies, binaryPackages).upToDate;
}

/** decideIncremental is upToDatePackages with the reason for every decision. */
export function decideIncremental(
  pkgnames: readonly string[],
  dependencies: readonly (readonly number[])[],
  binaryPackages: ReadonlyMap<string, BinaryPackageFile>,
): IncrementalDecision {
  const reasons: string[] = new Array<string>(pkgnames.length).fill("");
  const UNKNOWN = 0, VISITING = 1, CURRENT = 2, STALE = 3;
  const status = new Uint8Array(pkgnames.length);
  const decide = (root: number): void => {
    // Iterative post-order, so a long chain of dependencies cannot overflow the stack.
    const stack: number[] = [root];
    while (stack.length > 0) {
      const i = stack[stack.length - 1]!;
      if (status[i] === UNKNOWN) {
        status[i] = VISITING;
        for (const d of dependencies[i]!) if (status[d] === UNKNOWN) stack.push(d);
        continue;
      }
      stack.pop();
      if (status[i] !== VISITING) continue;
      const own = binaryPackages.get(pkgnames[i]!);
      let current = own !== undefined && own.outdated === undefined;
      reasons[i] = own === undefined ? "rebuilt: no binary package" : own.outdated !== undefined ? `rebuilt: ${own.outdated}` : "up to date";
      for (const d of dependencies[i]!) {
        // A dependency still VISITING is on a cycle: nothing on it is current.
        if (!current) break;
        const dep = binaryPackages.get(pkgnames[d]!);
        current = status[d] === CURRENT && dep !== undefined && dep.mtimeMs <= own!.mtimeMs;
        if (!current) {
          reasons[i] = status[d] === CURRENT ? `rebuilt: the package of dependency ${pkgnames[d]} is newer` : `rebuilt: dependency ${pkgnames[d]} is rebuilt`;
        }
      }
      status[i] = current ? CURRENT : STALE;
    }
  };
  const upToDate = new Set<number>();
  for (let i = 0; i < pkgnames.length; i++) {
    if (status[i] === UNKNOWN) decide(i);
    if (status[i] === CURRENT) upToDate.add(i);
  }
  return { upToDate, reasons };
}
