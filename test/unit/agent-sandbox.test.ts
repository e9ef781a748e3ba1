// Per-slot sandboxes, for real: unshare, bind mounts, PID namespaces. Needs
// Linux and root; elsewhere the namespace tests skip with the probe's reason.

import assert from "node:assert/strict";
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { after, test } from "node:test";
import {
  InvalidSandboxSpec,
  resetPrefix,
  sandboxCommand,
  sandboxSupport,
  slotDirs,
  type SandboxKind,
  type SandboxSpec,
} from "../../services/builder-agent/sandbox.js";
import { eventually } from "../support/eventually.js";
import { BOOTSTRAP_KIT } from "../support/pkgsrc.js";

const tmp = mkdtempSync(join(tmpdir(), "pkgfarm-sandbox-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const support = sandboxSupport();
const skipNamespace = support.namespace ? false : (support.why ?? "no namespace sandboxes here");
const ENV = { PATH: "/usr/bin:/bin" };
// /usr/pkg on the host only ever exists as an empty mount point.
const HOST_PREFIX = "/usr/pkg";

type Child = ChildProcessByStdio<null, Readable, Readable>;

const children = new Set<Child>();
// A failed test must not leave its sandboxes (and their long sleeps) behind.
after(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

function start(kind: SandboxKind, spec: SandboxSpec & { chrootDir?: string }, argv: string[]): { child: Child; out: () => string; err: () => string; closed: Promise<number | null> } {
  const [program, ...args] = sandboxCommand(kind, spec, argv);
  const child = spawn(program!, args, { env: ENV, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
  const closed = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  return { child, out: () => out, err: () => err, closed };
}

function within<T>(what: string, promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms))),
  ]);
}

// Host pids of the `sleep <word>` processes (the sandboxes' pids differ
// inside their own PID namespace, so tests find them from outside).
function pidsWith(word: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
      if (argv[0] === "sleep" && argv[1] === word) pids.push(Number(entry));
    } catch {
      // gone while we looked
    }
  }
  return pids;
}

