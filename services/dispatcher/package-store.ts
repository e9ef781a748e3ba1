/**
 * PackageStore is the dispatcher's binary package directory, laid out the way
 * pkgsrc lays out PACKAGES: `<root>/<platform>/All/<fileName>`, so the same
 * tree can be served to pkgin or handed to pkg_summary tools unchanged.
 *
 * An upload is written to a temp file in the same All/ directory and renamed
 * into place only after its size and SHA-256 check out. Rename within one
 * directory is atomic, so a reader (or an agent downloading a dependency)
 * sees either the old package or the new one, never a half-written file; the
 * temp name starts with `.upload-` so a listing of *.tgz never picks it up.
 */

import { createHash, randomBytes } from "node:crypto";
import { readdirSync, statSync, unlinkSync } from "node:fs";
import { mkdir, open, rename, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";

export interface StoredPackage {
  /** Absolute path of the file. */
  readonly path: string;
  readonly fileName: string;
  /** SHA-256 of the whole file, lower-case hex. */
  readonly sha256: string;
  readonly sizeBytes: bigint;
}

export interface PackageUpload {
  /** Appends a chunk; throws PackageTooLarge once more than the announced size arrives. */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Verifies size and SHA-256, fsyncs, renames into place (atomically
   * replacing an older file), returns what is stored. On mismatch throws
   * PackageDigestMismatch / PackageSizeMismatch and removes the temp file.
   */
  commit(): Promise<StoredPackage>;
  /** Drops the temp file; safe to call after commit or twice. */
  abort(): Promise<void>;
}

export interface UploadMeta {
  readonly platform: string;
  readonly fileName: string;
  /** Expected SHA-256, lower-case hex. */
  readonly sha256: string;
  /** Announced size; the upload must deliver exactly this many bytes. */
  readonly sizeBytes: bigint;
}

export interface PackageStore {
  /** Absolute path of the store's root. */
  readonly root: string;
  beginUpload(meta: UploadMeta): Promise<PackageUpload>;
  /** Metadata of a stored package, or undefined. The digest is computed once and remembered (keyed by path + mtime + size). */
  stat(platform: string, fileName: string): Promise<StoredPackage | undefined>;
  /**
   * Reads a stored package as chunks (≤ 256 KiB each); throws PackageNotFound.
   * An abort throws the signal's reason rather than ending quietly: a
   * download that just stopped would look like a complete, shorter package.
   */
  read(platform: string, fileName: string, signal?: AbortSignal): AsyncIterable<Uint8Array>;
  /** Platform's package directory (the `PACKAGES` dir, holding All/). */
  platformDir(platform: string): string;
}

export interface PackageStoreOptions {
  readonly root: string;
  /** Largest package accepted, in bytes; default 8 GiB. */
  readonly maxPackageBytes?: bigint;
  /** Temp files untouched for longer than this are removed when the store is created; default one hour. */
  readonly staleUploadMs?: number;
  /** Clock for the stale-upload sweep; default Date.now. */
  readonly now?: () => number;
}

// ---------------------------------------------------------------------------
// Errors. The gRPC layer maps each to a code; nothing here knows about codes.

/**
 * InvalidPackageName: a platform, file name, digest or size that cannot be
 * taken as given. Names end up as path segments, so anything that could
 * climb out of the store (`..`, `/`) or hide in it (a leading `.`) is refused.
 */
export class InvalidPackageName extends Error {
  override readonly name = "InvalidPackageName";
  constructor(
    readonly field: "platform" | "fileName" | "sha256" | "sizeBytes",
    readonly value: string,
    readonly problem: string,
  ) {
    super(`invalid ${field} ${JSON.stringify(value.length > 300 ? `${value.slice(0, 300)}...` : value)}: ${problem}`);
  }
}

/** PackageTooLarge: a package over the store's limit, or an upload that sent more than it announced. */
export class PackageTooLarge extends Error {
  override readonly name = "PackageTooLarge";
  constructor(
    readonly fileName: string,
    readonly sizeBytes: bigint,
    readonly limitBytes: bigint,
    /** "store-limit": announced size over maxPackageBytes; "announced": more bytes arrived than announced. */
    readonly limit: "store-limit" | "announced",
  ) {
    super(
      limit === "store-limit"
        ? `${fileName}: ${sizeBytes} bytes is more than the store accepts (maxPackageBytes ${limitBytes})`
        : `${fileName}: more than the announced ${limitBytes} bytes arrived (${sizeBytes} so far)`,
    );
  }
}

/** PackageSizeMismatch: the upload was committed with fewer bytes than it announced. */
export class PackageSizeMismatch extends Error {
  override readonly name = "PackageSizeMismatch";
  constructor(
    readonly fileName: string,
    readonly expectedBytes: bigint,
    readonly actualBytes: bigint,
  ) {
    super(`${fileName}: announced ${expectedBytes} bytes but ${actualBytes} arrived; the package was not stored`);
  }
}

/** PackageDigestMismatch: the bytes that arrived do not have the announced SHA-256. */
export class PackageDigestMismatch extends Error {
  override readonly name = "PackageDigestMismatch";
  constructor(
    readonly fileName: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
  ) {
    super(`${fileName}: announced SHA-256 ${expectedSha256} but the bytes that arrived hash to ${actualSha256}; the package was not stored`);
  }
}

/** PackageNotFound: no such package in the platform's All/ directory. */
export class PackageNotFound extends Error {
  override readonly name = "PackageNotFound";
  constructor(
    readonly platform: string,
    readonly fileName: string,
    options?: { cause?: unknown },
  ) {
    super(`no package ${fileName} for platform ${platform}`, options);
  }
}

/** UploadClosed: write() or commit() on an upload that was already committed or aborted. */
export class UploadClosed extends Error {
  override readonly name = "UploadClosed";
  constructor(
    readonly fileName: string,
    readonly state: "committing" | "committed" | "aborted",
  ) {
    super(`the upload of ${fileName} is already ${state}`);
  }
}

// ---------------------------------------------------------------------------

const CHUNK_BYTES = 256 * 1024;
const HASH_READ_BYTES = 1024 * 1024;
const WRITEBACK_EVERY_BYTES = 32n * 1024n * 1024n;
const DEFAULT_MAX_PACKAGE_BYTES = 8n * 1024n * 1024n * 1024n;
const DEFAULT_STALE_UPLOAD_MS = 60 * 60 * 1000;
const TEMP_PREFIX = ".upload-";
const PLATFORM_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
// NUL and the other control characters: no tool that reads a package
// directory expects them in a name, and they make log lines lie.
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

function checkPlatform(platform: string): void {
  if (!PLATFORM_RE.test(platform)) {
    throw new InvalidPackageName("platform", platform, "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'");
  }
  if (platform.includes("..")) throw new InvalidPackageName("platform", platform, "must not contain '..'");
  if (Buffer.byteLength(platform) > 255) throw new InvalidPackageName("platform", platform, "is longer than 255 bytes");
}

function checkFileName(fileName: string): void {
  const bad = (problem: string) => new InvalidPackageName("fileName", fileName, problem);
  if (fileName.includes("/") || fileName.includes("\\")) throw bad("must not contain '/' or '\\'");
  if (CONTROL_RE.test(fileName)) throw bad("must not contain NUL or control characters");
  if (fileName.startsWith(".")) throw bad("must not start with '.'");
  if (fileName.startsWith("-")) throw bad("must not start with '-'");
  if (!fileName.endsWith(".tgz")) throw bad("must end with .tgz");
  if (Buffer.byteLength(fileName) > 255) throw bad("is longer than 255 bytes");
}

export function createPackageStore(options: PackageStoreOptions): PackageStore {
  const root = path.resolve(options.root);
  const maxPackageBytes = options.maxPackageBytes ?? DEFAULT_MAX_PACKAGE_BYTES;
  const digests = createDigestCache();

  // Synchronous on purpose: it runs once, before the store hands out any
  // upload, so it can never race a live temp file of this process.
  sweepStaleUploads(root, options.staleUploadMs ?? DEFAULT_STALE_UPLOAD_MS, (options.now ?? Date.now)());

  const platformDir = (platform: string) => {
    checkPlatform(platform);
    return path.join(root, platform);
  };
  const packagePath = (platform: string, fileName: string) => {
    checkFileName(fileName);
    return path.join(platformDir(platform), "All", fileName);
  };

  return {
    root,
    platformDir,

    async beginUpload(meta) {
      const finalPath = packagePath(meta.platform, meta.fileName);
      if (!SHA256_RE.test(meta.sha256)) throw new InvalidPackageName("sha256", meta.sha256, "must be 64 lower-case hex digits");
      if (meta.sizeBytes < 0n) throw new InvalidPackageName("sizeBytes", String(meta.sizeBytes), "must not be negative");
      if (meta.sizeBytes > maxPackageBytes) throw new PackageTooLarge(meta.fileName, meta.sizeBytes, maxPackageBytes, "store-limit");
      const dir = path.dirname(finalPath);
      await mkdir(dir, { recursive: true });
      const tempPath = path.join(dir, `${TEMP_PREFIX}${randomBytes(12).toString("hex")}`);
      const handle = await open(tempPath, "wx", 0o644);
      return createUpload({ ...meta, finalPath, tempPath, handle, digests });
    },

    async stat(platform, fileName) {
      const file = packagePath(platform, fileName);
      const handle = await openIfExists(file);
      if (handle === undefined) return undefined;
      try {
        const st = await handle.stat({ bigint: true });
        if (!st.isFile()) return undefined;
        const sha256 = await digests.get(file, st, () => hashHandle(handle));
        return { path: file, fileName, sha256, sizeBytes: st.size };
      } finally {
        await handle.close();
      }
    },

    read(platform, fileName, signal) {
      // Validated here, not in the generator, so a bad name fails at the call.
      return readChunks(packagePath(platform, fileName), platform, fileName, signal);
    },
  };
}

// ---------------------------------------------------------------------------
// Uploads

interface UploadState extends UploadMeta {
  readonly finalPath: string;
  readonly tempPath: string;
  readonly handle: FileHandle;
  readonly digests: DigestCache;
}

function createUpload(u: UploadState): PackageUpload {
  const hash = createHash("sha256");
  let received = 0n;
  let state: "open" | "committing" | "committed" | "aborted" = "open";
  // Set when a write or the commit failed; every later call reports it again.
  let failure: unknown;
  let discarded = false;
  let handleClosed = false;
  // Writeback is started while bytes still arrive, so commit's fsync finds
  // little left to flush and runs in the shadow of hashing instead of after
  // it, and an 8 GB upload never piles up gigabytes of dirty pages.
  let writeback: Promise<void> | undefined;
  let unflushed = 0n;
  const startWriteback = () => {
    if (writeback !== undefined || unflushed < WRITEBACK_EVERY_BYTES) return;
    unflushed = 0n;
    writeback = u.handle.datasync().then(
      () => {
        writeback = undefined;
      },
      (error: unknown) => {
        writeback = undefined;
        failure ??= error;
      },
    );
  };
  // Operations run one after another even when the caller does not await,
  // so chunks land in order and close() never races a write.
  let queue: Promise<unknown> = Promise.resolve();
  const enqueue = <T>(op: () => Promise<T>): Promise<T> => {
    const result = queue.then(op);
    queue = result.catch(() => {});
    return result;
  };

  const discard = async () => {
    if (discarded) return;
    discarded = true;
    await writeback;
    if (!handleClosed) {
      handleClosed = true;
      await u.handle.close().catch(() => {});
    }
    await unlink(u.tempPath).catch((error: unknown) => {
      if (!isCode(error, "ENOENT")) throw error;
    });
  };
  const fail = async (error: unknown): Promise<never> => {
    failure ??= error;
    await discard();
    throw error;
  };

  return {
    write(chunk) {
      if (failure !== undefined) return Promise.reject(failure);
      if (state !== "open") return Promise.reject(new UploadClosed(u.fileName, state));
      return enqueue(async () => {
        if (failure !== undefined) return fail(failure);
        if (state === "aborted") throw new UploadClosed(u.fileName, state);
        const next = received + BigInt(chunk.byteLength);
        if (next > u.sizeBytes) return fail(new PackageTooLarge(u.fileName, next, u.sizeBytes, "announced"));
        received = next;
        try {
          // The write runs on libuv's thread pool while this thread hashes
          // the same bytes: an upload takes about as long as SHA-256 alone.
          const written = writeAll(u.handle, chunk);
          hash.update(chunk);
          await written;
        } catch (error) {
          return fail(error);
        }
        unflushed += BigInt(chunk.byteLength);
        startWriteback();
      });
    },

    commit() {
      if (failure !== undefined) return Promise.reject(failure);
      if (state !== "open") return Promise.reject(new UploadClosed(u.fileName, state));
      state = "committing";
      return enqueue(async () => {
        if (failure !== undefined) return fail(failure);
        if (received !== u.sizeBytes) return fail(new PackageSizeMismatch(u.fileName, u.sizeBytes, received));
        const actual = hash.digest("hex");
        if (actual !== u.sha256) return fail(new PackageDigestMismatch(u.fileName, u.sha256, actual));
        try {
          await writeback;
          if (failure !== undefined) throw failure;
          await u.handle.sync();
          // Taken from the handle, not the path: after the rename another
          // upload may already have replaced the path, and the cache must
          // only ever pair a digest with the file it was computed from.
          const st = await u.handle.stat({ bigint: true });
          handleClosed = true;
          await u.handle.close();
          await rename(u.tempPath, u.finalPath);
          discarded = true;
          await syncDirectory(path.dirname(u.finalPath));
          u.digests.remember(u.finalPath, st, actual);
        } catch (error) {
          state = "aborted";
          return fail(error);
        }
        state = "committed";
        return { path: u.finalPath, fileName: u.fileName, sha256: actual, sizeBytes: received };
      });
    },

    async abort() {
      if (state === "open") state = "aborted";
      // Waits for a write or commit in flight: closing the handle under a
      // write would turn a clean abort into EBADF.
      await queue;
      if (state !== "committed") await discard();
    },
  };
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset, null);
    offset += bytesWritten;
  }
}

