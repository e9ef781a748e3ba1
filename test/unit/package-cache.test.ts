import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  createPackageCache,
  InvalidPackageRef,
  PackageDigestMismatch,
  PackageSizeMismatch,
  type PackageFetch,
  type PackageRef,
} from "../../services/builder-agent/package-cache.js";

const tmp = mkdtempSync(join(tmpdir(), "pkgfarm-cache-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

let dirs = 0;
function freshDir(name: string): string {
  return join(tmp, `${name}-${++dirs}`);
}

function refFor(fileName: string, data: Buffer): PackageRef {
  return { fileName, sha256: createHash("sha256").update(data).digest("hex"), sizeBytes: BigInt(data.length) };
}

interface CountingFetch {
  readonly fetch: PackageFetch;
  readonly calls: () => number;
  readonly signals: AbortSignal[];
}

// Serves data in two chunks; with a gate, the second chunk waits for it, so a
// test can line callers up while a download is in progress.
function serving(data: Buffer, gate?: Promise<void>): CountingFetch {
  const signals: AbortSignal[] = [];
  return {
    signals,
    calls: () => signals.length,
    fetch(signal) {
      signals.push(signal);
      return (async function* () {
        const half = Math.floor(data.length / 2);
        yield data.subarray(0, half);
        if (gate !== undefined) await gate;
        yield data.subarray(half);
      })();
    },
  };
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

async function eventually(check: () => void): Promise<void> {
  const deadline = Date.now() + 1000;
  for (;;) {
    try {
      check();
      return;
    } catch (error: unknown) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

const PERL = Buffer.from("perl package bytes ".repeat(1000));
const ZLIB = Buffer.from("zlib package bytes ".repeat(500));

test("fetches once, then serves from the cache (hard linked)", async () => {
  const dir = freshDir("cache");
  const cache = createPackageCache({ dir });
  const ref = refFor("perl-5.38.2.tgz", PERL);
  const source = serving(PERL);

  const destA = join(tmp, "job-a", "depends");
  assert.deepEqual(await cache.provide(ref, destA, source.fetch), { fetched: true });
  assert.deepEqual(readFileSync(join(destA, "perl-5.38.2.tgz")), PERL);
  assert.deepEqual(readdirSync(dir), [`${ref.sha256}.tgz`]);

  const destB = join(tmp, "job-b", "depends");
  assert.deepEqual(await cache.provide(ref, destB, source.fetch), { fetched: false });
  assert.deepEqual(readFileSync(join(destB, "perl-5.38.2.tgz")), PERL);
  assert.equal(source.calls(), 1);

  // Same file system here, so both are links to the cached file, not copies.
  assert.equal(statSync(join(destB, "perl-5.38.2.tgz")).ino, statSync(join(dir, `${ref.sha256}.tgz`)).ino);
  assert.deepEqual(readdirSync(destB), ["perl-5.38.2.tgz"], "no temporary file is left in the destination");
});

test("a new cache over an existing directory finds what is there and drops partial downloads", async () => {
  const dir = freshDir("reuse");
  const ref = refFor("zlib-1.3.tgz", ZLIB);
  await createPackageCache({ dir }).provide(ref, join(tmp, "reuse-a"), serving(ZLIB).fetch);
  writeFileSync(join(dir, `${ref.sha256}.crashed.partial`), "half");

  const again = serving(ZLIB);
  const result = await createPackageCache({ dir }).provide(ref, join(tmp, "reuse-b"), again.fetch);
  assert.deepEqual(result, { fetched: false });
  assert.equal(again.calls(), 0);
  assert.deepEqual(readdirSync(dir), [`${ref.sha256}.tgz`]);
});

test("an existing file at the destination is replaced", async () => {
  const cache = createPackageCache({ dir: freshDir("replace") });
  const dest = join(tmp, "replace-dest");
  mkdirSync(dest, { recursive: true });
  writeFileSync(join(dest, "zlib-1.3.tgz"), "an older zlib");
  await cache.provide(refFor("zlib-1.3.tgz", ZLIB), dest, serving(ZLIB).fetch);
  assert.deepEqual(readFileSync(join(dest, "zlib-1.3.tgz")), ZLIB);
});

test("two concurrent provides of one digest share one fetch", async () => {
  const cache = createPackageCache({ dir: freshDir("shared") });
  const ref = refFor("perl-5.38.2.tgz", PERL);
  const held = gate();
  const first = serving(PERL, held.promise);
  const second = serving(PERL);

  const a = cache.provide(ref, join(tmp, "shared-a"), first.fetch);
  const b = cache.provide(ref, join(tmp, "shared-b"), second.fetch);
  await eventually(() => assert.equal(first.calls() + second.calls(), 1));
  held.open();
  assert.deepEqual(await Promise.all([a, b]), [{ fetched: true }, { fetched: true }]);
  assert.equal(first.calls() + second.calls(), 1);
  assert.deepEqual(readFileSync(join(tmp, "shared-a", "perl-5.38.2.tgz")), PERL);
  assert.deepEqual(readFileSync(join(tmp, "shared-b", "perl-5.38.2.tgz")), PERL);
});

test("one caller aborting does not disturb another waiting on the same fetch", async () => {
  const cache = createPackageCache({ dir: freshDir("abort-one") });
  const ref = refFor("perl-5.38.2.tgz", PERL);
  const held = gate();
  const source = serving(PERL, held.promise);
  const quitter = new AbortController();

  const a = cache.provide(ref, join(tmp, "abort-one-a"), source.fetch, quitter.signal);
  const b = cache.provide(ref, join(tmp, "abort-one-b"), source.fetch);
  await eventually(() => assert.equal(source.calls(), 1));
  quitter.abort(new Error("job cancelled"));
  await assert.rejects(a, /job cancelled/);
  assert.equal(source.signals[0]?.aborted, false, "the fetch goes on for the other caller");
  held.open();
  assert.deepEqual(await b, { fetched: true });
  assert.equal(existsSync(join(tmp, "abort-one-a", "perl-5.38.2.tgz")), false);
  assert.equal(source.calls(), 1);
});

test("when every caller aborts, the fetch is cancelled and nothing is left", async () => {
  const dir = freshDir("abort-all");
  const cache = createPackageCache({ dir });
  const ref = refFor("perl-5.38.2.tgz", PERL);
  const held = gate();
  const source = serving(PERL, held.promise);
  const controller = new AbortController();

  const a = cache.provide(ref, join(tmp, "abort-all-a"), source.fetch, controller.signal);
  await eventually(() => assert.equal(source.calls(), 1));
  controller.abort();
  await assert.rejects(a, { name: "AbortError" });
  assert.equal(source.signals[0]?.aborted, true);
  held.open();

  // A later caller starts afresh rather than joining the cancelled fetch.
  assert.deepEqual(await cache.provide(ref, join(tmp, "abort-all-b"), serving(PERL).fetch), { fetched: true });
  // The cancelled download removes its temporary file on its own schedule.
  await eventually(() => assert.deepEqual(readdirSync(dir), [`${ref.sha256}.tgz`]));
});

test("a digest mismatch throws PackageDigestMismatch and leaves nothing behind", async () => {
  const dir = freshDir("mismatch");
  const cache = createPackageCache({ dir });
  const ref = refFor("perl-5.38.2.tgz", PERL);
  const wrong = Buffer.from(PERL);
  wrong[10] = wrong[10]! ^ 1;
  const actual = createHash("sha256").update(wrong).digest("hex");
  const dest = join(tmp, "mismatch-dest");

  await assert.rejects(cache.provide(ref, dest, serving(wrong).fetch), (error: unknown) => {
    assert.ok(error instanceof PackageDigestMismatch);
    assert.equal(error.name, "PackageDigestMismatch");
    assert.equal(error.expected, ref.sha256);
    assert.equal(error.actual, actual);
    for (const part of ["perl-5.38.2.tgz", ref.sha256, actual]) {
      assert.ok(error.message.includes(part), `message names ${part}: ${error.message}`);
    }
    return true;
  });
  assert.deepEqual(readdirSync(dir), []);
  assert.equal(existsSync(join(dest, "perl-5.38.2.tgz")), false);

  // The failure is not remembered: a good download afterwards is kept.
  assert.deepEqual(await cache.provide(ref, dest, serving(PERL).fetch), { fetched: true });
  assert.deepEqual(readFileSync(join(dest, "perl-5.38.2.tgz")), PERL);
});

test("a download of the wrong length throws PackageSizeMismatch and leaves nothing behind", async () => {
  const dir = freshDir("size");
  const cache = createPackageCache({ dir });
  const ref = refFor("zlib-1.3.tgz", ZLIB);

  await assert.rejects(cache.provide(ref, join(tmp, "size-dest"), serving(ZLIB.subarray(1)).fetch), (error: unknown) => {
    assert.ok(error instanceof PackageSizeMismatch);
    assert.equal(error.actual, ref.sizeBytes - 1n);
    assert.equal(error.complete, true);
    return true;
  });
  const longer = Buffer.concat([ZLIB, Buffer.from("trailing")]);
  await assert.rejects(cache.provide(ref, join(tmp, "size-dest"), serving(longer).fetch), (error: unknown) => {
    assert.ok(error instanceof PackageSizeMismatch);
    assert.equal(error.complete, false);
    assert.match(error.message, /zlib-1\.3\.tgz is at least \d+ bytes, expected \d+/);
    return true;
  });
  assert.deepEqual(readdirSync(dir), []);
  assert.equal(existsSync(join(tmp, "size-dest", "zlib-1.3.tgz")), false);
});

test("bad file names and digests are refused without fetching", async () => {
  const dir = freshDir("refuse");
  const cache = createPackageCache({ dir });
  const good = refFor("zlib-1.3.tgz", ZLIB);
  const source = serving(ZLIB);
  const dest = join(tmp, "refuse-dest");

  const badNames = ["", ".tgz", "../zlib-1.3.tgz", "a/zlib.tgz", "a\\zlib.tgz", "zlib\0.tgz", ".zlib.tgz", "-zlib.tgz", "zlib-1.3.tar", "zlib-1.3"];
  for (const fileName of badNames) {
    await assert.rejects(cache.provide({ ...good, fileName }, dest, source.fetch), (error: unknown) => {
      assert.ok(error instanceof InvalidPackageRef, `${JSON.stringify(fileName)} refused`);
      assert.equal(error.field, "fileName");
      assert.ok(error.message.includes(JSON.stringify(fileName)), error.message);
      return true;
    });
  }
  const badDigests = ["", good.sha256.toUpperCase(), good.sha256.slice(1), `${good.sha256}0`, `${good.sha256.slice(1)}g`, `../${good.sha256.slice(3)}`];
  for (const sha256 of badDigests) {
    await assert.rejects(cache.provide({ ...good, sha256 }, dest, source.fetch), (error: unknown) => {
      assert.ok(error instanceof InvalidPackageRef, `${JSON.stringify(sha256)} refused`);
      assert.equal(error.field, "sha256");
      return true;
    });
  }
  await assert.rejects(cache.provide({ ...good, sizeBytes: -1n }, dest, source.fetch), InvalidPackageRef);
  assert.equal(source.calls(), 0);
  assert.equal(existsSync(dest), false);
});
