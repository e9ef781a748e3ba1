// Executor is what the agent hands a job to. It follows buildbarn's
// BuildExecutor (bb-remote-execution pkg/builder/build_executor.go): one small
// interface, one implementation per way of building (the operator's build
// command, pbulk's pkg-build on a pkgsrc tree, a scan), and one-file wrappers
// that each add a single concern around any of them (fetch the dependencies,
// check an incremental job's package, upload the package, frame the log).
// The agent only composes them; none of them knows about the stream.

import type { BinaryPackage, ScanOutput } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import { JobOutcome } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { UsageMeter } from "../usage.js";
import type { JobWorkdir } from "../workdir.js";

/**
 * JobLog takes a job's output as it happens. phase names the log it belongs
 * to ("checksum", "build", ...; "" for output outside any phase); each phase
 * becomes a log of its own beside the job's whole log (LogChunk.phase).
 */
export interface JobLog {
  write(phase: string, data: Uint8Array | string): void;
}

/** JobContext is what an executor is given beside the assignment. */
export interface JobContext {
  /** The job's own empty directory, with depends/ and out/ inside. */
  readonly workdir: JobWorkdir;
  /** Which of the host's slots runs the job (0-based); it selects the sandbox. */
  readonly slot: number;
  readonly log: JobLog;
  /** Aborted when the job is cancelled or the agent stops; the executor must stop its processes. */
  readonly signal: AbortSignal;
  /**
   * Measures what the job uses (peak memory of its processes, disk of its
   * work directories): an executor gives it every process it starts
   * (runBuildCommand's onSpawn) and the directories it works in.
   */
  readonly usage?: UsageMeter;
}

/** JobResult is how a job ended, as the agent reports it in JobFinished. */
export interface JobResult {
  readonly outcome: JobOutcome;
  readonly durationMs: number;
  /** One sentence, "" on success; names the phase when one failed. */
  readonly failureReason: string;
  /** The phase that failed ("checksum", "build", ...), "" when none or unknown. */
  readonly failedPhase: string;
  /** Incremental builds: why the package was rebuilt or found up to date. */
  readonly decision: string;
  /** The package file the executor made, on success; "" for none (scans, up to date). */
  readonly outputPath: string;
  /** The stored package: set by the upload wrapper, or the current one for up to date. */
  readonly binaryPackage?: BinaryPackage;
  /** Scan jobs: what was scanned. */
  readonly scanOutput?: ScanOutput;
  /** The job was stopped by its signal; nothing is to be reported. */
  readonly cancelled: boolean;
}

/** Executor runs one job. It never throws for a build that fails: that is a result. */
export interface Executor {
  /** Reported in AgentHello.executor: "command", "pkgsrc", or "scan". */
  readonly name: string;
  run(job: JobAssignment, ctx: JobContext): Promise<JobResult>;
}

/** succeeded, failed and cancelled make the three common results. */
export function succeeded(durationMs: number, outputPath: string, extra: Partial<JobResult> = {}): JobResult {
  return { outcome: JobOutcome.SUCCEEDED, durationMs, failureReason: "", failedPhase: "", decision: "", outputPath, cancelled: false, ...extra };
}

export function failed(durationMs: number, failureReason: string, failedPhase = "", extra: Partial<JobResult> = {}): JobResult {
  return { outcome: JobOutcome.FAILED, durationMs, failureReason, failedPhase, decision: "", outputPath: "", cancelled: false, ...extra };
}

export function cancelled(durationMs: number): JobResult {
  return { outcome: JobOutcome.FAILED, durationMs, failureReason: "cancelled", failedPhase: "", decision: "", outputPath: "", cancelled: true };
}

/** elapsedSince gives whole milliseconds since a performance.now() reading. */
export function elapsedSince(started: number): number {
  return Math.round(performance.now() - started);
}
