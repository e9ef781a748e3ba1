/**
 * publishRepository turns a platform's built packages into a repository
 * pkgin and `pkg_add http://...` can use, laid out as pbulk leaves one:
 *
 *   All/<pkg>.tgz           the published packages
 *   All/pkg_summary.gz      `pkg_info -X` of each, sorted by file name
 *   All/pkg_summary.bz2     the same, bzip2'd (what pkgin fetches first)
 *   SHA512.bz2              `SHA512 (All/<file>) = <hex>` for the two
 *                           summaries and every package, sorted by path
 *                           (pbulk's `digest SHA512`, scripts/build)
 *   <category>/<pkg>.tgz    symlinks to ../All/<pkg>.tgz for each of the
 *                           package's CATEGORIES (pkgsrc's package-links)
 *
 * Atomic for clients. The package store's All/ changes during a build
 * (every upload renames a new file into it), so an index written beside it
 * would describe files that are replaced under it. Instead each publication
 * is a fresh, complete generation directory: its All/ holds hard links to
 * exactly the files the index was computed from (the metadata, size and
 * SHA-512 are read from the link, after it was made, so a later upload that
 * replaces the store's file cannot make them disagree: it gets a new inode),
 * and only once everything is written and synced does the target path, a
 * symlink, switch to it by rename(2), which is atomic. A client resolves
 * the target once per request and sees the old repository or the new one,
 * never a mixture. Older generations are kept (keepGenerations) so a
 * download that resolved the old one finishes, then removed.
 */

import { syncDirectory } from "../package-store.js";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, link, lstat, mkdir, open, readdir, readlink, rename, rm, stat, symlink, unlink } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { gzip as gzipCallback } from "node:zlib";
import { parseBuildInfo, readBinaryPackage } from "../../shared/pkgsrc/binary-package.js";
import { formatSummaryEntry } from "../../shared/pkgsrc/pkg-summary.js";
import { bzip2 } from "./bzip2.js";
import { bytewise } from "./publishable.js";

const gzip = promisify(gzipCallback);

export interface PublishRepositoryOptions {
  /** Directory holding the built packages as `<PKGNAME>.tgz` (the package store's `<platform>/All`). */
  readonly allDir: string;
  /**
   * The path clients read the repository at. It becomes a symlink to the
   * newest generation (kept beside it in `.<name>.generations/`); an
   * existing real directory there is refused, since it cannot be replaced
   * atomically.
   */
  readonly target: string;
  /** PKGNAMEs to publish: the built, publishable packages (see selectPublishable). */
  readonly packages: readonly string[];
  /** The bzip2 program, a path or a name looked up in PATH; default "bzip2". */
  readonly bzip2?: string;
  /** Generations kept besides the new one, for downloads still reading them; default 1. */
  readonly keepGenerations?: number;
  /** Clock for the generation's name; default Date.now. */
  readonly now?: () => number;
  readonly signal?: AbortSignal;
}

/** PublishedPackage is one package as the new repository lists it. */
export interface PublishedPackage {
  readonly pkgname: string;
  readonly fileName: string;
  readonly sizeBytes: number;
  /** SHA-512 of the file, lower-case hex, as in SHA512.bz2. */
  readonly sha512: string;
  /** The category directories linking to it (from its +BUILD_INFO CATEGORIES). */
  readonly categories: readonly string[];
}

export interface PublishedRepository {
  /** The symlink clients read. */
  readonly target: string;
  /** The generation directory it now points at. */
  readonly directory: string;
  readonly packages: readonly PublishedPackage[];
  /** The uncompressed pkg_summary that was published. */
  readonly summary: string;
  /** Problems after the switch that did not stop the publication (old generations left behind). */
  readonly warnings: readonly string[];
}

/** RepositoryTargetInvalid: the target exists and is not a symlink, so it cannot be switched atomically. */
export class RepositoryTargetInvalid extends Error {
  override readonly name = "RepositoryTargetInvalid";
  constructor(readonly target: string) {
    super(`${target} exists and is not a symlink: the repository is published as a symlink to its newest generation, so it cannot replace a directory or file there; move it away or choose another path`);
  }
}