function prefixWith(id: string): string {
  const dir = join(tmp, `prefix-${id}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "id"), id);
  return dir;
}

test("two sandboxes at once each see their own /usr/pkg, and the host's stays an empty mount point", { skip: skipNamespace }, async () => {
  mkdirSync(HOST_PREFIX, { recursive: true });
  assert.deepEqual(readdirSync(HOST_PREFIX), [], "the host's /usr/pkg must start empty");
  const go = join(tmp, "go");
  // Each prints its /usr/pkg/id, writes into /usr/pkg, waits (bounded) for
  // the go file, and prints its id again: both are alive at the same time.
  const script = 'cat /usr/pkg/id; echo; echo "$2" > /usr/pkg/written; i=0; while [ ! -e "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat /usr/pkg/id';
  const a = start("namespace", { binds: [{ source: prefixWith("a"), target: HOST_PREFIX }] }, ["/bin/sh", "-c", script, "sh", go, "by a"]);
  await eventually("sandbox a to start", async () => (a.out().includes("\n") ? true : undefined));
  const b = start("namespace", { binds: [{ source: prefixWith("b"), target: HOST_PREFIX }] }, ["/bin/sh", "-c", script, "sh", go, "by b"]);
  await eventually("sandbox b to start", async () => (b.out().includes("\n") ? true : undefined));
  assert.deepEqual(readdirSync(HOST_PREFIX), [], "the host sees nothing of either sandbox's /usr/pkg");
  writeFileSync(go, "");
  assert.equal(await within("sandbox a", a.closed, 15_000), 0, a.err());
  assert.equal(await within("sandbox b", b.closed, 15_000), 0, b.err());
  assert.equal(a.out(), "a\na");
  assert.equal(b.out(), "b\nb");
  assert.equal(readFileSync(join(tmp, "prefix-a", "written"), "utf8"), "by a\n");
  assert.equal(readFileSync(join(tmp, "prefix-b", "written"), "utf8"), "by b\n");
  assert.deepEqual(readdirSync(HOST_PREFIX), []);
});

test("a read-only bind cannot be written to from inside", { skip: skipNamespace }, async () => {
  const dir = prefixWith("ro");
  const s = start("namespace", { binds: [{ source: dir, target: HOST_PREFIX, readOnly: true }] },
    ["/bin/sh", "-c", 'cat /usr/pkg/id; echo x > /usr/pkg/id 2>/dev/null && echo wrote || echo refused']);
  assert.equal(await within("the sandbox", s.closed, 10_000), 0, s.err());
  assert.equal(s.out(), "ro" + "refused\n");
  assert.equal(readFileSync(join(dir, "id"), "utf8"), "ro");
});

test("killing the sandbox's one process kills what it left running in the background, setsid() daemons included", { skip: skipNamespace }, async () => {
  const marker = `300.${process.pid}${Date.now() % 100000}`;
  const daemonMarker = `301.${process.pid}${Date.now() % 100000}`;
  // One child in the background of the group, one that setsid()s out of it
  // (a process-group kill would miss that one). Both inherit stdout.
  const s = start("namespace", { binds: [] },
    ["/bin/sh", "-c", 'sleep "$1" & setsid sleep "$2" & echo ready; wait', "sh", marker, daemonMarker]);
  await eventually("the sandbox to say ready", async () => (s.out().includes("ready") ? true : undefined));
  const pids = await eventually("both background processes to be visible from the host", async () => {
    const found = [...pidsWith(marker), ...pidsWith(daemonMarker)];
    return found.length === 2 ? found : undefined;
  });
  // Only unshare itself (the process the caller spawned), and with SIGKILL:
  // it gets no chance to clean up, the kernel has to.
  process.kill(s.child.pid!, "SIGKILL");
  await within("the sandbox's output to close (it would stay open while a background process lives)", s.closed, 10_000);
  await eventually(`the background processes ${pids.join(", ")} to be gone`,
    async () => (pidsWith(marker).length + pidsWith(daemonMarker).length === 0 ? true : undefined), 10_000);
});

test("when the sandbox's main process ends on its own, what it left in the background is killed", { skip: skipNamespace }, async () => {
  const started = join(tmp, "bg-started");
  // The background process proves it ran (the file), then sleeps holding
  // stdout: the output closes only if the kernel killed it.
  const s = start("namespace", { binds: [] },
    ["/bin/sh", "-c", '( touch "$1"; exec sleep 303 ) & i=0; while [ ! -e "$1" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo done', "sh", started]);
  assert.equal(await within("the sandbox's output to close", s.closed, 10_000), 0, s.err());
  assert.ok(existsSync(started), "the background process ran");
  assert.equal(s.out(), "done\n");
});

test("argv with spaces, quotes, $(...) and dashes arrives verbatim", { skip: skipNamespace }, async () => {
  const canary = join(tmp, "injected");
  const words = ["a b", "'single'", '"double"', `$(touch ${canary})`, `\`touch ${canary}\``, "*", "-n", "", "--", "back\\slash", "new\nline", "ünï;&|<>"];
  const source = join(tmp, "dir with 'quotes' and $(x)");
  mkdirSync(source, { recursive: true });
  writeFileSync(join(source, "id"), "odd");
  const s = start("namespace", { binds: [{ source, target: HOST_PREFIX }] }, ["/usr/bin/printf", "%s\\0", ...words, "--end--"]);
  assert.equal(await within("the sandbox", s.closed, 10_000), 0, s.err());
  assert.deepEqual(s.out().split("\0").slice(0, -1), [...words, "--end--"]);
  assert.equal(existsSync(canary), false, "nothing was run by a shell");
  const t = start("namespace", { binds: [{ source, target: HOST_PREFIX }] }, ["/bin/cat", "/usr/pkg/id"]);
  assert.equal(await within("the sandbox", t.closed, 10_000), 0, t.err());
  assert.equal(t.out(), "odd");
});

// A fresh host has no /usr/pkg: the sandbox makes the mount point.
test("a bind over a target that does not exist yet makes it, empty on the host, and mounts over it", { skip: skipNamespace }, async () => {
  const target = join(tmp, "fresh-host", "usr", "pkg");
  assert.equal(existsSync(target), false);
  const s = start("namespace", { binds: [{ source: prefixWith("fresh"), target }] }, ["/bin/cat", join(target, "id")]);
  assert.equal(await within("the sandbox", s.closed, 10_000), 0, s.err());
  assert.equal(s.out(), "fresh");
  assert.deepEqual(readdirSync(target), [], "the host keeps an empty mount point");
});

test("a bind whose source is missing stops the sandbox before argv runs", { skip: skipNamespace }, async () => {
  const ran = join(tmp, "ran-anyway");
  const s = start("namespace", { binds: [{ source: join(tmp, "no-such-dir"), target: HOST_PREFIX }] }, ["/usr/bin/touch", ran]);
  assert.equal(await within("the sandbox", s.closed, 10_000), 125);
  assert.equal(existsSync(ran), false);
  assert.match(s.err(), /no-such-dir/);
});

// The minimal root below works on a merged-/usr host (/bin -> usr/bin ...).
const mergedUsr = (() => {
  try {
    return lstatSync("/bin").isSymbolicLink();
  } catch {
    return false;
  }
})();

