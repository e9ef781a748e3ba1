import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import {
  createPackageStore,
  InvalidPackageName,
  PackageDigestMismatch,
  PackageNotFound,
  PackageSizeMismatch,
  PackageTooLarge,
  UploadClosed,
  type PackageStore,
} from "../../services/dispatcher/package-store.js";

const PLATFORM = "NetBSD-10.0-x86_64";

let root: string;
let store: PackageStore;

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "pkgfarm-package-store-"));
  store = createPackageStore({ root });
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const allDir = () => path.join(root, PLATFORM, "All");
const tempFiles = () => (existsSync(allDir()) ? readdirSync(allDir()).filter((name) => name.startsWith(".upload-")) : []);

async function upload(fileName: string, bytes: Uint8Array, chunkBytes = 1000) {
  const up = await store.beginUpload({ platform: PLATFORM, fileName, sha256: sha256(bytes), sizeBytes: BigInt(bytes.length) });
  for (let i = 0; i < bytes.length; i += chunkBytes) await up.write(bytes.subarray(i, i + chunkBytes));
  return up.commit();
}

async function readAll(iterable: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of iterable) chunks.push(chunk);
  return Buffer.concat(chunks);
}

test("a committed upload lands in <platform>/All with its bytes, and no temp file is left", async () => {
  const bytes = randomBytes(10_000);
  const stored = await upload("gmake-4.4.1.tgz", bytes);
  const file = path.join(allDir(), "gmake-4.4.1.tgz");
  assert.deepEqual(stored, { path: file, fileName: "gmake-4.4.1.tgz", sha256: sha256(bytes), sizeBytes: 10_000n });
  assert.deepEqual(readFileSync(file), bytes);
  assert.deepEqual(tempFiles(), []);
  assert.equal(store.platformDir(PLATFORM), path.join(root, PLATFORM));
});

test("chunks written without awaiting land in order", async () => {
  const bytes = randomBytes(50_000);
  const up = await store.beginUpload({ platform: PLATFORM, fileName: "a-1.tgz", sha256: sha256(bytes), sizeBytes: 50_000n });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < bytes.length; i += 777) writes.push(up.write(bytes.subarray(i, i + 777)));
  const stored = await up.commit();
  await Promise.all(writes);
  assert.equal(stored.sha256, sha256(bytes));
  assert.deepEqual(readFileSync(stored.path), bytes);
});

test("a digest mismatch throws PackageDigestMismatch and leaves neither the package nor a temp file", async () => {
  const bytes = randomBytes(4096);
  const wrong = sha256(Buffer.from("something else"));
  const up = await store.beginUpload({ platform: PLATFORM, fileName: "bad-1.0.tgz", sha256: wrong, sizeBytes: 4096n });
  assert.equal(tempFiles().length, 1);
  await up.write(bytes);
  await assert.rejects(up.commit(), (error: unknown) => {
    assert.ok(error instanceof PackageDigestMismatch);
    assert.equal(error.expectedSha256, wrong);
    assert.equal(error.actualSha256, sha256(bytes));
    return true;
  });
  assert.equal(existsSync(path.join(allDir(), "bad-1.0.tgz")), false);
  assert.deepEqual(tempFiles(), []);
  await up.abort(); // still safe
  await assert.rejects(up.write(bytes), PackageDigestMismatch);
});

test("too few bytes at commit throw PackageSizeMismatch", async () => {
  const bytes = randomBytes(100);
  const up = await store.beginUpload({ platform: PLATFORM, fileName: "short-1.0.tgz", sha256: sha256(bytes), sizeBytes: 101n });
  await up.write(bytes);
  await assert.rejects(up.commit(), PackageSizeMismatch);
  assert.deepEqual(readdirSync(allDir()), []);
});

test("more bytes than announced throw PackageTooLarge and drop the temp file", async () => {
  const bytes = randomBytes(100);
  const up = await store.beginUpload({ platform: PLATFORM, fileName: "long-1.0.tgz", sha256: sha256(bytes), sizeBytes: 100n });
  await up.write(bytes.subarray(0, 60));
  await assert.rejects(up.write(bytes.subarray(0, 60)), (error: unknown) => error instanceof PackageTooLarge && error.limit === "announced");
  assert.deepEqual(tempFiles(), []);
  await assert.rejects(up.commit(), PackageTooLarge);
  await up.abort();
});