/** Makes a rename durable; skipped where directories cannot be fsynced. */
export async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, "r");
    await handle.sync();
  } catch (error) {
    if (!isCode(error, "EISDIR", "EINVAL", "EPERM", "EBADF", "EACCES")) throw error;
  } finally {
    await handle?.close();
  }
}

function sweepStaleUploads(root: string, staleMs: number, now: number): void {
  for (const platform of listDir(root)) {
    const allDir = path.join(root, platform, "All");
    for (const name of listDir(allDir)) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      const file = path.join(allDir, name);
      try {
        if (now - statSync(file).mtimeMs > staleMs) unlinkSync(file);
      } catch (error) {
        if (!isCode(error, "ENOENT")) throw error;
      }
    }
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    if (isCode(error, "ENOENT", "ENOTDIR")) return [];
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Reading

async function* readChunks(file: string, platform: string, fileName: string, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  signal?.throwIfAborted();
  const handle = await openIfExists(file);
  if (handle === undefined) throw new PackageNotFound(platform, fileName);
  try {
    for (;;) {
      signal?.throwIfAborted();
      // A fresh buffer per chunk: the consumer may hold on to what it got.
      const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, null);
      if (bytesRead === 0) return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

async function openIfExists(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, "r");
  } catch (error) {
    if (isCode(error, "ENOENT", "ENOTDIR")) return undefined;
    throw error;
  }
}

async function hashHandle(handle: FileHandle): Promise<string> {
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(HASH_READ_BYTES);
  let position = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) return hash.digest("hex");
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
}