test("a chroot sandbox with binds: the root is the given directory, binds land inside it", { skip: skipNamespace || (mergedUsr ? false : "the host has no merged /usr") }, async () => {
  // A minimal root for this (merged-/usr) host: /usr bound read-only, the
  // usual symlinks, and a prefix over /usr/pkg inside it.
  const root = join(tmp, "chroot");
  mkdirSync(join(root, "usr"), { recursive: true });
  for (const name of ["bin", "lib", "lib64", "sbin"]) {
    if (existsSync(`/${name}`)) symlinkSync(`usr/${name}`, join(root, name));
  }
  mkdirSync(join(root, "proc"));
  const marker = join(root, "only-in-chroot");
  writeFileSync(marker, "");
  const s = start("chroot", { chrootDir: root, binds: [{ source: "/usr", target: "/usr", readOnly: true }, { source: prefixWith("c"), target: HOST_PREFIX }] },
    ["/bin/sh", "-c", 'ls /; cat /usr/pkg/id']);
  assert.equal(await within("the chroot sandbox", s.closed, 10_000), 0, s.err());
  const lines = s.out().split("\n");
  assert.ok(lines.includes("only-in-chroot"), s.out());
  assert.equal(lines.at(-1), "c");
});

test("sandboxCommand refuses specs its kind cannot honour, and kind none runs argv as it is", () => {
  assert.deepEqual(sandboxCommand("none", { binds: [] }, ["/bin/echo", "a b"]), ["/bin/echo", "a b"]);
  assert.throws(() => sandboxCommand("none", { binds: [{ source: "/x", target: "/usr/pkg" }] }, ["true"]), InvalidSandboxSpec);
  assert.throws(() => sandboxCommand("namespace", { binds: [{ source: "x", target: "/usr/pkg" }] }, ["true"]), /not an absolute path/);
  assert.throws(() => sandboxCommand("namespace", { binds: [{ source: "/x", target: "/" }] }, ["true"]), /over \//);
  assert.throws(() => sandboxCommand("namespace", { binds: [] }, []), /empty/);
  assert.throws(() => sandboxCommand("chroot", { binds: [] }, ["true"]), /chrootDir/);
  assert.deepEqual(sandboxCommand("chroot", { binds: [], chrootDir: "/srv/root/" }, ["true"]), ["chroot", "/srv/root", "true"]);
  const argv = sandboxCommand("namespace", { binds: [{ source: "/a", target: "/usr/pkg", readOnly: true }] }, ["bmake", "$(x)"]);
  assert.deepEqual(argv.slice(-6), ["1", "/a", "/usr/pkg", "ro", "bmake", "$(x)"]);
  assert.ok(argv.includes("--kill-child") && argv.includes("--pid"));
});

test("slotDirs names one directory tree per slot", () => {
  assert.deepEqual(slotDirs("/var/pkgfarm/slots/", 2), {
    root: "/var/pkgfarm/slots/slot-2",
    prefix: "/var/pkgfarm/slots/slot-2/prefix",
    wrkobjdir: "/var/pkgfarm/slots/slot-2/wrkobjdir",
    packages: "/var/pkgfarm/slots/slot-2/packages",
    distdir: "/var/pkgfarm/slots/slot-2/distdir",
    tmp: "/var/pkgfarm/slots/slot-2/tmp",
  });
  assert.throws(() => slotDirs("rel", 0), InvalidSandboxSpec);
  assert.throws(() => slotDirs("/x", -1), InvalidSandboxSpec);
  assert.throws(() => slotDirs("/x", 1.5), InvalidSandboxSpec);
});

test("resetPrefix wipes the prefix and unpacks the bootstrap kit into it", { skip: existsSync(BOOTSTRAP_KIT) ? false : `no bootstrap kit at ${BOOTSTRAP_KIT}` }, async () => {
  const prefix = join(tmp, "reset", "prefix");
  mkdirSync(join(prefix, "pkgdb", "leftover-1.0"), { recursive: true });
  writeFileSync(join(prefix, "junk"), "x");
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await resetPrefix(prefix, BOOTSTRAP_KIT);
    times.push(performance.now() - t0);
  }
  assert.equal(existsSync(join(prefix, "junk")), false);
  assert.equal(existsSync(join(prefix, "pkgdb", "leftover-1.0")), false);
  assert.ok(existsSync(join(prefix, "bin", "bmake")));
  assert.ok(existsSync(join(prefix, "etc", "mk.conf")));
  assert.ok(existsSync(join(prefix, "sbin", "pkg_add")));
  times.sort((x, y) => x - y);
  console.log(`resetPrefix: median ${times[2]!.toFixed(1)} ms over 5 runs (min ${times[0]!.toFixed(1)}, max ${times[4]!.toFixed(1)})`);
  await assert.rejects(resetPrefix("relative", BOOTSTRAP_KIT), InvalidSandboxSpec);
  await assert.rejects(resetPrefix("/", BOOTSTRAP_KIT), InvalidSandboxSpec);
  await assert.rejects(resetPrefix(join(tmp, "reset", "p2"), join(tmp, "no-kit.tgz")), /could not unpack/);
});
