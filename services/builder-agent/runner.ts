// runBuildCommand runs one build command in a process group of its own.
//
// A package build is rarely one process: make runs shells that run compilers,
// configure scripts leave test daemons behind, `sh -c 'x & wait'` forks.
// Killing only the direct child would leave those running and holding the
// output pipes open, so the build would neither stop nor finish. The child is
// therefore started as the leader of a new process group (`detached: true`),
// and every kill goes to the whole group (`process.kill(-pid, ...)`).
//
// What this cannot reach: a process that calls setsid() or setpgid() leaves
// the group on purpose. Containing those needs a cgroup, which is the job of
// whatever runs the agent, not of this module.

import { spawn, type ChildProcessByStdio } from "node:child_process";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { isDirectory } from "../shared/file-kind.js";

/** BuildCommandSpec says what to run, where, for how long, and where its output goes. */
export interface BuildCommandSpec {
  /** argv; [0] is the program. Never run through a shell. */
  readonly command: readonly string[];
  /**
   * The complete environment of the child (nothing inherited implicitly).
   * PATH, when the program is not given as a path, is looked up in this
   * environment, so a build without PATH must name its program absolutely.
   */
  readonly env: Readonly<Record<string, string>>;
  /** Working directory of the child; it must exist. */
  readonly cwd: string;
  /**
   * Wall-clock limit in milliseconds; on expiry the whole process group gets
   * SIGTERM, then SIGKILL after killGraceMs. Values above about 24.8 days are
   * capped there (the longest a Node timer can wait).
   */
  readonly timeoutMs: number;
  /** Milliseconds between SIGTERM and SIGKILL to the group; default 5000. */
  readonly killGraceMs?: number;
  /**
   * Aborting cancels the build: same group kill as a timeout. A signal that is
   * already aborted starts nothing and resolves as cancelled.
   */
  readonly signal?: AbortSignal;
  /**
   * Output as it happens, stdout and stderr interleaved in arrival order.
   * If it throws, the build is stopped like a cancel and runBuildCommand
   * rejects with that error once the group is gone: a caller that cannot
   * take the log should not get a build it cannot show.
   */
  onOutput(chunk: Uint8Array, stream: "stdout" | "stderr"): void;
  /** Told the child's pid once it runs: the leader of the build's process group (for measuring what it uses). */
  onSpawn?(pid: number): void;
}

/** BuildRunResult is how one build command ended. */
export interface BuildRunResult {
  /** Exit status, or null when the child was killed by a signal or never started. */
  readonly exitCode: number | null;
  /** Signal that killed the child, or null. */
  readonly signal: NodeJS.Signals | null;
  /** The wall-clock limit expired and the group was killed. */
  readonly timedOut: boolean;
  /** The spec's signal was aborted and the group was killed. */
  readonly cancelled: boolean;
  /** From the call to the child's exit with its output closed, in milliseconds. */
  readonly durationMs: number;
  /** One sentence for a failure ("exited with status 2", "timed out after 30 s", "cancelled", "could not start: ENOENT ..."), "" on success. */
  readonly failureReason: string;
}

const DEFAULT_KILL_GRACE_MS = 5000;
// setTimeout fires at once (with a warning) for anything longer than this.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * runBuildCommand starts spec.command as its own process group and resolves
 * once the child has exited and its stdout and stderr are closed. It never
 * rejects for a build that fails or cannot start; that is a result with a
 * failureReason. It rejects only with an error thrown by spec.onOutput.
 *
 * When the child exits on its own, whatever it left running in its group is
 * stopped too (SIGTERM, then SIGKILL after the grace period): the build is
 * over, and a leftover holding the output pipe would otherwise keep the
 * result from ever being reported.
 */
