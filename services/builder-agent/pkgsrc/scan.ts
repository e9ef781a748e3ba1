// The agent's built-in pkgsrc scan: what pbulk's pbulk-scan (pscan) does on
// a scan client, run inside the slot's sandbox.
//
// pscan (pkgtools/pbulk/files/pbulk/pscan) runs `bmake pbulk-index` in each
// package directory with the environment it was started with (the scan
// script sets nothing: no BATCH, which only pkg-build passes), keeps the
// output only if bmake exited 0 and printed no NUL, and writes each record
// with a `PKG_LOCATION=` line added after its `PKGNAME=` line, dropping a
// PKGNAME it has already seen. MULTI_VERSION needs nothing from the scanner:
// mk/pbulk/pbulk-index.mk loops over every variant itself (python, php,
// apache, ruby) and prints one record per variant, the default first, each
// with its MULTI_VERSION line. The whole tree is enumerated the same way:
// `bmake show-subdir-var VARNAME=SUBDIR` at the top, then in each category.
//
// bmake, its mk files and mk.conf live in the prefix, so everything here runs
// inside a sandbox (sandbox.ts) that mounts the slot's prefix over /usr/pkg;
// the caller resets it from the bootstrap kit first (resetPrefix) and may add
// its own mk.conf lines (writeMkConf). A sandbox costs about 10 ms to set up
// (unshare, /proc, binds), a quarter of the cheapest pbulk-index, so one
// sandbox scans many locations: a fixed driver script in it reads locations
// from stdin, one at a time as the previous one finishes, and frames each
// one's stdout and stderr with a random marker and bmake's exit status. A
// location that runs past its timeout gets the whole sandbox killed (its PID
// namespace takes bmake's children along) and the next one starts a new one.
//
// API (used by the agent's scan executor; add rather than rename):
//   interface PkgsrcHost { treeDir, bmake, sandbox, binds, chrootDir?, env?, timeoutMs, concurrency? }
//   interface LocationScan { location, pbulkIndex, error, durationMs }
//   scanLocations(host, locations, signal?, onResult?): Promise<LocationScan[]>
//   enumerateLocations(host, signal?): Promise<string[]>
//   readPlatform(host, signal?): Promise<{ opsys, osVersion, machineArch, platform }>
//   unchangedSince(scanDepends, treeDir, lastScannedMs, options?): Promise<boolean>
//   writeMkConf(prefixDir, extraLines, { mtime? }?): Promise<string>
//   addPkgLocation(location, output): { pbulkIndex, problem? }   (pure)
//   locationProblem(location): string | undefined                 (pure)
//   class PkgsrcScanError extends Error

import { spawn, type ChildProcessByStdio } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFile, readFile, stat, utimes } from "node:fs/promises";
import { dirname, join, normalize, posix } from "node:path";
import { performance } from "node:perf_hooks";
import type { Readable, Writable } from "node:stream";
import { sandboxCommand, type SandboxKind, type SandboxSpec } from "../sandbox.js";

/** PkgsrcHost: how this host scans its pkgsrc tree. */
export interface PkgsrcHost {
  /** The tree's root as the sandboxed bmake sees it (holding mk/, pkgtools/ ...). */
  readonly treeDir: string;
  /** bmake as seen inside the sandbox, normally "/usr/pkg/bin/bmake". */
  readonly bmake: string;
  /** How scans are contained (sandbox.ts); "none" uses the host's own prefix. */
  readonly sandbox: SandboxKind;
  /** What the sandbox mounts: at least the slot's prefix over /usr/pkg. */
  readonly binds: SandboxSpec["binds"];
  /** The root directory for sandbox "chroot". */
  readonly chrootDir?: string;
  /**
   * Environment added to bmake's. The base is only PATH (bmake's directory,
   * then /usr/sbin:/usr/bin:/sbin:/bin); these entries win over it. pbulk's
   * scan passes none of its own, BATCH included (BATCH=1 here would also
   * honour NOT_FOR_BULK_PLATFORM, as a build with BATCH does).
   */
  readonly env?: Readonly<Record<string, string>>;
  /** Limit for one location's `bmake pbulk-index`, in milliseconds. */
  readonly timeoutMs: number;
  /** Sandboxes scanning at once (each one location at a time); default 1. */
  readonly concurrency?: number;
}

