import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import {
  createLogStore,
  InvalidLogName,
  InvalidLogOffset,
  LogNotFound,
  LogStoreClosed,
  type LogChunkAt,
  type LogStore,
} from "../../services/dispatcher/log-store.js";

const BUILD = "b-20261125-1";
const PKG = "gmake-4.4.1";

let root: string;
let logs: LogStore;

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), "pkgfarm-log-store-"));
  logs = createLogStore({ root });
});

afterEach(async () => {
  await logs.close();
  rmSync(root, { recursive: true, force: true });
});

const text = (s: string) => Buffer.from(s);
const logFile = (pkgname = PKG) => path.join(root, "logs", BUILD, `${pkgname}.log`);

async function collect(iterable: AsyncIterable<LogChunkAt>): Promise<LogChunkAt[]> {
  const items: LogChunkAt[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

const joined = (items: LogChunkAt[]) => Buffer.concat(items.map((item) => item.data)).toString();

/** Checks that each item starts where the previous one ended. */
function assertContiguous(items: LogChunkAt[], from: bigint) {
  let expected = from;
  for (const item of items) {
    assert.equal(item.offset, expected);
    expected += BigInt(item.data.byteLength);
  }
}

test("logRef is the path relative to the root", () => {
  assert.equal(logs.logRef(BUILD, PKG), `logs/${BUILD}/${PKG}.log`);
  assert.equal(logs.logRef(BUILD, "libsigc++-2.12.1"), `logs/${BUILD}/libsigc++-2.12.1.log`);
});

test("appends made without awaiting land in call order", async () => {
  const pending: Promise<void>[] = [logs.begin(BUILD, PKG, "attempt 1 on agent a1")];
  const expected: string[] = ["=== attempt 1 on agent a1 ===\n"];
  for (let i = 0; i < 500; i++) {
    const line = `line ${i} ${"x".repeat(i % 37)}\n`;
    expected.push(line);
    pending.push(logs.append(BUILD, PKG, text(line)));
  }
  pending.push(logs.finish(BUILD, PKG));
  await Promise.all(pending);
  assert.equal(readFileSync(logFile(), "utf8"), expected.join(""));
  const items = await collect(logs.read(BUILD, PKG, {}));
  assert.equal(joined(items), expected.join(""));
  assertContiguous(items, 0n);
});

test("read starts at the given offset and reports offsets", async () => {
  await logs.begin(BUILD, PKG, "attempt 1 on agent a1");
  const header = "=== attempt 1 on agent a1 ===\n";
  await logs.append(BUILD, PKG, text("0123456789"));
  const from = BigInt(header.length + 4);
  const items = await collect(logs.read(BUILD, PKG, { offset: from }));
  assert.equal(items[0]?.offset, from);
  assert.equal(joined(items), "456789");
  assert.deepEqual(await collect(logs.read(BUILD, PKG, { offset: 10_000n })), []);
  assert.throws(() => logs.read(BUILD, PKG, { offset: -1n }), InvalidLogOffset);
});

test("a follower sees later appends and ends at finish", async () => {
  await logs.begin(BUILD, PKG, "attempt 1 on agent a1");
  const seen: string[] = [];
  const follower = (async () => {
    const items: LogChunkAt[] = [];
    for await (const item of logs.read(BUILD, PKG, { follow: true })) {
      items.push(item);
      seen.push(Buffer.from(item.data).toString());
    }
    return items;
  })();

  await waitFor(() => seen.join("").includes("==="));
  await logs.append(BUILD, PKG, text("configure\n"));
  await waitFor(() => seen.join("").endsWith("configure\n"));
  // Appended and finished in one go: the follower must still get the bytes.
  void logs.append(BUILD, PKG, text("build\n"));
  void logs.append(BUILD, PKG, text("install\n"));
  await logs.finish(BUILD, PKG);

  const items = await follower;
  assert.equal(joined(items), "=== attempt 1 on agent a1 ===\nconfigure\nbuild\ninstall\n");
  assertContiguous(items, 0n);
});

test("following a finished log reads it to the end and stops", async () => {
  await logs.begin(BUILD, PKG, "attempt 1 on agent a1");
  await logs.append(BUILD, PKG, text("done\n"));
  await logs.finish(BUILD, PKG);
  const items = await collect(logs.read(BUILD, PKG, { follow: true }));
  assert.equal(joined(items), "=== attempt 1 on agent a1 ===\ndone\n");
});

test("aborting the signal ends a follower quietly", async () => {
  await logs.begin(BUILD, PKG, "attempt 1 on agent a1");
  const controller = new AbortController();
  let received = 0;
  const follower = collect(
    (async function* () {
      for await (const item of logs.read(BUILD, PKG, { follow: true, signal: controller.signal })) {
        received += 1;
        yield item;
      }
    })(),
  );
  await waitFor(() => received === 1);
  controller.abort();
  const items = await follower;
  assert.equal(items.length, 1);
  // The log itself is still live.
  await logs.append(BUILD, PKG, text("more\n"));
});

test("close ends followers and refuses further writes", async () => {
  await logs.begin(BUILD, PKG, "attempt 1 on agent a1");
  const follower = collect(logs.read(BUILD, PKG, { follow: true }));
  await logs.close();
  assert.equal(joined(await follower), "=== attempt 1 on agent a1 ===\n");
  await assert.rejects(logs.append(BUILD, PKG, text("late\n")), LogStoreClosed);
});

test("a second attempt adds a header line instead of truncating, on a line of its own", async () => {
  await logs.begin(BUILD, PKG, "attempt 1 on agent a1");
  await logs.append(BUILD, PKG, text("compiling foo.c")); // agent died mid-line
  await logs.finish(BUILD, PKG);
  await logs.begin(BUILD, PKG, "attempt 2 on agent a2");
  await logs.append(BUILD, PKG, text("ok\n"));
  await logs.finish(BUILD, PKG);
  const expected = "=== attempt 1 on agent a1 ===\ncompiling foo.c\n=== attempt 2 on agent a2 ===\nok\n";
  assert.equal(readFileSync(logFile(), "utf8"), expected);

  // The same holds across a restart of the dispatcher (a fresh store), and a
  // header cannot smuggle in extra lines.
  const restarted = createLogStore({ root });
  await restarted.append(BUILD, PKG, text("partial"));
  await restarted.begin(BUILD, PKG, "attempt 3 on agent a3\nfake line");
  await restarted.close();
  assert.equal(readFileSync(logFile(), "utf8"), `${expected}partial\n=== attempt 3 on agent a3 fake line ===\n`);
});

test("a second attempt's follower sees the new attempt", async () => {
  await logs.begin(BUILD, PKG, "attempt 1 on agent a1");
  await logs.finish(BUILD, PKG);
  await logs.begin(BUILD, PKG, "attempt 2 on agent a2");
  const follower = collect(logs.read(BUILD, PKG, { follow: true, offset: BigInt("=== attempt 1 on agent a1 ===\n".length) }));
  await logs.append(BUILD, PKG, text("retry\n"));
  await logs.finish(BUILD, PKG);
  assert.equal(joined(await follower), "=== attempt 2 on agent a2 ===\nretry\n");
});

test("reading a log never begun throws LogNotFound", async () => {
  await assert.rejects(collect(logs.read(BUILD, "never-1.0", {})), LogNotFound);
  await assert.rejects(collect(logs.read(BUILD, "never-1.0", { follow: true })), LogNotFound);
});

test("bad build ids and PKGNAMEs throw InvalidLogName and touch nothing", async () => {
  const bad = ["..", "../x", "a/b", ".hidden", "-x", "", "a\\b", "nul\u0000", "a..b", "x".repeat(252)];
  for (const name of bad) {
    assert.throws(() => logs.logRef(BUILD, name), InvalidLogName, `pkgname ${JSON.stringify(name)}`);
    assert.throws(() => logs.logRef(name, PKG), InvalidLogName, `buildId ${JSON.stringify(name)}`);
    await assert.rejects(logs.begin(name, PKG, "attempt 1"), InvalidLogName);
    await assert.rejects(logs.append(BUILD, name, text("x")), InvalidLogName);
    assert.throws(() => logs.read(BUILD, name, {}), InvalidLogName);
  }
  assert.throws(() => logs.logRef(BUILD, "../x"), /"\.\.\/x"/);
  assert.equal(existsSync(path.join(root, "logs")), false);
});

async function waitFor(condition: () => boolean, timeoutMs = 1000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a condition");
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

test("a chunk with a phase goes to the whole log and to the phase's log, which starts with the attempt's header", async () => {
  await logs.begin(BUILD, PKG, "attempt 2 on agent a1");
  await logs.append(BUILD, PKG, text("plain\n"));
  await logs.append(BUILD, PKG, text("checking...\n"), "configure");
  await logs.append(BUILD, PKG, text("cc -c x.c\n"), "build");
  await logs.finish(BUILD, PKG);
  assert.equal(readFileSync(logFile(), "utf8"), "=== attempt 2 on agent a1 ===\nplain\nchecking...\ncc -c x.c\n");
  assert.equal(readFileSync(path.join(root, "logs", BUILD, PKG, "configure.log"), "utf8"), "=== attempt 2 on agent a1 ===\nchecking...\n");
  assert.equal(joined(await collect(logs.read(BUILD, PKG, { phase: "build", follow: true }))), "=== attempt 2 on agent a1 ===\ncc -c x.c\n");
});

test("a phase name that is not a plain name is refused; a phase never logged is not found", async () => {
  await assert.rejects(logs.append(BUILD, PKG, text("x"), "../escape"), InvalidLogName);
  assert.throws(() => logs.read(BUILD, PKG, { phase: "a/b" }), InvalidLogName);
  await logs.append(BUILD, PKG, text("x"));
  await assert.rejects(collect(logs.read(BUILD, PKG, { phase: "install" })), LogNotFound);
});

test("a follower of a phase ends when the next phase starts", async () => {
  await logs.begin(BUILD, PKG, "attempt 1");
  await logs.append(BUILD, PKG, text("one\n"), "configure");
  const following = collect(logs.read(BUILD, PKG, { phase: "configure", follow: true }));
  await logs.append(BUILD, PKG, text("two\n"), "configure");
  await logs.append(BUILD, PKG, text("three\n"), "build");
  assert.equal(joined(await following), "=== attempt 1 ===\none\ntwo\n");
  await logs.finish(BUILD, PKG);
});