test("an announced size over maxPackageBytes is refused before anything is written", async () => {
  const small = createPackageStore({ root, maxPackageBytes: 1000n });
  const meta = { platform: PLATFORM, fileName: "huge-1.0.tgz", sha256: "0".repeat(64) };
  await assert.rejects(small.beginUpload({ ...meta, sizeBytes: 1001n }), (error: unknown) => error instanceof PackageTooLarge && error.limit === "store-limit");
  await assert.rejects(store.beginUpload({ ...meta, sizeBytes: 8n * 1024n ** 3n + 1n }), PackageTooLarge);
  assert.equal(existsSync(allDir()), false);
});

test("bad names, digests and sizes throw InvalidPackageName naming the value", async () => {
  const ok = { platform: PLATFORM, fileName: "ok-1.0.tgz", sha256: "a".repeat(64), sizeBytes: 1n };
  const cases: [Partial<typeof ok>, string][] = [
    [{ fileName: "../x.tgz" }, "../x.tgz"],
    [{ fileName: ".hidden.tgz" }, ".hidden.tgz"],
    [{ fileName: "a/b.tgz" }, "a/b.tgz"],
    [{ fileName: "a\\b.tgz" }, "a\\\\b.tgz"],
    [{ fileName: "nul\u0000.tgz" }, "nul\\u0000.tgz"],
    [{ fileName: "-rf.tgz" }, "-rf.tgz"],
    [{ fileName: "gmake-4.4.1.tar" }, "gmake-4.4.1.tar"],
    [{ fileName: `${"x".repeat(252)}.tgz` }, "255 bytes"],
    [{ platform: ".." }, '".."'],
    [{ platform: "a..b" }, "a..b"],
    [{ platform: "" }, 'platform ""'],
    [{ platform: "Net/BSD" }, "Net/BSD"],
    [{ sha256: "A".repeat(64) }, "A".repeat(64)],
    [{ sha256: "abc" }, '"abc"'],
    [{ sizeBytes: -1n }, '"-1"'],
  ];
  for (const [override, mentioned] of cases) {
    await assert.rejects(store.beginUpload({ ...ok, ...override }), (error: unknown) => {
      assert.ok(error instanceof InvalidPackageName, `${JSON.stringify(override, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v))} was accepted`);
      assert.ok(error.message.includes(mentioned), `"${error.message}" does not mention ${mentioned}`);
      return true;
    });
  }
  assert.throws(() => store.read("..", "x.tgz"), InvalidPackageName);
  await assert.rejects(store.stat(PLATFORM, "../x.tgz"), InvalidPackageName);
  assert.throws(() => store.platformDir("../etc"), InvalidPackageName);
  assert.deepEqual(readdirSync(root), []);
});

test("replacing a package is atomic: the old file stays whole until the rename, and open readers keep it", async () => {
  const v1 = randomBytes(300_000);
  const v2 = randomBytes(200_000);
  await upload("py313-six-1.17.0.tgz", v1);
  const file = path.join(allDir(), "py313-six-1.17.0.tgz");

  const up = await store.beginUpload({ platform: PLATFORM, fileName: "py313-six-1.17.0.tgz", sha256: sha256(v2), sizeBytes: BigInt(v2.length) });
  await up.write(v2);
  // Fully written but not committed: the stored package is still v1.
  assert.deepEqual(readFileSync(file), v1);
  // A download that began before the commit gets all of v1.
  const reader = store.read(PLATFORM, "py313-six-1.17.0.tgz")[Symbol.asyncIterator]();
  const first = await reader.next();
  assert.equal(first.done, false);
  await up.commit();
  const rest: Uint8Array[] = [first.value as Uint8Array];
  for (let r = await reader.next(); !r.done; r = await reader.next()) rest.push(r.value);
  assert.deepEqual(Buffer.concat(rest), v1);

  assert.deepEqual(readFileSync(file), v2);
  assert.equal((await store.stat(PLATFORM, "py313-six-1.17.0.tgz"))?.sha256, sha256(v2));
  assert.deepEqual(readdirSync(allDir()), ["py313-six-1.17.0.tgz"]);
});