/** LocationScan: what scanning one location gave. */
export interface LocationScan {
  readonly location: string;
  /** The records of every MULTI_VERSION variant with PKG_LOCATION added; "" on error. */
  readonly pbulkIndex: string;
  /** Why there are no records (with the tail of bmake's stderr); "" on success. */
  readonly error: string;
  /** Wall time of the location's bmake, in milliseconds. */
  readonly durationMs: number;
}

/** PkgsrcScanError: a scan step that cannot give an answer (enumeration, platform). */
export class PkgsrcScanError extends Error {
  override readonly name = "PkgsrcScanError";
}

// Read from stdin, one location per line; each location's output is framed
// on both streams so the reader can split them exactly. bmake gets
// /dev/null as stdin: the driver's stdin is the queue.
const DRIVER = [
  'marker=$1 make=$2 tree=$3 mode=$4',
  'while IFS= read -r loc; do',
  '  printf "%s begin\\n" "$marker"; printf "%s begin\\n" "$marker" >&2',
  '  case $mode in',
  '  index) "$make" -C "$tree/$loc" pbulk-index </dev/null ;;',
  '  subdir) "$make" -C "$tree/$loc" show-subdir-var VARNAME=SUBDIR </dev/null ;;',
  '  *) echo "pkgfarm-scan: unknown mode $mode" >&2; false ;;',
  '  esac',
  '  status=$?',
  '  printf "\\n%s end %s\\n" "$marker" "$status"; printf "\\n%s end\\n" "$marker" >&2',
  'done',
].join("\n");

type DriverMode = "index" | "subdir";

/** What the driver reports for one location, before interpretation. */
interface RawRun {
  readonly location: string;
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
  /** Set when the run did not end on its own: "timed out after 5 s", "the sandbox exited ...". */
  readonly killed?: string;
}

const STDERR_KEEP = 16 * 1024;
const STDERR_TAIL_LINES = 12;
const STDERR_TAIL_CHARS = 2000;

/**
 * locationProblem says why location is not a pkgsrc location (CATEGORY/DIR,
 * each a plain name), or returns undefined. Checked before anything runs.
 */
export function locationProblem(location: string): string | undefined {
  const parts = location.split("/");
  if (parts.length !== 2) return "a location is CATEGORY/PACKAGE";
  for (const part of parts) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9._+-]*$/.test(part) || part === "." || part === "..") {
      return `${JSON.stringify(part)} is not a plain directory name`;
    }
  }
  return undefined;
}

/**
 * addPkgLocation turns one location's `bmake pbulk-index` output into scan
 * records as pscan writes them: `PKG_LOCATION=<location>` after each
 * `PKGNAME=` line (a PKG_LOCATION the tree printed itself is replaced), a
 * record whose PKGNAME came earlier dropped. problem is set when the output
 * is not pbulk-index output (pbulk says "not recognized").
 */
export function addPkgLocation(location: string, output: string): { pbulkIndex: string; problem?: string } {
  if (output.includes("\0")) return { pbulkIndex: "", problem: "pbulk-index printed a NUL byte" };
  const lines = output.split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length === 0) return { pbulkIndex: "", problem: "pbulk-index printed nothing" };
  if (!lines[0]!.startsWith("PKGNAME=")) {
    return { pbulkIndex: "", problem: `pbulk-index output not recognized: it starts with ${JSON.stringify(lines[0]!.slice(0, 80))}, not PKGNAME=` };
  }
  const seen = new Set<string>();
  const out: string[] = [];
  let skipping = false;
  for (const line of lines) {
    if (line.startsWith("PKGNAME=")) {
      const pkgname = line.slice("PKGNAME=".length);
      if (pkgname.length < 2 || /\s/.test(pkgname)) {
        return { pbulkIndex: "", problem: `pbulk-index output not recognized: bad ${JSON.stringify(line)}` };
      }
      skipping = seen.has(pkgname);
      seen.add(pkgname);
      if (!skipping) out.push(line, `PKG_LOCATION=${location}`);
    } else if (!skipping && !line.startsWith("PKG_LOCATION=")) {
      out.push(line);
    }
  }
  return { pbulkIndex: `${out.join("\n")}\n` };
}

