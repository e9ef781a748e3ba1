// Sandboxes: one per slot, so one host runs several pkgsrc jobs at once.
//
// pkgsrc builds and scans use one prefix (/usr/pkg: bmake, its mk files,
// pkg_install, the package database and every installed dependency), so two
// jobs on one host would trample each other. Each slot therefore gets its own
// prefix, work directory and packages directory, mounted over the paths
// pkgsrc expects, where only that slot's processes see them.
//
//   kind "namespace" (Linux, root): `unshare --mount --propagation private
//     --pid --fork --kill-child --mount-proc`, then each bind is mounted over
//     its target inside the new mount namespace and argv is exec'd. The host
//     and the other slots see nothing of it (an empty mount point such as
//     /usr/pkg is all the host needs). The new PID namespace contains every
//     process: argv is its PID 1, and when PID 1 ends the kernel kills the
//     rest, daemons that setsid() away from their process group included;
//     --kill-child ties PID 1 to unshare, so killing the one process the
//     caller started (SIGKILL too) ends the whole sandbox.
//   kind "chroot": an operator-prepared root directory (spec.chrootDir).
//     Without binds it is `chroot DIR argv...` (any Unix); with binds (Linux)
//     the binds are mounted at DIR/target inside a namespace as above and the
//     chroot follows.
//   kind "none": argv as it is; the host's own /usr/pkg, so one slot only.
//
// jperkin/bob sandboxes with chroots whose bind mounts are made (and later
// unmounted) in the host's namespace. A private mount namespace needs no
// cleanup at all: the mounts vanish with the last process, even after a crash.
//
// Package fields never become shell text: the bind list and argv reach a fixed
// script as positional parameters ("$@"), so spaces, quotes, `$(...)` and
// leading dashes arrive verbatim.
//
// API (used by the agent's executors; keep it stable, add rather than rename):
//   interface SandboxSpec { binds: { source; target; readOnly? }[] }
//   type SandboxKind = "namespace" | "chroot" | "none"
//   sandboxCommand(kind, spec & { chrootDir? }, argv): string[]
//   sandboxSupport(): { namespace: boolean; why?: string }   probed once
//   resetPrefix(prefixDir, bootstrapKit): Promise<void>      pbulk's client-clean
//   slotDirs(root, slot): { root, prefix, wrkobjdir, packages, distdir, tmp }
//   class InvalidSandboxSpec extends Error

import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { isAbsolute, join, normalize, resolve } from "node:path";

/** SandboxSpec: what a sandbox mounts. */
export interface SandboxSpec {
  /**
   * Directories mounted over targets, in this order (so /usr before
   * /usr/pkg). source is a host path; target is the path the sandboxed
   * processes see: a directory, made (empty) when missing, since a fresh
   * host has no /usr/pkg and the host only ever needs it as a mount point. A
   * bind is not recursive: mounts below source are not carried along.
   * readOnly makes the bind read-only (a tree that scans must not write to).
   */
  readonly binds: readonly SandboxBind[];
}

/** SandboxBind: one directory mounted over another. */
export interface SandboxBind {
  readonly source: string;
  readonly target: string;
  readonly readOnly?: boolean;
}

/** SandboxKind: how a slot is contained (see the file header). */
export type SandboxKind = "namespace" | "chroot" | "none";

/** InvalidSandboxSpec: a spec that cannot be turned into a sandbox, and why. */
export class InvalidSandboxSpec extends Error {
  override readonly name = "InvalidSandboxSpec";
  constructor(readonly problem: string) {
    super(`invalid sandbox: ${problem}`);
  }
}

// The script run inside the namespace. $1 is the number of binds, then three
// words per bind (source, target, "ro" or "rw"), then the argv to exec. The
// mount commands get a fixed PATH of their own, so the caller's PATH (meant
// for argv) need not contain mount. A failed mount stops everything: a build
// that silently ran against the host's /usr/pkg would be far worse.
const BIND_SCRIPT = [
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do',
  '  [ -d "$2" ] || PATH=/usr/sbin:/usr/bin:/sbin:/bin mkdir -p -- "$2" || exit 125',
  '  PATH=/usr/sbin:/usr/bin:/sbin:/bin mount --bind -- "$1" "$2" || exit 125',
  '  if [ "$3" = ro ]; then PATH=/usr/sbin:/usr/bin:/sbin:/bin mount -o remount,bind,ro -- "$2" || exit 125; fi',
  '  shift 3; n=$((n - 1))',
  'done',
  'exec "$@"',
].join("\n");