test("read streams the stored bytes back in chunks of at most 256 KiB", async () => {
  const bytes = randomBytes(700_000);
  await upload("big-1.0.tgz", bytes, 65_536);
  const chunks: Uint8Array[] = [];
  for await (const chunk of store.read(PLATFORM, "big-1.0.tgz")) chunks.push(chunk);
  assert.ok(chunks.every((chunk) => chunk.byteLength <= 256 * 1024));
  assert.ok(chunks.length >= 3);
  assert.deepEqual(Buffer.concat(chunks), bytes);
});

test("read of a missing package throws PackageNotFound; an aborted read throws", async () => {
  await assert.rejects(readAll(store.read(PLATFORM, "missing-1.0.tgz")), PackageNotFound);
  await upload("here-1.0.tgz", randomBytes(600_000), 100_000);
  const controller = new AbortController();
  const chunks: Uint8Array[] = [];
  await assert.rejects(
    (async () => {
      for await (const chunk of store.read(PLATFORM, "here-1.0.tgz", controller.signal)) {
        chunks.push(chunk);
        controller.abort();
      }
    })(),
    { name: "AbortError" },
  );
  assert.equal(chunks.length, 1);
});

test("stat returns the digest, computes it once, and recomputes when the file changes", async () => {
  assert.equal(await store.stat(PLATFORM, "nothing-1.0.tgz"), undefined);
  const bytes = randomBytes(5000);
  const file = path.join(allDir(), "x-1.0.tgz");
  mkdirSync(allDir(), { recursive: true });
  writeFileSync(file, bytes); // put there by hand, as pkg_* tools would
  // A whole-second mtime, so setting it again below restores it exactly.
  const mtime = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
  utimesSync(file, mtime, mtime);
  const fresh = createPackageStore({ root });
  const first = await fresh.stat(PLATFORM, "x-1.0.tgz");
  assert.deepEqual(first, { path: file, fileName: "x-1.0.tgz", sha256: sha256(bytes), sizeBytes: 5000n });

  // Same inode, size and mtime: the remembered digest is used, not the bytes.
  writeFileSync(file, randomBytes(5000));
  utimesSync(file, mtime, mtime);
  assert.equal((await fresh.stat(PLATFORM, "x-1.0.tgz"))?.sha256, sha256(bytes));

  // A new mtime means new content: hashed again.
  const changed = randomBytes(5000);
  writeFileSync(file, changed);
  utimesSync(file, mtime, new Date(mtime.getTime() + 5000));
  assert.equal((await fresh.stat(PLATFORM, "x-1.0.tgz"))?.sha256, sha256(changed));

  // An upload primes the cache with the digest it already computed.
  const uploaded = await upload("y-1.0.tgz", bytes);
  assert.deepEqual(await store.stat(PLATFORM, "y-1.0.tgz"), uploaded);
});

test("abort drops the temp file, is safe twice and after commit, and closes the upload", async () => {
  const bytes = randomBytes(100);
  const up = await store.beginUpload({ platform: PLATFORM, fileName: "gone-1.0.tgz", sha256: sha256(bytes), sizeBytes: 100n });
  await up.write(bytes);
  await up.abort();
  await up.abort();
  assert.deepEqual(readdirSync(allDir()), []);
  await assert.rejects(up.write(bytes), UploadClosed);
  await assert.rejects(up.commit(), UploadClosed);

  const done = await store.beginUpload({ platform: PLATFORM, fileName: "kept-1.0.tgz", sha256: sha256(bytes), sizeBytes: 100n });
  await done.write(bytes);
  await done.commit();
  await done.abort();
  assert.deepEqual(readdirSync(allDir()), ["kept-1.0.tgz"]);
  await assert.rejects(done.commit(), UploadClosed);
});

test("creating the store sweeps .upload-* files older than an hour and keeps fresh ones", () => {
  mkdirSync(allDir(), { recursive: true });
  const stale = path.join(allDir(), ".upload-stale");
  const fresh = path.join(allDir(), ".upload-fresh");
  const pkg = path.join(allDir(), "old-1.0.tgz");
  for (const file of [stale, fresh, pkg]) writeFileSync(file, "x");
  const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
  utimesSync(stale, twoHoursAgo, twoHoursAgo);
  utimesSync(pkg, twoHoursAgo, twoHoursAgo);
  createPackageStore({ root });
  assert.deepEqual(readdirSync(allDir()).sort(), [".upload-fresh", "old-1.0.tgz"]);
});