/**
 * scanLocations runs `bmake pbulk-index` for each distinct location (results
 * in the order of first appearance) in host.concurrency sandboxes. It never
 * rejects for a location that fails: that location's result carries the
 * error, with the tail of bmake's stderr. onResult sees each result as soon
 * as it is known. Aborting kills the sandboxes and rejects with the
 * signal's reason.
 */
export function scanLocations(
  host: PkgsrcHost,
  locations: readonly string[],
  signal?: AbortSignal,
  onResult?: (result: LocationScan) => void,
): Promise<LocationScan[]> {
  return scanEachLocation(locations, signal, onResult, (queue, report) =>
    runQueued(host, "index", queue, Math.max(1, host.concurrency ?? 1), signal, (run) => report(interpretIndex(run))));
}

/**
 * scanEachLocation is the frame every scanner shares: each location once,
 * an invalid one answered without running anything, the rest handed to
 * scanValid, and the results in the order the locations were first given.
 */
export async function scanEachLocation(
  locations: readonly string[],
  signal: AbortSignal | undefined,
  onResult: ((result: LocationScan) => void) | undefined,
  scanValid: (queue: string[], report: (result: LocationScan) => void) => Promise<void>,
): Promise<LocationScan[]> {
  signal?.throwIfAborted();
  const unique = [...new Set(locations)];
  const results = new Map<string, LocationScan>();
  const report = (result: LocationScan): void => {
    results.set(result.location, result);
    onResult?.(result);
  };
  const queue: string[] = [];
  for (const location of unique) {
    const problem = locationProblem(location);
    if (problem === undefined) queue.push(location);
    else report({ location, pbulkIndex: "", error: `invalid location ${JSON.stringify(location)}: ${problem}`, durationMs: 0 });
  }
  await scanValid(queue, report);
  signal?.throwIfAborted();
  return unique.map((location) => results.get(location)!);
}

function interpretIndex(run: RawRun): LocationScan {
  const base = { location: run.location, durationMs: run.durationMs };
  if (run.killed !== undefined) return { ...base, pbulkIndex: "", error: withTail(`bmake pbulk-index ${run.killed}`, run.stderr) };
  if (run.status !== 0) return { ...base, pbulkIndex: "", error: withTail(`bmake pbulk-index exited with status ${run.status}`, run.stderr) };
  const { pbulkIndex, problem } = addPkgLocation(run.location, run.stdout);
  if (problem !== undefined) return { ...base, pbulkIndex: "", error: withTail(problem, run.stderr) };
  return { ...base, pbulkIndex, error: "" };
}

/** withTail appends the last lines of a command's stderr to what went wrong. */
export function withTail(what: string, stderr: string): string {
  const lines = stderr.trimEnd().split("\n").filter((l) => l.trim() !== "");
  let tail = lines.slice(-STDERR_TAIL_LINES).join("\n");
  if (tail.length > STDERR_TAIL_CHARS) tail = `…${tail.slice(-STDERR_TAIL_CHARS)}`;
  return tail === "" ? what : `${what}: ${tail}`;
}

/**
 * enumerateLocations lists the tree's locations as pbulk does: the top-level
 * SUBDIR, then each category's SUBDIR (`bmake show-subdir-var
 * VARNAME=SUBDIR`), so what the Makefiles comment out is left out. One
 * sandbox does it all. Where pbulk warns about a category it cannot read and
 * goes on, this rejects (PkgsrcScanError, naming each one): a tree missing a
 * category would look like every package in it had been removed.
 */