/** RepositoryPackageMissing: a package to publish has no file in All/. */
export class RepositoryPackageMissing extends Error {
  override readonly name = "RepositoryPackageMissing";
  constructor(
    readonly pkgname: string,
    readonly file: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot publish ${pkgname}: ${file} does not exist; the repository was left as it was`, options);
  }
}

/** InvalidRepositoryEntry: a PKGNAME or category that cannot be a file name in the repository. */
export class InvalidRepositoryEntry extends Error {
  override readonly name = "InvalidRepositoryEntry";
  constructor(
    readonly field: "pkgname" | "category",
    readonly value: string,
    readonly problem: string,
  ) {
    super(`invalid ${field} ${JSON.stringify(value.slice(0, 200))}: ${problem}`);
  }
}

const CATEGORY_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
// NUL and the other control characters: no tool that reads a repository expects them in a name.
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/**
 * What one package contributes to a repository, remembered by the identity
 * of its file (device, inode, size, mtime): the generations share the store's
 * inodes, so after a build only the packages that were rebuilt are read and
 * hashed again, not the whole repository. Holds the last publication's only.
 */
interface PackageFacts {
  readonly entry: string;
  readonly sha512: string;
  readonly categories: readonly string[];
  readonly sizeBytes: number;
}

// One publication per target at a time within this process: two running at
// once could each remove the generation the other just switched to.
const inFlight = new Map<string, Promise<unknown>>();
const factsByTarget = new Map<string, Map<string, PackageFacts>>();

export function publishRepository(options: PublishRepositoryOptions): Promise<PublishedRepository> {
  const target = path.resolve(options.target);
  const previous = inFlight.get(target) ?? Promise.resolve();
  const run = previous.catch(() => {}).then(() => publishNow({ ...options, target }));
  const settled = run.catch(() => {});
  inFlight.set(target, settled);
  void settled.then(() => {
    if (inFlight.get(target) === settled) inFlight.delete(target);
  });
  return run;
}

async function publishNow(options: PublishRepositoryOptions & { target: string }): Promise<PublishedRepository> {
  const { target, signal } = options;
  const allDir = path.resolve(options.allDir);
  const bzip2Command = options.bzip2 ?? "bzip2";
  const keep = options.keepGenerations ?? 1;
  for (const pkgname of options.packages) checkPkgname(pkgname);

  await refuseNonSymlink(target);
  const generations = generationsDir(target);
  await mkdir(generations, { recursive: true });
  const name = `${stamp((options.now ?? Date.now)())}-${randomBytes(4).toString("hex")}`;
  const dir = path.join(generations, name);
  await mkdir(path.join(dir, "All"), { recursive: true });

  const packages: PublishedPackage[] = [];
  const seen = new Map<string, PackageFacts>();
  let summary = "";
  try {
    const fileNames = [...new Set(options.packages)].map((pkgname) => ({ pkgname, fileName: `${pkgname}.tgz` }));
    fileNames.sort((a, b) => bytewise(a.fileName, b.fileName));

    const known = factsByTarget.get(target) ?? new Map<string, PackageFacts>();
    for (const { pkgname, fileName } of fileNames) {
      signal?.throwIfAborted();
      const published = path.join(dir, "All", fileName);
      await linkOrCopy(path.join(allDir, fileName), published, pkgname);
      // Everything is read from the link just made, so a rebuild that
      // replaces the store's file now cannot make index and file disagree.
      const st = await stat(published, { bigint: true });
      const key = `${fileName}\u0000${st.dev}\u0000${st.ino}\u0000${st.size}\u0000${st.mtimeNs}`;
      let facts = known.get(key);
      if (facts === undefined) {
        const meta = await readBinaryPackage(published);
        const sizeBytes = Number(st.size);
        facts = { entry: formatSummaryEntry(meta, { fileName, sizeBytes }), sha512: await sha512File(published), categories: categoriesOf(meta.buildInfo), sizeBytes };
      }
      seen.set(key, facts);
      summary += facts.entry;
      for (const category of facts.categories) {
        const catDir = path.join(dir, category);
        await mkdir(catDir, { recursive: true });
        await symlink(`../All/${fileName}`, path.join(catDir, fileName));
      }
      packages.push({ pkgname, fileName, sizeBytes: facts.sizeBytes, sha512: facts.sha512, categories: facts.categories });
    }

    const summaryBytes = Buffer.from(summary, "utf8");
    const gz = await gzip(summaryBytes);
    signal?.throwIfAborted();
    const bz = await bzip2(summaryBytes, bzip2Command, signal);
    await writeDurably(path.join(dir, "All", "pkg_summary.gz"), gz);
    await writeDurably(path.join(dir, "All", "pkg_summary.bz2"), bz);

    const digests: Array<[string, string]> = [
      ["All/pkg_summary.bz2", sha512(bz)],
      ["All/pkg_summary.gz", sha512(gz)],
      ...packages.map((p): [string, string] => [`All/${p.fileName}`, p.sha512]),
    ];
    digests.sort((a, b) => bytewise(a[0], b[0]));
    const sha512Text = digests.map(([file, hex]) => `SHA512 (${file}) = ${hex}\n`).join("");
    await writeDurably(path.join(dir, "SHA512.bz2"), await bzip2(Buffer.from(sha512Text, "utf8"), bzip2Command, signal));
    await syncTree(dir);

    signal?.throwIfAborted();
    await switchSymlink(target, path.relative(path.dirname(target), dir));
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  // Published. What follows must not undo that: a generation that cannot be
  // removed now is removed by a later publication.
  factsByTarget.set(target, seen);
  const warnings: string[] = [];
  await pruneGenerations(generations, name, keep).catch((error: unknown) => {
    warnings.push(`old generations in ${generations} were not all removed: ${(error as Error).message}`);
  });
  return { target, directory: dir, packages, summary, warnings };
}

function generationsDir(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.generations`);
}

