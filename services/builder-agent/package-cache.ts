// The package cache keeps the binary packages an agent has downloaded, named
// by content (<dir>/<sha256>.tgz), so the next job that depends on the same
// package gets it without a download. Naming by digest rather than by file
// name is what makes a hit safe: a rebuilt package with the same name has a
// new digest and is fetched again.
//
// A file only gets its final name after its size and SHA-256 have been
// checked and it has been flushed to disk, so a name in the cache is a
// promise about the content: a crash or a bad download leaves at most a
// *.partial file, and those are removed when the cache is first used.
//
// The directory belongs to one cache in one process; two agents sharing it
// would delete each other's downloads in progress.

import { createHash, randomUUID } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, link, mkdir, open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { pathComponentProblem } from "./workdir.js";

/** PackageRef names one binary package and what its bytes must be. */
export interface PackageRef {
  /** Name it gets in the destination directory, e.g. "perl-5.38.2.tgz". */
  readonly fileName: string;
  /** SHA-256 of the file, 64 lower-case hex digits. */
  readonly sha256: string;
  readonly sizeBytes: bigint;
}

/** PackageFetch streams the bytes of one package; it should stop when signal aborts. */
export type PackageFetch = (signal: AbortSignal) => AsyncIterable<Uint8Array>;

/** PackageCache hands out binary packages, downloading each digest once. */
export interface PackageCache {
  /**
   * Makes `<destDir>/<fileName>` a copy (hard link when possible) of the
   * package, fetching it only when the cache lacks that digest. Concurrent
   * calls for one digest share one fetch, made with the first caller's
   * `fetch`; it is cancelled only when every caller waiting on it has
   * aborted. `fetched` is true when this call had to wait for a download.
   *
   * A hard link shares the cached file, so whatever is given destDir must
   * not write to the package; cached files are made read-only for that reason.
   * Throws InvalidPackageRef, PackageSizeMismatch, PackageDigestMismatch, or
   * the signal's reason.
   */
  provide(
    ref: PackageRef,
    destDir: string,
    fetch: PackageFetch,
    signal?: AbortSignal,
  ): Promise<{ fetched: boolean }>;
}

/** InvalidPackageRef: a PackageRef whose name, digest or size cannot be used. */
export class InvalidPackageRef extends Error {
  override readonly name = "InvalidPackageRef";
  constructor(
    readonly field: "fileName" | "sha256" | "sizeBytes",
    readonly value: string,
    readonly problem: string,
  ) {
    super(`package ${field} ${JSON.stringify(value)} is refused: ${problem}`);
  }
}

/** PackageDigestMismatch: a download whose SHA-256 is not the one it was asked for. Nothing was kept. */
export class PackageDigestMismatch extends Error {
  override readonly name = "PackageDigestMismatch";
  constructor(
    readonly fileName: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`download of ${fileName} has SHA-256 ${actual}, expected ${expected}`);
  }
}

/**
 * PackageSizeMismatch: a download of a different length than it was asked
 * for. A download that runs long is stopped at the first byte too many, so
 * `actual` is then a lower bound. Nothing was kept.
 */
export class PackageSizeMismatch extends Error {
  override readonly name = "PackageSizeMismatch";
  constructor(
    readonly fileName: string,
    readonly expected: bigint,
    readonly actual: bigint,
    readonly complete: boolean,
  ) {
    super(`download of ${fileName} is ${complete ? "" : "at least "}${actual} bytes, expected ${expected}`);
  }
}

const PARTIAL = ".partial";
const SHA256_HEX = /^[0-9a-f]{64}$/;
// link() fails with these where a hard link is impossible (another file
// system, no hard link support, too many links); a copy still works there.
const LINK_UNSUPPORTED = new Set(["EXDEV", "EPERM", "EMLINK", "ENOTSUP", "EOPNOTSUPP"]);

interface Download {
  /** Resolves true when this download wrote the file, false when it was already cached. */
  readonly done: Promise<boolean>;
  readonly controller: AbortController;
  waiters: number;
}

/** createPackageCache keeps packages in options.dir, created on first use. */
export function createPackageCache(options: { readonly dir: string }): PackageCache {
  const { dir } = options;
  const downloads = new Map<string, Download>();
  let ready: Promise<void> | undefined;

  const prepare = (): Promise<void> =>
    (ready ??= prepareDir(dir).catch((error: unknown) => {
      // Let the next call try again (say, once a volume is mounted).
      ready = undefined;
      throw error;
    }));

  const startDownload = (ref: PackageRef, fetch: PackageFetch): Download => {
    const controller = new AbortController();
    const download: Download = {
      controller,
      waiters: 0,
      done: fill(dir, ref, fetch, controller.signal).finally(() => {
        if (downloads.get(ref.sha256) === download) downloads.delete(ref.sha256);
      }),
    };
    downloads.set(ref.sha256, download);
    return download;
  };

  // One Download per digest at a time. It checks the cache itself, so a
  // caller that arrives just after another's download finished gets a hit
  // instead of a second download.
  const ensureCached = (ref: PackageRef, fetch: PackageFetch, signal?: AbortSignal): Promise<boolean> => {
    const download = downloads.get(ref.sha256) ?? startDownload(ref, fetch);
    return waitFor(download, signal, () => {
      // The last waiter left: stop the download, and let a later caller
      // start a fresh one rather than join this cancelled one.
      download.controller.abort(signal?.reason);
      if (downloads.get(ref.sha256) === download) downloads.delete(ref.sha256);
    });
  };

  return {
    async provide(ref, destDir, fetch, signal) {
      checkRef(ref);
      signal?.throwIfAborted();
      await prepare();
      signal?.throwIfAborted();
      const fetched = await ensureCached(ref, fetch, signal);
      signal?.throwIfAborted();
      await place(join(dir, `${ref.sha256}.tgz`), destDir, ref.fileName);
      return { fetched };
    },
  };
}