export async function enumerateLocations(host: PkgsrcHost, signal?: AbortSignal): Promise<string[]> {
  signal?.throwIfAborted();
  const [top] = await collect(host, "subdir", ["."], signal);
  if (top === undefined || top.killed !== undefined || top.status !== 0) {
    throw new PkgsrcScanError(withTail(`cannot list the categories of ${host.treeDir}: bmake show-subdir-var ${top?.killed ?? `exited with status ${top?.status}`}`, top?.stderr ?? ""));
  }
  const categories = words(top.stdout);
  const problems: string[] = [];
  for (const category of categories) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9._+-]*$/.test(category)) problems.push(`${JSON.stringify(category)} is not a category name`);
  }
  if (problems.length > 0) throw new PkgsrcScanError(`the top-level SUBDIR of ${host.treeDir}: ${problems.join("; ")}`);
  const runs = await collect(host, "subdir", categories, signal);
  const locations: string[] = [];
  for (const run of runs) {
    if (run.killed !== undefined || run.status !== 0) {
      problems.push(withTail(`${run.location}: bmake show-subdir-var ${run.killed ?? `exited with status ${run.status}`}`, run.stderr));
      continue;
    }
    for (const dir of words(run.stdout)) {
      const location = `${run.location}/${dir}`;
      const problem = locationProblem(location);
      if (problem === undefined) locations.push(location);
      else problems.push(`${run.location}: SUBDIR entry ${JSON.stringify(dir)}: ${problem}`);
    }
  }
  if (problems.length > 0) throw new PkgsrcScanError(`cannot enumerate ${host.treeDir}: ${problems.join("; ")}`);
  return locations;
}

function words(text: string): string[] {
  return text.split(/[ \t\n]+/).filter((w) => w !== "");
}

/** The location pkgsrc's own framework always has: where readPlatform asks bmake. */
const PLATFORM_LOCATION = "pkgtools/pkg_install";

/**
 * readPlatform asks bmake, in a package directory of the tree
 * (pkgtools/pkg_install, which every tree has), for OPSYS, OS_VERSION and
 * MACHINE_ARCH: the platform as pkgsrc names it, OPSYS-OS_VERSION-MACHINE_ARCH
 * (pkgsrc's MACHINE_PLATFORM). Rejects with PkgsrcScanError when bmake fails.
 */
export async function readPlatform(host: PkgsrcHost, signal?: AbortSignal): Promise<{ opsys: string; osVersion: string; machineArch: string; platform: string }> {
  const argv = [host.bmake, "-C", posix.join(host.treeDir, PLATFORM_LOCATION), "show-vars", "VARNAMES=OPSYS OS_VERSION MACHINE_ARCH"];
  const run = await runOnce(host, argv, signal);
  if (run.killed !== undefined || run.status !== 0) {
    throw new PkgsrcScanError(withTail(`cannot read the platform from bmake in ${PLATFORM_LOCATION}: ${run.killed ?? `exited with status ${run.status}`}`, run.stderr));
  }
  const lines = run.stdout.split("\n");
  const [opsys, osVersion, machineArch] = lines.map((l) => l.trim());
  if (!opsys || !osVersion || !machineArch) {
    throw new PkgsrcScanError(withTail(`bmake gave no complete platform (OPSYS ${JSON.stringify(opsys)}, OS_VERSION ${JSON.stringify(osVersion)}, MACHINE_ARCH ${JSON.stringify(machineArch)})`, run.stderr));
  }
  return { opsys, osVersion, machineArch, platform: `${opsys}-${osVersion}-${machineArch}` };
}

/** Options of unchangedSince. */
export interface UnchangedOptions {
  /** The record's location: relative SCAN_DEPENDS paths (Makefile, ../../mk/...) are relative to its directory. */
  readonly location?: string;
  /**
   * The sandbox's binds: an absolute path inside the sandbox (/usr/pkg/etc/mk.conf)
   * is looked up at its source on the host (the slot's prefix).
   */
  readonly binds?: SandboxSpec["binds"];
  /** path → mtime in ms (-1: missing), shared across calls as pscan caches its stats. */
  readonly statCache?: Map<string, number>;
}

/**
 * unchangedSince is pbulk's reuse_scan_results test for one record: true
 * when none of its SCAN_DEPENDS files was modified at or after lastScannedMs
 * (pscan: mtime >= the old scan's). A missing file counts as changed; an
 * empty list counts as unchanged, as in pscan. Absolute paths are taken as
 * the sandbox saw them and mapped through options.binds; relative ones are
 * resolved against the location's directory in treeDir (the host's path of
 * the tree), or against treeDir itself ("../../" stripped) without a location.
 */