export function runBuildCommand(spec: BuildCommandSpec): Promise<BuildRunResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const [program, ...args] = spec.command;
  if (program === undefined) {
    return Promise.resolve(notStarted("could not start: the command is empty", elapsed()));
  }
  if (spec.signal?.aborted) {
    return Promise.resolve({ ...notStarted("cancelled", elapsed()), cancelled: true });
  }

  return new Promise<BuildRunResult>((resolve, reject) => {
    let child: ChildProcessByStdio<null, Readable, Readable>;
    try {
      child = spawn(program, args, {
        cwd: spec.cwd,
        env: { ...spec.env },
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (error: unknown) {
      // spawn throws, rather than emitting "error", for arguments it refuses
      // outright (a NUL byte in argv or env) and for some errno values.
      resolve(notStarted(`could not start: ${describeSpawnError(error, program, spec.cwd)}`, elapsed()));
      return;
    }

    if (child.pid !== undefined) spec.onSpawn?.(child.pid);
    let exited = false;
    let settled = false;
    let timedOut = false;
    let cancelled = false;
    let stopping = false;
    let outputFailed = false;
    let outputError: unknown;
    let killTimer: NodeJS.Timeout | undefined;

    const signalGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // ESRCH: the group is already empty, which is what we wanted. Nothing
        // else (EPERM) can be acted on here, and throwing from a timer would
        // take the agent down with the build.
      }
    };
    // Idempotent: a timeout, a cancel and the leader's own exit may all ask.
    const stopGroup = (): void => {
      if (stopping) return;
      stopping = true;
      signalGroup("SIGTERM");
      killTimer = setTimeout(() => signalGroup("SIGKILL"), spec.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
    };

    // A timeout or cancel after the leader exited is not the build's fault:
    // its outcome is already known and stopGroup is already under way.
    const deadline = setTimeout(
      () => {
        if (exited) return;
        timedOut = true;
        stopGroup();
      },
      Math.min(Math.max(spec.timeoutMs, 0), MAX_TIMER_MS),
    );
    const onAbort = (): void => {
      if (exited || timedOut) return;
      cancelled = true;
      stopGroup();
    };
    spec.signal?.addEventListener("abort", onAbort, { once: true });

    const finish = (result: BuildRunResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(killTimer);
      spec.signal?.removeEventListener("abort", onAbort);
      if (outputFailed) reject(outputError);
      else resolve(result);
    };

    const deliver =
      (stream: "stdout" | "stderr") =>
      (chunk: Buffer): void => {
        // After a failed delivery the pipes are still read, so the child is
        // never blocked on a full pipe while it is being stopped.
        if (outputFailed) return;
        try {
          spec.onOutput(chunk, stream);
        } catch (error: unknown) {
          outputFailed = true;
          outputError = error;
          stopGroup();
        }
      };
    child.stdout.on("data", deliver("stdout"));
    child.stderr.on("data", deliver("stderr"));

    child.once("error", (error) => {
      // With a pid the child is running and "close" will follow; without
      // one it never started ("close" also follows, with nothing to add).
      if (child.pid !== undefined) return;
      finish(notStarted(`could not start: ${describeSpawnError(error, program, spec.cwd)}`, elapsed()));
    });
    child.once("exit", () => {
      exited = true;
      stopGroup();
    });
    child.once("close", (exitCode: number | null, signal: NodeJS.Signals | null) => {
      finish({
        exitCode,
        signal,
        timedOut,
        cancelled,
        durationMs: elapsed(),
        failureReason: failureReason(exitCode, signal, timedOut, cancelled, spec.timeoutMs),
      });
    });
  });
}

function failureReason(
  exitCode: number | null,
  signal: NodeJS.Signals | null,
  timedOut: boolean,
  cancelled: boolean,
  timeoutMs: number,
): string {
  if (cancelled) return "cancelled";
  if (timedOut) return `timed out after ${formatSeconds(timeoutMs)}`;
  if (signal !== null) return `killed by signal ${signal}`;
  if (exitCode !== 0) return `exited with status ${exitCode}`;
  return "";
}

function notStarted(failureReason: string, durationMs: number): BuildRunResult {
  return { exitCode: null, signal: null, timedOut: false, cancelled: false, durationMs, failureReason };
}

// Node reports a missing working directory as "spawn <program> ENOENT", which
// blames the program; looking at the directory (only on this failure path)
// names the one that is actually missing.
function describeSpawnError(error: unknown, program: string, cwd: string): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === "ENOENT") {
    return isDirectory(cwd) ? `ENOENT: no program ${program}` : `ENOENT: no working directory ${cwd}`;
  }
  return code === undefined ? message : `${code}: ${message}`;
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}