function checkPkgname(pkgname: string): void {
  const bad = (problem: string) => new InvalidRepositoryEntry("pkgname", pkgname, problem);
  if (pkgname === "") throw bad("is empty");
  if (pkgname.includes("/") || pkgname.includes("\\")) throw bad("must not contain '/' or '\\'");
  if (pkgname.startsWith(".") || pkgname.startsWith("-")) throw bad("must not start with '.' or '-'");
  if (CONTROL_RE.test(pkgname)) throw bad("must not contain control characters");
  if (Buffer.byteLength(pkgname) > 250) throw bad("is longer than 250 bytes");
}

/** The CATEGORIES of +BUILD_INFO, as directory names; "All" is the packages' own directory, not a link. */
function categoriesOf(buildInfo: string | undefined): string[] {
  const value = parseBuildInfo(buildInfo ?? "").find(([k]) => k === "CATEGORIES")?.[1] ?? "";
  const out: string[] = [];
  for (const category of value.split(/\s+/)) {
    if (category === "" || category === "All" || out.includes(category)) continue;
    if (!CATEGORY_RE.test(category) || category.includes("..")) {
      throw new InvalidRepositoryEntry("category", category, "must be letters, digits, '.', '_', '+' and '-', starting with a letter or digit");
    }
    out.push(category);
  }
  return out;
}

async function refuseNonSymlink(target: string): Promise<void> {
  try {
    const st = await lstat(target);
    if (!st.isSymbolicLink()) throw new RepositoryTargetInvalid(target);
  } catch (error) {
    if (isCode(error, "ENOENT")) return;
    throw error;
  }
}

/** Hard link, so the repository shares the store's bytes; a copy when they are on different file systems. */
async function linkOrCopy(from: string, to: string, pkgname: string): Promise<void> {
  try {
    await link(from, to);
  } catch (error) {
    if (isCode(error, "ENOENT")) throw new RepositoryPackageMissing(pkgname, from, { cause: error });
    if (!isCode(error, "EXDEV", "EPERM", "EMLINK", "ENOTSUP", "EOPNOTSUPP")) throw error;
    try {
      await copyFile(from, to);
    } catch (copyError) {
      if (isCode(copyError, "ENOENT")) throw new RepositoryPackageMissing(pkgname, from, { cause: copyError });
      throw copyError;
    }
  }
}

async function writeDurably(file: string, data: Uint8Array): Promise<void> {
  const handle = await open(file, "wx", 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs the directories of a generation, so the switch never points at entries a crash could lose. */
async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await syncDirectory(path.join(dir, entry.name));
  }
  await syncDirectory(dir);
}

/** Points `target` at `to` by renaming a fresh symlink over it: readers see the old link or the new one. */
async function switchSymlink(target: string, to: string): Promise<void> {
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.switch-${randomBytes(6).toString("hex")}`);
  await symlink(to, temp);
  try {
    await rename(temp, target);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
  await syncDirectory(path.dirname(target));
}

async function pruneGenerations(generations: string, current: string, keep: number): Promise<void> {
  // Names start with a UTC stamp, so their order is their age; the one the
  // target names is never removed, whatever its name says.
  const target = path.join(path.dirname(generations), path.basename(generations).replace(/^\.(.*)\.generations$/, "$1"));
  const live = await readlink(target).then((to) => path.basename(to)).catch(() => current);
  const names = (await readdir(generations)).filter((n) => n !== current && n !== live).sort().reverse();
  for (const old of names.slice(Math.max(0, keep))) {
    await rm(path.join(generations, old), { recursive: true, force: true });
  }
}

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.(\d{3})Z$/, "$1Z");
}

function sha512(data: Uint8Array): string {
  return createHash("sha512").update(data).digest("hex");
}

async function sha512File(file: string): Promise<string> {
  const hash = createHash("sha512");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function isCode(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? "");
}