export async function unchangedSince(scanDepends: readonly string[], treeDir: string, lastScannedMs: number, options: UnchangedOptions = {}): Promise<boolean> {
  const cache = options.statCache ?? new Map<string, number>();
  for (const entry of scanDepends.flatMap((s) => words(s))) {
    const path = hostPath(entry, treeDir, options);
    let mtime = cache.get(path);
    if (mtime === undefined) {
      mtime = await stat(path).then((s) => s.mtimeMs, () => -1);
      cache.set(path, mtime);
    }
    if (mtime < 0 || mtime >= lastScannedMs) return false;
  }
  return true;
}

function hostPath(entry: string, treeDir: string, options: UnchangedOptions): string {
  if (entry.startsWith("/")) {
    const path = normalize(entry);
    let best: { source: string; target: string } | undefined;
    for (const bind of options.binds ?? []) {
      const target = normalize(bind.target).replace(/\/+$/, "");
      if ((path === target || path.startsWith(`${target}/`)) && (best === undefined || target.length > best.target.length)) {
        best = { source: bind.source, target };
      }
    }
    return best === undefined ? path : join(best.source, path.slice(best.target.length));
  }
  if (options.location !== undefined) return join(treeDir, options.location, entry);
  return join(treeDir, entry.startsWith("../../") ? entry.slice("../../".length) : entry);
}

/**
 * writeMkConf appends extraLines to the prefix's etc/mk.conf (after
 * resetPrefix; the kit's own settings stay), so one group of agents can scan
 * and build with settings of its own: PKG_FAIL_REASON for a package, options,
 * ACCEPTABLE_LICENSES. The lines are make syntax, given by the operator.
 * Returns the file's path.
 *
 * Every record lists mk.conf in SCAN_DEPENDS, so its modification time
 * decides whether unchangedSince reuses records. By default it becomes "now"
 * (everything scanned before looks stale). A prefix is reset before every
 * job, though, so pass options.mtime, the time the operator's lines last
 * changed (their file's mtime): the file then gets the later of that and the
 * kit's own mk.conf time, the same after every reset, and records survive
 * resets until the lines or the kit really change.
 */
export async function writeMkConf(prefixDir: string, extraLines: string, options: { readonly mtime?: Date } = {}): Promise<string> {
  const path = join(prefixDir, "etc", "mk.conf");
  const current = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    throw new PkgsrcScanError(`no mk.conf at ${path} (unpack the bootstrap kit first): ${error.code ?? error.message}`);
  });
  const kitTime = (await stat(path)).mtime;
  const separator = current === "" || current.endsWith("\n") ? "" : "\n";
  const body = extraLines.endsWith("\n") ? extraLines : `${extraLines}\n`;
  await appendFile(path, `${separator}\n# added by pkgfarm for this agent\n${body}`);
  if (options.mtime !== undefined) {
    const when = options.mtime.getTime() > kitTime.getTime() ? options.mtime : kitTime;
    await utimes(path, when, when);
  }
  return path;
}

// ---- running the driver ----------------------------------------------------

function bmakeEnv(host: PkgsrcHost): Record<string, string> {
  return { PATH: `${dirname(host.bmake)}:/usr/sbin:/usr/bin:/sbin:/bin`, ...host.env };
}

function spawnSandboxed(host: PkgsrcHost, argv: readonly string[], stdin: "pipe" | "ignore"): ChildProcessByStdio<Writable | null, Readable, Readable> {
  const command = sandboxCommand(host.sandbox, { binds: host.binds, ...(host.chrootDir === undefined ? {} : { chrootDir: host.chrootDir }) }, argv);
  // Its own process group: with sandbox "none" there is no PID namespace,
  // and a group kill is what reaches bmake's children.
  return spawn(command[0]!, command.slice(1), { env: bmakeEnv(host), stdio: [stdin, "pipe", "pipe"], detached: true }) as ChildProcessByStdio<Writable | null, Readable, Readable>;
}

function killGroup(child: { pid?: number | undefined }): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** collect runs the driver over dirs and returns every run, in order. */
async function collect(host: PkgsrcHost, mode: DriverMode, dirs: readonly string[], signal?: AbortSignal): Promise<RawRun[]> {
  const runs = new Map<string, RawRun>();
  await runQueued(host, mode, [...dirs], 1, signal, (run) => runs.set(run.location, run));
  return dirs.map((d) => runs.get(d)!);
}

