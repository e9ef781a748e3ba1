/**
 * What the agent does when the dispatcher refuses one of its messages or an
 * upload fails, decided apart from the stream so it is tested on its own. The rule is
 * that neither side may be left waiting: a job ends in a result, goes back
 * (released), or is forgotten when the dispatcher no longer holds it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { ConnectError } from "@connectrpc/connect";
import { JobOutcome, type BinaryPackage } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { Refusal, RunningJob } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { grpcCodeName } from "../shared/index.js";

const jobKey = (job: RunningJob) => `${job.buildId}\u0000${job.pkgname}\u0000${job.leaseId}`;

/**
 * ReportedJobs remembers the outcome of each result the agent sent, for a
 * while, so that a refusal of it (which comes back on the stream within a
 * round trip) still finds the job after the agent has let go of it. A result
 * that is taken gets no answer, so entries are dropped by age and count.
 */
export class ReportedJobs {
  private readonly entries = new Map<string, { outcome: JobOutcome; at: number }>();

  constructor(private readonly keepMs = 10 * 60_000, private readonly max = 4096) {}

  note(job: RunningJob, outcome: JobOutcome, now: number): void {
    const key = jobKey(job);
    this.entries.delete(key);
    this.entries.set(key, { outcome, at: now });
    // Oldest first, as a Map iterates in insertion order.
    for (const [k, e] of this.entries) {
      if (this.entries.size <= this.max && now - e.at < this.keepMs) break;
      this.entries.delete(k);
    }
  }

  /** The outcome the agent reported for the job under this lease, once; undefined if none is remembered. */
  take(job: RunningJob): JobOutcome | undefined {
    const key = jobKey(job);
    const entry = this.entries.get(key);
    this.entries.delete(key);
    return entry?.outcome;
  }

  get size(): number {
    return this.entries.size;
  }
}

/** RefusalAction is what the agent does about one refusal. */
export type RefusalAction =
  /** Give the job back (send released): the dispatcher may still hold it, and nothing else would end it. */
  | { readonly kind: "release"; readonly job: RunningJob; readonly reason: string }
  /** Stop the job if it still runs here and forget it: the dispatcher does not hold it. */
  | { readonly kind: "stop"; readonly job: RunningJob }
  /** Nothing to do but log it. */
  | { readonly kind: "log" };

/**
 * refusalAction decides about a refusal.
 *
 * - A refused result for a job the agent reported: a failure is refused only
 *   when the dispatcher no longer holds the job (FAILED_PRECONDITION), so it
 *   is forgotten. A success may be refused while the job is still held (no
 *   matching upload, say after a dispatcher restart lost it), so the job is
 *   given back to be built again; if the dispatcher does not hold it either,
 *   the give-back is refused in turn, and that refusal is only logged.
 * - A refused acceptance or log chunk with FAILED_PRECONDITION: the
 *   dispatcher does not hold the job, so building it on is wasted.
 * - Anything else (a log the dispatcher could not store, a refused
 *   give-back, a malformed message) is logged.
 */
export function refusalAction(refusal: Refusal, reported: ReportedJobs): RefusalAction {
  const job = refusal.job;
  if (job === undefined) return { kind: "log" };
  switch (refusal.message) {
    case "finished": {
      const outcome = reported.take(job);
      if (outcome === undefined) return { kind: "log" };
      if (outcome === JobOutcome.FAILED && refusal.code === "FAILED_PRECONDITION") return { kind: "log" };
      return { kind: "release", job, reason: `the dispatcher refused the result (${refusal.code}: ${refusal.reason})` };
    }
    case "accepted":
    case "log":
      return refusal.code === "FAILED_PRECONDITION" ? { kind: "stop", job } : { kind: "log" };
    default:
      return { kind: "log" };
  }
}

/** UploadFailureStep is what the agent does after a failed UploadPackage. */
export type UploadFailureStep =
  /** Try again after the delay (the link or the dispatcher had a moment). */
  | { readonly kind: "retry"; readonly delayMs: number }
  /** Report the job failed in its upload phase: the package cannot be stored, and a rebuild elsewhere may do better. */
  | { readonly kind: "fail"; readonly reason: string }
  /** Give the job back: the upload kept failing for reasons that are not the package's. */
  | { readonly kind: "release"; readonly reason: string }
  /** Forget the job: the dispatcher no longer holds it (given to another agent, or this agent's stream was lost). */
  | { readonly kind: "forget" };

/** Codes that say nothing about the package: the link broke, or the dispatcher had trouble of its own. */
const TRANSIENT = new Set(["UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "ABORTED", "INTERNAL", "CANCELED"]);

/** How many times one package is uploaded before the job is given back. */
export const MAX_UPLOAD_TRIES = 3;

/**
 * uploadFailureStep decides after the tries-th failed upload, from the gRPC
 * code name (e.g. "RESOURCE_EXHAUSTED") and message of the failure.
 */
export function uploadFailureStep(code: string, message: string, tries: number): UploadFailureStep {
  if (code === "FAILED_PRECONDITION") return { kind: "forget" };
  if (TRANSIENT.has(code)) {
    if (tries < MAX_UPLOAD_TRIES) return { kind: "retry", delayMs: 500 * 2 ** (tries - 1) };
    return { kind: "release", reason: `the package upload failed ${tries} times; last: ${code}: ${message}` };
  }
  // DATA_LOSS, RESOURCE_EXHAUSTED (over the size limit), INVALID_ARGUMENT, ...
  return { kind: "fail", reason: `the package upload was refused (${code}): ${message}` };
}

/** UploadSettled is how an upload with its retries ended. */
export type UploadSettled =
  | { readonly kind: "uploaded"; readonly binaryPackage: BinaryPackage }
  /** The stream to the dispatcher is down: keep the result and report it again after the next welcome. */
  | { readonly kind: "later" }
  | Exclude<UploadFailureStep, { kind: "retry" }>;

export interface UploadRetryOptions {
  /** Aborted when the job is cancelled: the retries stop and the job is forgotten. */
  readonly signal: AbortSignal;
  /** Whether the agent's stream to the dispatcher is up, so a result can go out. */
  readonly connected: () => boolean;
  /** Called after each failed try, for the log. */
  readonly onFailure?: (code: string, message: string, tries: number) => void;
}

/**
 * uploadUntilSettled runs upload until it succeeds or uploadFailureStep says
 * how the job ends, waiting between tries. It never leaves the job hanging:
 * every outcome is a package, a failure to report, a give-back, or "later"
 * (the stream is down; the result is reported again on reconnect).
 */
export async function uploadUntilSettled(upload: () => Promise<BinaryPackage>, options: UploadRetryOptions): Promise<UploadSettled> {
  for (let tries = 1; ; tries++) {
    try {
      return { kind: "uploaded", binaryPackage: await upload() };
    } catch (e) {
      if (options.signal.aborted) return { kind: "forget" };
      const error = ConnectError.from(e);
      const code = grpcCodeName(error.code);
      options.onFailure?.(code, error.rawMessage, tries);
      const step = uploadFailureStep(code, error.rawMessage, tries);
      if (step.kind !== "retry") return step;
      if (!options.connected()) return { kind: "later" };
      const waited = await sleep(step.delayMs, true, { signal: options.signal }).catch(() => false);
      if (!waited) return { kind: "forget" };
      if (!options.connected()) return { kind: "later" };
    }
  }
}