// Waits for a shared download on behalf of one caller, who may abort without
// disturbing the others; onLastLeft runs when no one is waiting any more.
function waitFor(download: Download, signal: AbortSignal | undefined, onLastLeft: () => void): Promise<boolean> {
  // An abort listener added to an already aborted signal never runs.
  if (signal?.aborted) {
    if (download.waiters === 0) onLastLeft();
    return Promise.reject(signal.reason);
  }
  download.waiters++;
  return new Promise<boolean>((resolve, reject) => {
    let left = false;
    const leave = (): boolean => {
      if (left) return false;
      left = true;
      download.waiters--;
      signal?.removeEventListener("abort", onAbort);
      return true;
    };
    const onAbort = (): void => {
      if (!leave()) return;
      if (download.waiters === 0) onLastLeft();
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    download.done.then(
      (fetched) => leave() && resolve(fetched),
      (error: unknown) => leave() && reject(error),
    );
  });
}

async function prepareDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const entry of await readdir(dir)) {
    if (entry.endsWith(PARTIAL)) await rm(join(dir, entry), { force: true });
  }
}

// Downloads ref into <dir>/<sha256>.tgz unless it is already there.
async function fill(
  dir: string,
  ref: PackageRef,
  fetch: PackageFetch,
  signal: AbortSignal,
): Promise<boolean> {
  const path = join(dir, `${ref.sha256}.tgz`);
  if (await hasSize(path, ref.sizeBytes)) return false;
  const temp = join(dir, `${ref.sha256}.${randomUUID()}${PARTIAL}`);
  const handle = await open(temp, "wx");
  let closed = false;
  let renamed = false;
  try {
    const hash = createHash("sha256");
    let size = 0n;
    for await (const chunk of fetch(signal)) {
      signal.throwIfAborted();
      size += BigInt(chunk.byteLength);
      if (size > ref.sizeBytes) throw new PackageSizeMismatch(ref.fileName, ref.sizeBytes, size, false);
      hash.update(chunk);
      await writeAll(handle, chunk);
    }
    signal.throwIfAborted();
    if (size !== ref.sizeBytes) throw new PackageSizeMismatch(ref.fileName, ref.sizeBytes, size, true);
    const actual = hash.digest("hex");
    if (actual !== ref.sha256) throw new PackageDigestMismatch(ref.fileName, ref.sha256, actual);
    // Flushed before it gets its name, so a crash cannot leave a name that
    // promises content the disk does not have. Read-only so a build writing
    // through a hard link fails instead of corrupting the cache.
    await handle.datasync();
    await handle.chmod(0o444);
    await handle.close();
    closed = true;
    await rename(temp, path);
    renamed = true;
    return true;
  } finally {
    if (!closed) await handle.close().catch(() => undefined);
    if (!renamed) await rm(temp, { force: true });
  }
}

// Puts a copy of cached at <destDir>/<fileName> by way of a temporary name,
// so an existing file is replaced atomically and no reader ever sees half a
// copy.
async function place(cached: string, destDir: string, fileName: string): Promise<void> {
  await mkdir(destDir, { recursive: true });
  const temp = join(destDir, `.${fileName}.${randomUUID()}${PARTIAL}`);
  try {
    try {
      await link(cached, temp);
    } catch (error: unknown) {
      if (!LINK_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
      await copyFile(cached, temp, constants.COPYFILE_FICLONE);
    }
    await rename(temp, join(destDir, fileName));
  } finally {
    await rm(temp, { force: true });
  }
}

async function hasSize(path: string, size: bigint): Promise<boolean> {
  try {
    return (await stat(path, { bigint: true })).size === size;
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let offset = 0; offset < chunk.byteLength; ) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

function checkRef(ref: PackageRef): void {
  const nameProblem =
    pathComponentProblem(ref.fileName) ?? (ref.fileName.endsWith(".tgz") ? undefined : 'it does not end in ".tgz"');
  if (nameProblem !== undefined) throw new InvalidPackageRef("fileName", ref.fileName, nameProblem);
  if (!SHA256_HEX.test(ref.sha256)) {
    throw new InvalidPackageRef("sha256", ref.sha256, "it is not 64 lower-case hex digits");
  }
  if (typeof ref.sizeBytes !== "bigint" || ref.sizeBytes < 0n) {
    throw new InvalidPackageRef("sizeBytes", String(ref.sizeBytes), "it is not a byte count");
  }
}