/**
 * runQueued hands the queue's locations to `workers` sandboxes, one location
 * at a time each, and calls onRun once per location. A sandbox whose location
 * times out is killed and replaced; one that dies on its own fails the
 * location it was on (and, if it never got going, the one it was given).
 */
async function runQueued(host: PkgsrcHost, mode: DriverMode, queue: string[], workers: number, signal: AbortSignal | undefined, onRun: (run: RawRun) => void): Promise<void> {
  const active = new Set<{ pid?: number | undefined }>();
  let aborted = false;
  const onAbort = (): void => {
    aborted = true;
    for (const child of active) killGroup(child);
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const worker = async (): Promise<void> => {
      while (queue.length > 0 && !aborted) {
        await runSandbox(host, mode, queue, active, () => aborted, onRun);
      }
    };
    await Promise.all(Array.from({ length: Math.min(workers, Math.max(1, queue.length)) }, worker));
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  signal?.throwIfAborted();
}

/**
 * One sandbox: scans from the shared queue until it is empty or a location
 * times out. One location waits in the driver's stdin behind the running one,
 * so the driver never waits for this process to be scheduled; when the
 * sandbox ends early, what it had not begun goes back to the queue.
 */
function runSandbox(
  host: PkgsrcHost,
  mode: DriverMode,
  queue: string[],
  active: Set<{ pid?: number | undefined }>,
  isAborted: () => boolean,
  onRun: (run: RawRun) => void,
): Promise<void> {
  const marker = `@@pkgfarm-scan-${randomBytes(8).toString("hex")}`;
  const child = spawnSandboxed(host, ["/bin/sh", "-c", DRIVER, "pkgfarm-scan", marker, host.bmake, host.treeDir, mode], "pipe");
  active.add(child);
  const stdin = child.stdin!;
  stdin.on("error", () => {
    // EPIPE when the sandbox died; its exit reports that.
  });

  const sent: string[] = []; // written to the driver, not begun
  // Begun on stdout and not reported yet, oldest first: the driver may begin
  // the next location before this process has read the last one's stderr.
  const begun: { location: string; startedAt: number }[] = [];
  const outDone: { status: number; at: number; stdout: string }[] = [];
  let running: { location: string; startedAt: number } | undefined;
  let began = 0;
  let stdinEnded = false;
  let timer: NodeJS.Timeout | undefined;
  let killedWhy: string | undefined;

  const beginLine = `${marker} begin\n`;
  const endOut = new RegExp(`\\n${marker} end (\\d+)\\n`);
  const endErr = `\n${marker} end\n`;
  let outBuf = "";
  let outText = "";
  let inOut = false;
  let errBuf = "";
  let errText = "";
  let inErr = false;
  const errDone: string[] = [];

  const feed = (): void => {
    while (!stdinEnded && sent.length + begun.length < 2) {
      const location = isAborted() ? undefined : queue.shift();
      if (location === undefined) {
        stdinEnded = true;
        stdin.end();
        return;
      }
      sent.push(location);
      stdin.write(`${location}\n`);
    }
  };
  const maybeFinish = (): void => {
    while (begun.length > 0 && outDone.length > 0 && errDone.length > 0) {
      const { location, startedAt } = begun.shift()!;
      const out = outDone.shift()!;
      onRun({ location, status: out.status, stdout: out.stdout, stderr: errDone.shift()!, durationMs: Math.round(out.at - startedAt) });
    }
    feed();
  };
  const begin = (): void => {
    const location = sent.shift();
    if (location === undefined) return; // cannot happen: the driver only begins what it read
    began++;
    running = { location, startedAt: performance.now() };
    begun.push(running);
    timer = setTimeout(() => {
      killedWhy = `timed out after ${Number((host.timeoutMs / 1000).toFixed(3))} s`;
      killGroup(child);
    }, Math.min(Math.max(host.timeoutMs, 0), 2 ** 31 - 1));
  };

  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    outBuf += chunk;
    for (;;) {
      if (!inOut) {
        const i = outBuf.indexOf(beginLine);
        if (i < 0) return;
        outBuf = outBuf.slice(i + beginLine.length);
        inOut = true;
        outText = "";
        begin();
      }
      const m = endOut.exec(outBuf);
      if (m === null) {
        // Keep what could be the start of an end marker; the rest is output.
        const keep = Math.max(0, outBuf.length - (marker.length + 32));
        outText += outBuf.slice(0, keep);
        outBuf = outBuf.slice(keep);
        return;
      }
      outText += outBuf.slice(0, m.index);
      outBuf = outBuf.slice(m.index + m[0].length);
      inOut = false;
      clearTimeout(timer);
      running = undefined;
      outDone.push({ status: Number(m[1]), at: performance.now(), stdout: outText });
      maybeFinish();
    }
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    errBuf += chunk;
    for (;;) {
      if (!inErr) {
        const i = errBuf.indexOf(beginLine);
        if (i < 0) {
          // Outside any location: the sandbox's own complaints (a failed mount).
          const keep = Math.max(0, errBuf.length - beginLine.length);
          errText = keepTail(errText + errBuf.slice(0, keep));
          errBuf = errBuf.slice(keep);
          return;
        }
        errBuf = errBuf.slice(i + beginLine.length);
        inErr = true;
        errText = "";
      }
      const i = errBuf.indexOf(endErr);
      if (i < 0) {
        const keep = Math.max(0, errBuf.length - endErr.length);
        errText = keepTail(errText + errBuf.slice(0, keep));
        errBuf = errBuf.slice(keep);
        return;
      }
      errDone.push(keepTail(errText + errBuf.slice(0, i)));
      errText = "";
      errBuf = errBuf.slice(i + endErr.length);
      inErr = false;
      maybeFinish();
    }
  });

  return new Promise<void>((resolve) => {
    let spawnError = "";
    child.once("error", (error) => {
      spawnError = error.message;
    });
    child.once("close", (code, sig) => {
      clearTimeout(timer);
      active.delete(child);
      if (!isAborted()) {
        const ended = spawnError !== "" ? `could not start the sandbox: ${spawnError}`
          : `did not finish: the sandbox ${sig !== null ? `was killed by ${sig}` : `exited with status ${code}`}`;
        // A sandbox that never began anything fails the first location it
        // was given, so a sandbox that cannot start cannot loop forever.
        // Once the output is closed, only the running location is unreported.
        const failed = running ?? (began === 0 && sent.length > 0 ? { location: sent.shift()!, startedAt: performance.now() } : undefined);
        if (failed !== undefined) {
          onRun({
            location: failed.location,
            status: null,
            stdout: "",
            stderr: keepTail(errText + errBuf),
            durationMs: Math.round(performance.now() - failed.startedAt),
            killed: killedWhy ?? ended,
          });
        }
        queue.unshift(...sent);
      }
      resolve();
    });
    feed();
  });
}

