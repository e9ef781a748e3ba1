// Scans of a tree that is not pkgsrc, through a scan command: the same
// contract as the built-in pkgsrc scan (pkgsrc/scan.ts), so the agent's scan
// executor does not care which one it has, and `pkgfarm up` on the bundled
// example tree scans through its agents too.
//
// The scan command follows examples/bin/scan-one.mjs (and depgraph's
// --scan-helper):
//   command... LOCATION   prints the pbulk-index records of that location
//                         (PKG_LOCATION included or not: it is added), exit 0;
//                         a problem goes to stderr with a non-zero exit.
//   command... --all      prints the records of every package; a package it
//                         cannot scan is named on stderr as "...: LOCATION: why"
//                         and the exit status is non-zero, the rest still printed.
// It runs with PKGFARM_TREE (and PKGFARM_LOCATION for one location) in its
// environment and the tree as its working directory, never through a shell,
// one process per location (runner.ts: own process group, timeout, cancel),
// optionally inside a sandbox (sandbox.ts).
//
// API (add rather than rename):
//   interface ScanCommandHost { command, treeDir, env?, timeoutMs, concurrency?, sandbox?, binds?, chrootDir? }
//   scanLocations(host, locations, signal?, onResult?): Promise<LocationScan[]>
//   enumerateLocations(host, signal?): Promise<string[]>

import { runBuildCommand } from "./runner.js";
import { sandboxCommand, type SandboxKind, type SandboxSpec } from "./sandbox.js";
import { addPkgLocation, locationProblem, PkgsrcScanError, scanEachLocation, withTail, type LocationScan } from "./pkgsrc/scan.js";

/** ScanCommandHost: how this host scans a tree with a scan command. */
export interface ScanCommandHost {
  /** argv of the scan command; the location (or --all) is appended. */
  readonly command: readonly string[];
  /** The tree's root: PKGFARM_TREE and the command's working directory. */
  readonly treeDir: string;
  /** The command's whole environment apart from PKGFARM_TREE and PKGFARM_LOCATION (nothing is inherited). */
  readonly env?: Readonly<Record<string, string>>;
  /** Limit for one run of the command, in milliseconds (--all included). */
  readonly timeoutMs: number;
  /** Commands running at once; default 1. */
  readonly concurrency?: number;
  /** Run the command in a sandbox of this kind (default "none"). */
  readonly sandbox?: SandboxKind;
  readonly binds?: SandboxSpec["binds"];
  readonly chrootDir?: string;
}

const STDERR_KEEP = 16 * 1024;

interface Run {
  readonly ok: boolean;
  readonly failure: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
}

/**
 * scanLocations runs the command once per distinct location (results in the
 * order of first appearance). A location that fails carries the error with
 * the tail of the command's stderr; so does one whose output names another
 * location. Aborting cancels the running commands and rejects with the
 * signal's reason.
 */
export function scanLocations(
  host: ScanCommandHost,
  locations: readonly string[],
  signal?: AbortSignal,
  onResult?: (result: LocationScan) => void,
): Promise<LocationScan[]> {
  return scanEachLocation(locations, signal, onResult, async (queue, report) => {
    const worker = async (): Promise<void> => {
      for (let location = queue.shift(); location !== undefined && signal?.aborted !== true; location = queue.shift()) {
        const run = await runCommand(host, [location], { PKGFARM_LOCATION: location }, signal);
        if (signal?.aborted) break;
        report(interpret(location, run));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(host.concurrency ?? 1, queue.length)) }, worker));
  });
}

function interpret(location: string, run: Run): LocationScan {
  const base = { location, durationMs: run.durationMs };
  if (!run.ok) return { ...base, pbulkIndex: "", error: withTail(`the scan command ${run.failure}`, run.stderr) };
  const foreign = printedLocations(run.stdout).filter((l) => l !== location);
  if (foreign.length > 0) {
    return { ...base, pbulkIndex: "", error: `the scan of ${location} printed records for ${[...new Set(foreign)].join(", ")}` };
  }
  const { pbulkIndex, problem } = addPkgLocation(location, run.stdout);
  if (problem !== undefined) return { ...base, pbulkIndex: "", error: withTail(problem.replace("pbulk-index", "the scan command"), run.stderr) };
  return { ...base, pbulkIndex, error: "" };
}

/**
 * enumerateLocations runs `command... --all` and returns the locations of
 * the records it printed, in order, plus those its stderr names as broken
 * ("...: LOCATION: why"), so they are scanned one by one and get their
 * errors. Rejects (PkgsrcScanError) when the command fails without printing
 * anything, or prints a malformed location.
 */
export async function enumerateLocations(host: ScanCommandHost, signal?: AbortSignal): Promise<string[]> {
  const run = await runCommand(host, ["--all"], {}, signal);
  signal?.throwIfAborted();
  const found = printedLocations(run.stdout);
  if (!run.ok) {
    for (const line of run.stderr.split("\n")) {
      const m = /^[^:]*: ([^\s:]+\/[^\s:]+): /.exec(line);
      if (m !== null && locationProblem(m[1]!) === undefined) found.push(m[1]!);
    }
    if (found.length === 0) throw new PkgsrcScanError(withTail(`cannot enumerate ${host.treeDir}: the scan command --all ${run.failure}`, run.stderr));
  }
  const bad = found.filter((l) => locationProblem(l) !== undefined);
  if (bad.length > 0) throw new PkgsrcScanError(`the scan command --all printed malformed locations: ${bad.slice(0, 5).map((l) => JSON.stringify(l)).join(", ")}`);
  return [...new Set(found)];
}

function printedLocations(output: string): string[] {
  const out: string[] = [];
  for (const line of output.split("\n")) {
    if (line.startsWith("PKG_LOCATION=")) out.push(line.slice("PKG_LOCATION=".length).trim());
  }
  return out;
}

async function runCommand(host: ScanCommandHost, extra: readonly string[], env: Record<string, string>, signal?: AbortSignal): Promise<Run> {
  const argv = [...host.command, ...extra];
  const kind = host.sandbox ?? "none";
  const command = kind === "none" && (host.binds ?? []).length === 0 ? argv
    : sandboxCommand(kind, { binds: host.binds ?? [], ...(host.chrootDir === undefined ? {} : { chrootDir: host.chrootDir }) }, argv);
  const stdout: Buffer[] = [];
  let stderr = "";
  const result = await runBuildCommand({
    command,
    env: { ...host.env, ...env, PKGFARM_TREE: host.treeDir },
    cwd: host.treeDir,
    timeoutMs: host.timeoutMs,
    killGraceMs: 1000,
    ...(signal === undefined ? {} : { signal }),
    onOutput(chunk, stream) {
      if (stream === "stdout") stdout.push(Buffer.from(chunk));
      else {
        stderr += Buffer.from(chunk).toString("utf8");
        if (stderr.length > STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
      }
    },
  });
  return { ok: result.failureReason === "", failure: result.failureReason, stdout: Buffer.concat(stdout).toString("utf8"), stderr, durationMs: result.durationMs };
}