// The same, for a chroot: $2 (after the count) is the root, targets are
// inside it, and argv runs chrooted.
const CHROOT_BIND_SCRIPT = [
  'n=$1; root=$2; shift 2',
  'while [ "$n" -gt 0 ]; do',
  '  [ -d "$root$2" ] || PATH=/usr/sbin:/usr/bin:/sbin:/bin mkdir -p -- "$root$2" || exit 125',
  '  PATH=/usr/sbin:/usr/bin:/sbin:/bin mount --bind -- "$1" "$root$2" || exit 125',
  '  if [ "$3" = ro ]; then PATH=/usr/sbin:/usr/bin:/sbin:/bin mount -o remount,bind,ro -- "$root$2" || exit 125; fi',
  '  shift 3; n=$((n - 1))',
  'done',
  'PATH=/usr/sbin:/usr/bin:/sbin:/bin exec chroot -- "$root" "$@"',
].join("\n");

/** The name the sandbox script runs under ($0), as `ps` shows it. */
const SCRIPT_NAME = "pkgfarm-sandbox";

/**
 * sandboxCommand returns the argv that runs argv inside a sandbox of the
 * given kind: spawn it like any command (runBuildCommand does). Nothing runs
 * here; the bind sources are checked to be absolute, not to exist (the mount
 * reports a missing one, exit status 125). Throws InvalidSandboxSpec for a
 * spec the kind cannot honour (binds with "none", a chroot without a root).
 */
export function sandboxCommand(
  kind: SandboxKind,
  spec: SandboxSpec & { readonly chrootDir?: string },
  argv: readonly string[],
): string[] {
  if (argv.length === 0) throw new InvalidSandboxSpec("the command is empty");
  const binds = spec.binds.map(checkBind);
  const bindWords = binds.flatMap((b) => [b.source, b.target, b.readOnly === true ? "ro" : "rw"]);
  switch (kind) {
    case "none":
      if (binds.length > 0) {
        throw new InvalidSandboxSpec(`kind "none" cannot mount anything (${binds.length} binds given); use "namespace"`);
      }
      return [...argv];
    case "namespace":
      return [...unshareArgv(), "/bin/sh", "-c", BIND_SCRIPT, SCRIPT_NAME, String(binds.length), ...bindWords, ...argv];
    case "chroot": {
      const root = spec.chrootDir;
      if (root === undefined || root === "") throw new InvalidSandboxSpec('kind "chroot" needs chrootDir');
      if (!isAbsolute(root)) throw new InvalidSandboxSpec(`chrootDir ${JSON.stringify(root)} is not an absolute path`);
      const dir = normalize(root).replace(/\/+$/, "");
      if (dir === "") throw new InvalidSandboxSpec("chrootDir / is the host itself; use kind \"none\"");
      if (binds.length === 0) return ["chroot", dir, ...argv];
      return [...unshareArgv(), "/bin/sh", "-c", CHROOT_BIND_SCRIPT, SCRIPT_NAME, String(binds.length), dir, ...bindWords, ...argv];
    }
    default:
      throw new InvalidSandboxSpec(`unknown sandbox kind ${JSON.stringify(kind satisfies never)}`);
  }
}

function checkBind(bind: SandboxBind): SandboxBind {
  for (const [what, value] of [["source", bind.source], ["target", bind.target]] as const) {
    if (typeof value !== "string" || !isAbsolute(value)) {
      throw new InvalidSandboxSpec(`bind ${what} ${JSON.stringify(value)} is not an absolute path`);
    }
    if (value.includes("\0")) throw new InvalidSandboxSpec(`bind ${what} ${JSON.stringify(value)} contains a NUL byte`);
  }
  const target = normalize(bind.target);
  if (target === "/") throw new InvalidSandboxSpec(`bind of ${bind.source} over / would hide the whole system`);
  return { source: normalize(bind.source), target, readOnly: bind.readOnly === true };
}

// --fork is needed for --pid (the caller cannot become PID 1 of a namespace
// it creates); --kill-child sends SIGKILL to that PID 1 when unshare dies, for
// whatever reason; --mount-proc gives the namespace a /proc of its own, so
// `ps` inside shows only the sandbox and tools reading /proc see their own
// PID space.
function unshareArgv(): string[] {
  return [unshareProgram(), "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc"];
}

let unsharePath: string | undefined;
function unshareProgram(): string {
  unsharePath ??= ["/usr/bin/unshare", "/bin/unshare"].find((p) => existsSync(p)) ?? "unshare";
  return unsharePath;
}