function keepTail(text: string): string {
  return text.length > STDERR_KEEP ? text.slice(-STDERR_KEEP) : text;
}

/** runOnce runs one argv in a sandbox of host's and collects everything. */
function runOnce(host: PkgsrcHost, argv: readonly string[], signal?: AbortSignal): Promise<RawRun> {
  signal?.throwIfAborted();
  const started = performance.now();
  const child = spawnSandboxed(host, argv, "ignore");
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr = keepTail(stderr + s)));
  let killed: string | undefined;
  const timer = setTimeout(() => {
    killed = `timed out after ${Number((host.timeoutMs / 1000).toFixed(3))} s`;
    killGroup(child);
  }, Math.min(Math.max(host.timeoutMs, 0), 2 ** 31 - 1));
  const onAbort = (): void => killGroup(child);
  signal?.addEventListener("abort", onAbort, { once: true });
  return new Promise<RawRun>((resolve, reject) => {
    let spawnError: string | undefined;
    child.once("error", (error) => (spawnError = error.message));
    child.once("close", (code) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      resolve({
        location: argv.join(" "),
        status: code,
        stdout,
        stderr,
        durationMs: Math.round(performance.now() - started),
        ...(spawnError !== undefined ? { killed: `could not start: ${spawnError}` } : killed !== undefined ? { killed } : {}),
      });
    });
  });
}
