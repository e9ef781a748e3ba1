// The agent gives every job a directory of its own, <root>/<buildId>/<pkgname>,
// and starts it empty: whatever a previous attempt at the same job left there
// (half-extracted dependencies, a partial package) must not leak into this one.
//
// buildId and pkgname arrive from the dispatcher over the network. They become
// path components and the directory is removed recursively, so a name like
// ".." or "a/../../etc" would point that removal outside root. Names are
// checked before any path is built from them.

import { mkdir, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";

/** InvalidJobName: a buildId or pkgname that cannot safely be used as one directory name. */
export class InvalidJobName extends Error {
  override readonly name = "InvalidJobName";
  constructor(
    readonly what: "buildId" | "pkgname",
    readonly value: string,
    readonly problem: string,
  ) {
    super(`${what} ${JSON.stringify(value)} cannot be used as a directory name: ${problem}`);
  }
}

/** JobWorkdir is where one job builds. */
export interface JobWorkdir {
  /** <root>/<buildId>/<pkgname>, empty apart from the two directories below. */
  readonly dir: string;
  /** <dir>/depends: where the binary packages the build depends on go. */
  readonly dependsDir: string;
  /** <dir>/out/<pkgname>.tgz: where the build writes its package; out/ exists, the file does not. */
  readonly outputPath: string;
}

/**
 * pathComponentProblem says why value cannot be one file or directory name
 * directly under a directory we control, or returns undefined if it can.
 * Refused: empty, "." and "..", separators ("/" and, for trees shared with
 * Windows tools, "\"), NUL, a leading "." (hidden, and the start of "..") and
 * a leading "-" (read as an option by the tools that get these paths as
 * arguments).
 */
export function pathComponentProblem(value: string): string | undefined {
  if (value === "") return "it is empty";
  if (value === "." || value === "..") return "it names a directory itself";
  if (value.includes("/") || value.includes("\\")) return "it contains a path separator";
  if (value.includes("\0")) return "it contains a NUL byte";
  if (value.startsWith(".")) return 'it starts with "."';
  if (value.startsWith("-")) return 'it starts with "-"';
  return undefined;
}

/**
 * prepareJobWorkdir creates <root>/<buildId>/<pkgname> empty, removing any
 * earlier one first, with depends/ and out/ inside. root is created if missing.
 * Throws InvalidJobName before touching the file system if a name is unsafe.
 */
export async function prepareJobWorkdir(root: string, buildId: string, pkgname: string): Promise<JobWorkdir> {
  const dir = jobDir(root, buildId, pkgname);
  await rm(dir, { recursive: true, force: true });
  const dependsDir = join(dir, "depends");
  const outDir = join(dir, "out");
  await mkdir(dependsDir, { recursive: true });
  await mkdir(outDir, { recursive: true });
  return { dir, dependsDir, outputPath: join(outDir, `${pkgname}.tgz`) };
}

/**
 * removeJobWorkdir removes <root>/<buildId>/<pkgname>, and <root>/<buildId>
 * too once no other job of that build has a directory there. Removing what is
 * already gone is not an error.
 */
export async function removeJobWorkdir(root: string, buildId: string, pkgname: string): Promise<void> {
  await rm(jobDir(root, buildId, pkgname), { recursive: true, force: true });
  try {
    await rmdir(join(root, buildId));
  } catch (error: unknown) {
    // Another job of the build still has its directory there (ENOTEMPTY,
    // EEXIST on some systems), or it is already gone: both are fine.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOENT") throw error;
  }
}

function jobDir(root: string, buildId: string, pkgname: string): string {
  checkName("buildId", buildId);
  checkName("pkgname", pkgname);
  return join(root, buildId, pkgname);
}

function checkName(what: "buildId" | "pkgname", value: string): void {
  const problem = pathComponentProblem(value);
  if (problem !== undefined) throw new InvalidJobName(what, value, problem);
}