let support: { namespace: boolean; why?: string } | undefined;

/**
 * sandboxSupport says whether "namespace" sandboxes work here (Linux, root,
 * and a real probe: an unshare with a bind mount runs `true`), and why not.
 * Probed once per process; the answer does not change while the agent runs.
 */
export function sandboxSupport(): { namespace: boolean; why?: string } {
  support ??= probeNamespace();
  return support;
}

function probeNamespace(): { namespace: boolean; why?: string } {
  if (process.platform !== "linux") return { namespace: false, why: `mount namespaces need Linux (this is ${process.platform})` };
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    return { namespace: false, why: "mount namespaces and bind mounts need root" };
  }
  try {
    // A bind of / over /tmp inside the namespace: proves unshare, --pid,
    // --mount-proc and mount all work, and touches nothing outside.
    const [program, ...args] = sandboxCommand("namespace", { binds: [{ source: "/", target: "/tmp", readOnly: true }] }, ["/bin/true"]);
    execFileSync(program!, args,
      { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 });
    return { namespace: true };
  } catch (error: unknown) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString("utf8").trim();
    return { namespace: false, why: `unshare does not work here: ${stderr || (error as Error).message}` };
  }
}

/**
 * resetPrefix is pbulk's client-clean for one slot: everything inside
 * prefixDir is removed (the directory itself stays, it may be a mount point
 * or bind source) and the bootstrap kit is unpacked into it with
 * --strip-components=2, as the kit holds usr/pkg/... (bin, sbin, etc/mk.conf,
 * pkgdb ...). Files keep the kit's modification times, so the prefix's
 * mk.conf only looks newer than a scan when writeMkConf changed it.
 * Refuses a relative path and "/" (InvalidSandboxSpec).
 */
export async function resetPrefix(prefixDir: string, bootstrapKit: string): Promise<void> {
  if (!isAbsolute(prefixDir)) throw new InvalidSandboxSpec(`prefix ${JSON.stringify(prefixDir)} is not an absolute path`);
  const dir = resolve(prefixDir);
  if (dir === "/") throw new InvalidSandboxSpec("the prefix cannot be /");
  await mkdir(dir, { recursive: true });
  await Promise.all((await readdir(dir)).map((name) => rm(join(dir, name), { recursive: true, force: true })));
  await untar(resolve(bootstrapKit), dir);
}

function untar(archive: string, dir: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("tar", ["-xzf", archive, "-C", dir, "--strip-components=2"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (s: string) => {
      if (stderr.length < 4096) stderr += s;
    });
    child.once("error", (error) => reject(new Error(`could not unpack ${archive}: ${error.message}`)));
    child.once("close", (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`could not unpack ${archive} into ${dir}: tar ${signal ?? `exited with status ${code}`}: ${stderr.trim()}`));
    });
  });
}

/** SlotDirs: the host directories of one slot. */
export interface SlotDirs {
  /** <root>/slot-<n>: everything of the slot lives below it. */
  readonly root: string;
  /** The slot's prefix, mounted over /usr/pkg (kit, pkgdb, installed dependencies). */
  readonly prefix: string;
  /** WRKOBJDIR: where the slot's package work directories go. */
  readonly wrkobjdir: string;
  /** PACKAGES: where `bmake package` writes the slot's binary packages. */
  readonly packages: string;
  /** DISTDIR: distfiles (may be bound to a shared one instead). */
  readonly distdir: string;
  /** Scratch space for the slot (TMPDIR, scan output). */
  readonly tmp: string;
}

/**
 * slotDirs names the directories of slot `slot` under root (creating
 * nothing): <root>/slot-<n>/{prefix,wrkobjdir,packages,distdir,tmp}.
 * Throws InvalidSandboxSpec for a relative root or a slot that is not a
 * non-negative integer.
 */
export function slotDirs(root: string, slot: number): SlotDirs {
  if (!isAbsolute(root)) throw new InvalidSandboxSpec(`slot root ${JSON.stringify(root)} is not an absolute path`);
  if (!Number.isSafeInteger(slot) || slot < 0) throw new InvalidSandboxSpec(`slot ${slot} is not a non-negative integer`);
  const dir = join(resolve(root), `slot-${slot}`);
  return {
    root: dir,
    prefix: join(dir, "prefix"),
    wrkobjdir: join(dir, "wrkobjdir"),
    packages: join(dir, "packages"),
    distdir: join(dir, "distdir"),
    tmp: join(dir, "tmp"),
  };
}
