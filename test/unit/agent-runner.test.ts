import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runBuildCommand, type BuildCommandSpec } from "../../services/builder-agent/runner.js";

const tmp = mkdtempSync(join(tmpdir(), "pkgfarm-runner-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const ENV = { PATH: "/usr/bin:/bin" };
// A runner that kills only its direct child never sees these builds end (the
// grandchild holds the output pipe), so a bound turns that hang into a failure.
const GROUP_KILL = { timeout: 2000 };

interface Captured {
  readonly chunks: Array<{ stream: "stdout" | "stderr"; text: string }>;
  readonly onOutput: BuildCommandSpec["onOutput"];
}

// Records output, merging consecutive chunks of one stream: how a pipe splits
// its bytes into chunks is not something the runner promises.
function capture(onChunk?: (text: string) => void): Captured {
  const chunks: Captured["chunks"] = [];
  return {
    chunks,
    onOutput(chunk, stream) {
      const text = Buffer.from(chunk).toString("utf8");
      const last = chunks.at(-1);
      if (last?.stream === stream) last.text += text;
      else chunks.push({ stream, text });
      onChunk?.(text);
    },
  };
}

// A script that forks a long-lived grandchild, records its pid, says "ready"
// and waits for it: the shape of a build that must be killed as a group.
function forkingScript(pidFile: string): string[] {
  return ["/bin/sh", "-c", `sleep 100 & echo $! > '${pidFile}'; echo ready; wait`];
}

// True once pid has exited. A zombie counts as exited: the grandchild is
// reparented to init when its shell dies, and reaping it is init's business
// (some container inits reap only every few seconds).
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error: unknown) {
    assert.equal((error as NodeJS.ErrnoException).code, "ESRCH");
    return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

async function assertGone(pid: number): Promise<void> {
  const deadline = Date.now() + 1000;
  while (!isGone(pid)) {
    if (Date.now() > deadline) assert.fail(`process ${pid} is still running`);
    await sleep(10);
  }
}

function readPid(pidFile: string): number {
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  assert.ok(Number.isInteger(pid) && pid > 1, `pid file holds a pid: ${pid}`);
  return pid;
}

test("success: output captured in arrival order, stdout and stderr interleaved", async () => {
  const out = capture();
  const result = await runBuildCommand({
    command: ["/bin/sh", "-c", "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three"],
    env: ENV,
    cwd: tmp,
    timeoutMs: 5000,
    onOutput: out.onOutput,
  });
  assert.deepEqual(out.chunks, [
    { stream: "stdout", text: "one\n" },
    { stream: "stderr", text: "two\n" },
    { stream: "stdout", text: "three\n" },
  ]);
  assert.equal(result.exitCode, 0);
  assert.equal(result.signal, null);
  assert.equal(result.timedOut, false);
  assert.equal(result.cancelled, false);
  assert.equal(result.failureReason, "");
  assert.ok(result.durationMs >= 200, `duration ${result.durationMs} ms covers the sleeps`);
});

test("runs in cwd, with argv passed as is, not through a shell", async () => {
  const out = capture();
  const result = await runBuildCommand({
    command: ["/bin/sh", "-c", 'pwd; printf "%s\\n" "$1"', "sh", "$HOME; echo injected"],
    env: ENV,
    cwd: tmp,
    timeoutMs: 5000,
    onOutput: out.onOutput,
  });
  assert.equal(result.exitCode, 0);
  assert.equal(out.chunks.map((c) => c.text).join(""), `${tmp}\n$HOME; echo injected\n`);
});

test("non-zero exit is a failure with its status", async () => {
  const result = await runBuildCommand({
    command: ["/bin/sh", "-c", "exit 2"],
    env: ENV,
    cwd: tmp,
    timeoutMs: 5000,
    onOutput: () => undefined,
  });
  assert.equal(result.exitCode, 2);
  assert.equal(result.signal, null);
  assert.equal(result.timedOut, false);
  assert.equal(result.failureReason, "exited with status 2");
});

test("timeout kills the whole process group, grandchild included", GROUP_KILL, async () => {
  const pidFile = join(tmp, "timeout.pid");
  const result = await runBuildCommand({
    command: forkingScript(pidFile),
    env: ENV,
    cwd: tmp,
    timeoutMs: 300,
    killGraceMs: 1000,
    onOutput: () => undefined,
  });
  assert.equal(result.timedOut, true);
  assert.equal(result.cancelled, false);
  assert.equal(result.exitCode, null);
  assert.equal(result.signal, "SIGTERM");
  assert.equal(result.failureReason, "timed out after 0.3 s");
  assert.ok(result.durationMs >= 300 && result.durationMs < 1000, `duration ${result.durationMs} ms`);
  await assertGone(readPid(pidFile));
});

test("a group that ignores SIGTERM gets SIGKILL after the grace period", GROUP_KILL, async () => {
  const pidFile = join(tmp, "stubborn.pid");
  const result = await runBuildCommand({
    // The trap is inherited by the subshell, so neither process dies of SIGTERM.
    command: ["/bin/sh", "-c", `trap '' TERM; (trap '' TERM; sleep 100) & echo $! > '${pidFile}'; wait`],
    env: ENV,
    cwd: tmp,
    timeoutMs: 100,
    killGraceMs: 200,
    onOutput: () => undefined,
  });
  assert.equal(result.timedOut, true);
  assert.equal(result.signal, "SIGKILL");
  assert.ok(result.durationMs >= 300, `duration ${result.durationMs} ms includes the grace period`);
  await assertGone(readPid(pidFile));
});

test("abort cancels the build and kills the whole process group, grandchild included", GROUP_KILL, async () => {
  const pidFile = join(tmp, "abort.pid");
  const controller = new AbortController();
  const out = capture((text) => {
    if (text.includes("ready")) controller.abort();
  });
  const result = await runBuildCommand({
    command: forkingScript(pidFile),
    env: ENV,
    cwd: tmp,
    timeoutMs: 5000,
    signal: controller.signal,
    onOutput: out.onOutput,
  });
  assert.equal(result.cancelled, true);
  assert.equal(result.timedOut, false);
  assert.equal(result.exitCode, null);
  assert.equal(result.signal, "SIGTERM");
  assert.equal(result.failureReason, "cancelled");
  await assertGone(readPid(pidFile));
});

test("an already aborted signal starts nothing", async () => {
  const pidFile = join(tmp, "never.pid");
  const result = await runBuildCommand({
    command: ["/bin/sh", "-c", `echo $$ > '${pidFile}'`],
    env: ENV,
    cwd: tmp,
    timeoutMs: 5000,
    signal: AbortSignal.abort(),
    onOutput: () => assert.fail("no output expected"),
  });
  assert.equal(result.cancelled, true);
  assert.equal(result.failureReason, "cancelled");
  assert.throws(() => readFileSync(pidFile), { code: "ENOENT" });
});

test("a process left behind after a successful exit is stopped, and the result still arrives", GROUP_KILL, async () => {
  const pidFile = join(tmp, "leftover.pid");
  // The background sleep keeps stdout open; without the group kill the
  // result would wait for it.
  const result = await runBuildCommand({
    command: ["/bin/sh", "-c", `sleep 100 & echo $! > '${pidFile}'`],
    env: ENV,
    cwd: tmp,
    timeoutMs: 5000,
    onOutput: () => undefined,
  });
  assert.equal(result.exitCode, 0);
  assert.equal(result.failureReason, "");
  assert.ok(result.durationMs < 1000, `duration ${result.durationMs} ms`);
  await assertGone(readPid(pidFile));
});

test("a program that does not exist resolves with a failure, never throws", async () => {
  const result = await runBuildCommand({
    command: [join(tmp, "no-such-program")],
    env: ENV,
    cwd: tmp,
    timeoutMs: 5000,
    onOutput: () => undefined,
  });
  assert.equal(result.exitCode, null);
  assert.equal(result.signal, null);
  assert.equal(result.timedOut, false);
  assert.equal(result.cancelled, false);
  assert.match(result.failureReason, /^could not start: ENOENT: no program .*no-such-program$/);
});

test("a missing working directory is named as the cause", async () => {
  const missing = join(tmp, "no-such-dir");
  const result = await runBuildCommand({
    command: ["/bin/true"],
    env: ENV,
    cwd: missing,
    timeoutMs: 5000,
    onOutput: () => undefined,
  });
  assert.equal(result.failureReason, `could not start: ENOENT: no working directory ${missing}`);
});

test("an empty command resolves with a failure", async () => {
  const result = await runBuildCommand({ command: [], env: ENV, cwd: tmp, timeoutMs: 5000, onOutput: () => undefined });
  assert.match(result.failureReason, /^could not start: /);
});

test("the child's environment is exactly the one given", async () => {
  const out = capture();
  const env = { ONLY: "this", WITH_SPACES: "a b  c", EMPTY: "" };
  const result = await runBuildCommand({ command: ["/usr/bin/env"], env, cwd: tmp, timeoutMs: 5000, onOutput: out.onOutput });
  assert.equal(result.exitCode, 0);
  const lines = out.chunks.map((c) => c.text).join("").split("\n").filter((l) => l !== "");
  assert.deepEqual(lines.sort(), ["EMPTY=", "ONLY=this", "WITH_SPACES=a b  c"]);
});

test("an onOutput that throws stops the build and rejects with its error", GROUP_KILL, async () => {
  const pidFile = join(tmp, "throwing.pid");
  const boom = new Error("log sink is gone");
  await assert.rejects(
    runBuildCommand({
      command: forkingScript(pidFile),
      env: ENV,
      cwd: tmp,
      timeoutMs: 5000,
      onOutput: () => {
        throw boom;
      },
    }),
    (error: unknown) => error === boom,
  );
  await assertGone(readPid(pidFile));
});
