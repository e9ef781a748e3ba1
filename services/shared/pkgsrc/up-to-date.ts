/**
 * Is a binary package still current? pbulk's answer (scripts/pkg-up-to-date,
 * run by pkg-build before every build), as a pure function with a reason.
 *
 * A package is current when
 *   1. every tree file recorded in its +BUILD_VERSION (the package's
 *      Makefile, PLIST, distinfo, patches, files/*: mk/pkgformat/pkg/
 *      metadata.mk) still exists and its first `$NetBSD...$` id is the one
 *      recorded, and
 *   2. the dependencies it was built against (+CONTENTS @blddep, which is
 *      what `pkg_info -N` prints) are the ones the scan resolves now, and
 *   3. (pbulk's age check, unless skip_age_check) no dependency's package is
 *      newer than it.
 * Dates of files play no part: a checkout that touches every file rebuilds
 * nothing, and a changed PKGREVISION rebuilds the package even when the
 * checkout kept the old date.
 *
 * pbulk only checks that each recorded dependency is still wanted; this also
 * rebuilds when the scan now wants a dependency the package was not built
 * against (an option default that pulled in a library, which changes no file
 * of the package's own directory). pkgsrc records @blddep for every
 * bootstrap, build and full dependency, which is the set pbulk-resolve puts
 * in DEPENDS, so for an unchanged package the two are equal.
 */

import { posix } from "node:path";
import { parseBuildVersion, parsePackingList, type BinaryPackageMetadata } from "./binary-package.js";

/** Why a package was rebuilt; the strings are what jobs and reports show. */
export type RebuildCause =
  | { readonly kind: "no-binary-package" }
  | { readonly kind: "file-changed"; readonly file: string; readonly recorded: string; readonly current: string }
  | { readonly kind: "file-removed"; readonly file: string; readonly recorded: string }
  | { readonly kind: "dependency-changed"; readonly was: string; readonly now: string }
  | { readonly kind: "dependency-removed"; readonly was: string }
  | { readonly kind: "dependency-added"; readonly now: string }
  | { readonly kind: "dependency-newer"; readonly dependency: string };

/** UpToDateDecision: current, or rebuilt with the first reason found. */
export type UpToDateDecision =
  | { readonly upToDate: true; readonly reason: "up to date" }
  | { readonly upToDate: false; readonly reason: string; readonly cause: RebuildCause };

export interface UpToDateInput {
  /**
   * The metadata of the package's existing binary package, or undefined when
   * there is none (only +CONTENTS and +BUILD_VERSION are looked at).
   */
  readonly binaryPackage: Pick<BinaryPackageMetadata, "contents" | "buildVersion"> | undefined;
  /**
   * Reads a file of the tree now, by its path relative to the tree root as
   * +BUILD_VERSION records it; undefined when it does not exist.
   */
  readonly readTreeFile: (relativePath: string) => string | undefined;
  /** The PKGNAMEs of the dependencies the scan resolves now (pbulk's DEPENDS). */
  readonly dependencies: readonly string[];
  /**
   * pbulk's age check: true when the given dependency's binary package is
   * newer than this package's. Leave it out to skip the check (pbulk's
   * skip_age_check=yes), e.g. when the build already rebuilds everything
   * whose dependencies were rebuilt in it.
   */
  readonly dependencyIsNewer?: (pkgname: string) => boolean;
}

