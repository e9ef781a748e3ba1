/**
 * checkUpToDate is pkg-build's first step as one call: read the package's
 * binary package from the packages directory (if there is one), and decide
 * with decideUpToDate against the tree as it is now. The I/O lives here so
 * that up-to-date.ts stays a pure function.
 */

import { stat } from "node:fs/promises";
import path from "node:path";
import { readBinaryPackage } from "./binary-package.js";
import { createTreeFileReader } from "./tree-files.js";
import { decideUpToDate, type UpToDateDecision } from "./up-to-date.js";

export interface CheckUpToDateOptions {
  /** The PACKAGES directory: the package is `<packagesDir>/All/<pkgname>.tgz`. */
  readonly packagesDir: string;
  readonly pkgname: string;
  /** Root of the tree as it is now. */
  readonly tree: string;
  /** The PKGNAMEs of the dependencies the scan resolves now. */
  readonly dependencies: readonly string[];
  /**
   * pbulk's age check (on unless skip_age_check): a dependency whose package
   * in All/ is not older than this one's means a rebuild. Default false: in
   * pkgfarm the build already rebuilds what depends on a rebuilt package
   * (rebuild_reason), and copied or restored package directories have
   * meaningless dates.
   */
  readonly ageCheck?: boolean;
}

export async function checkUpToDate(options: CheckUpToDateOptions): Promise<UpToDateDecision> {
  const all = path.join(options.packagesDir, "All");
  const own = path.join(all, `${options.pkgname}.tgz`);
  const ownStat = await statIfExists(own);
  if (ownStat === undefined) return decideUpToDate({ binaryPackage: undefined, readTreeFile: () => undefined, dependencies: options.dependencies });
  const meta = await readBinaryPackage(own);
  let newer: Set<string> | undefined;
  if (options.ageCheck === true) {
    newer = new Set();
    for (const dep of options.dependencies) {
      const st = await statIfExists(path.join(all, `${dep}.tgz`));
      // pbulk's `[ dep.tgz -ot pkg.tgz ]`: a missing one is not older either.
      if (st === undefined || st.mtimeMs >= ownStat.mtimeMs) newer.add(dep);
    }
  }
  return decideUpToDate({
    binaryPackage: meta,
    readTreeFile: createTreeFileReader(options.tree),
    dependencies: options.dependencies,
    ...(newer === undefined ? {} : { dependencyIsNewer: (dep: string) => newer.has(dep) }),
  });
}

async function statIfExists(file: string) {
  try {
    const st = await stat(file);
    return st.isFile() ? st : undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw error;
  }
}