// ---------------------------------------------------------------------------
// Digest cache

interface FileIdentity {
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
}

interface DigestCache {
  /** The file's digest, computed by `compute` only when nothing remembered matches. */
  get(file: string, st: FileIdentity, compute: () => Promise<string>): Promise<string>;
  remember(file: string, st: FileIdentity, sha256: string): void;
}

/**
 * Hashing a multi-gigabyte package takes seconds, and agents ask for the
 * same dependencies over and over. A digest is reused while the path still
 * names the same inode with the same size and mtime; the inode is part of
 * the key because an atomic replacement can land within one mtime tick.
 * One entry per path, so the cache is bounded by the directory itself.
 */
function createDigestCache(): DigestCache {
  const known = new Map<string, { key: string; sha256: string }>();
  const computing = new Map<string, Promise<string>>();
  const keyOf = (file: string, st: FileIdentity) => `${file}\u0000${st.ino}\u0000${st.size}\u0000${st.mtimeNs}`;
  return {
    get(file, st, compute) {
      const key = keyOf(file, st);
      const hit = known.get(file);
      if (hit?.key === key) return Promise.resolve(hit.sha256);
      let pending = computing.get(key);
      if (pending === undefined) {
        pending = compute().then(
          (sha256) => {
            computing.delete(key);
            known.set(file, { key, sha256 });
            return sha256;
          },
          (error: unknown) => {
            computing.delete(key);
            throw error;
          },
        );
        computing.set(key, pending);
      }
      return pending;
    },
    remember(file, st, sha256) {
      known.set(file, { key: keyOf(file, st), sha256 });
    },
  };
}

function isCode(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? "");
}