/** decideUpToDate is pkg-up-to-date: the first reason to rebuild, or "up to date". */
export function decideUpToDate(input: UpToDateInput): UpToDateDecision {
  const pkg = input.binaryPackage;
  if (pkg === undefined) return rebuilt({ kind: "no-binary-package" });

  for (const { file, id } of parseBuildVersion(pkg.buildVersion ?? "")) {
    // A path that is absolute or climbs out was not recorded relative to the
    // tree (metadata.mk strips the tree's own prefix); pbulk looks it up
    // under the tree, does not find it, and rebuilds. So does this, without
    // ever reading outside the tree.
    const text = isTreePath(file) ? input.readTreeFile(posix.normalize(file)) : undefined;
    if (text === undefined) return rebuilt({ kind: "file-removed", file, recorded: id });
    const current = netbsdId(text) ?? "";
    if (current !== id) return rebuilt({ kind: "file-changed", file, recorded: id, current });
  }

  const recorded = parsePackingList(pkg.contents).blddeps;
  const now = new Set(input.dependencies);
  const recordedSet = new Set(recorded);
  for (const was of recorded) {
    if (now.has(was)) continue;
    const successor = input.dependencies.find((dep) => !recordedSet.has(dep) && packageBase(dep) === packageBase(was));
    return rebuilt(successor === undefined ? { kind: "dependency-removed", was } : { kind: "dependency-changed", was, now: successor });
  }
  for (const dep of input.dependencies) {
    if (!recordedSet.has(dep)) return rebuilt({ kind: "dependency-added", now: dep });
  }
  if (input.dependencyIsNewer !== undefined) {
    for (const dep of recorded) {
      if (input.dependencyIsNewer(dep)) return rebuilt({ kind: "dependency-newer", dependency: dep });
    }
  }
  return { upToDate: true, reason: "up to date" };
}

/** describeRebuild is the one-line reason for a cause, as jobs and reports show it. */
export function describeRebuild(cause: RebuildCause): string {
  switch (cause.kind) {
    case "no-binary-package":
      return "rebuilt: no binary package";
    case "file-changed":
      return `rebuilt: file ${cause.file} changed (was ${cause.recorded || "no id"}, now ${cause.current || "no id"})`;
    case "file-removed":
      return `rebuilt: file ${cause.file} is no longer in the tree`;
    case "dependency-changed":
      return `rebuilt: dependency ${packageBase(cause.was)} changed (was ${cause.was}, now ${cause.now})`;
    case "dependency-removed":
      return `rebuilt: dependency ${cause.was} is no longer needed`;
    case "dependency-added":
      return `rebuilt: new dependency ${cause.now}`;
    case "dependency-newer":
      return `rebuilt: dependency ${cause.dependency} was rebuilt`;
  }
}

function rebuilt(cause: RebuildCause): UpToDateDecision {
  return { upToDate: false, reason: describeRebuild(cause), cause };
}

/**
 * netbsdId is the first `$NetBSD...$` of a file, as pkg-up-to-date's sed
 * takes it (`/[$]NetBSD/!d; s/^.*\([$]NetBSD[^$]*[$]\).*$/\1/; q`): the
 * first line holding "$NetBSD", and on it the id that starts last (sed's
 * leading `.*` is greedy); undefined when no line has one. When no id closes
 * on that line, sed prints the whole line, and so does this.
 */
export function netbsdId(text: string): string | undefined {
  for (const line of text.split("\n")) {
    if (!line.includes("$NetBSD")) continue;
    // Greedy `^.*`: the match that starts last wins, so try the starts from the end.
    for (let at = line.lastIndexOf("$NetBSD"); at !== -1; at = at === 0 ? -1 : line.lastIndexOf("$NetBSD", at - 1)) {
      const m = /^\$NetBSD[^$]*\$/.exec(line.slice(at));
      if (m !== null) return m[0];
    }
    // No id closes on the line: sed's s/// does not match and q prints the whole line.
    return line;
  }
  return undefined;
}

/** packageBase is a PKGNAME without its version: "perl-5.16.2nb4" → "perl". */
export function packageBase(pkgname: string): string {
  const dash = pkgname.lastIndexOf("-");
  return dash <= 0 ? pkgname : pkgname.slice(0, dash);
}

function isTreePath(file: string): boolean {
  if (file === "" || file.startsWith("/") || file.includes("\u0000")) return false;
  // A package built from another's files records them through its own
  // directory ("pkgtools/rdigest/../../pkgtools/digest/files/PLIST"), which
  // pbulk's shell resolves under the tree; only a path that ends up outside
  // the tree is refused.
  const normal = posix.normalize(file);
  return normal !== ".." && !normal.startsWith("../") && !normal.startsWith("/");
}
