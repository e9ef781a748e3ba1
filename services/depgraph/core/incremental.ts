/** BinaryPackageFile is what an incremental build needs to know of a file in packages/All. */
export interface BinaryPackageFile {
  /** Last modification, ms since the epoch. */
  readonly mtimeMs: number;
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
      let current = own !== undefined;
      for (const d of dependencies[i]!) {
        // A dependency still VISITING is on a cycle: nothing on it is current.
        if (!current) break;
        const dep = binaryPackages.get(pkgnames[d]!);
        current = status[d] === CURRENT && dep !== undefined && dep.mtimeMs <= own!.mtimeMs;
      }
      status[i] = current ? CURRENT : STALE;
    }
  };
  const result = new Set<number>();
  for (let i = 0; i < pkgnames.length; i++) {
    if (status[i] === UNKNOWN) decide(i);
    if (status[i] === CURRENT) result.add(i);
  }
  return result;
}
