// withUpload hands the package a successful build made to the dispatcher and
// puts what was stored into the result, so that a JobFinished never claims a
// package the dispatcher does not have. How long to retry is the upload
// function's business (the agent retries across reconnects, refusals.ts); it
// says how the upload ended, and this turns that into the job's result: a
// package, a failure in the "upload" phase, or no result at all.

import type { BinaryPackage } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import { JobOutcome } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import { elapsedSince, failed, type Executor } from "./executor.js";

/** UploadOutcome is how storing one package ended. */
export type UploadOutcome =
  | { readonly kind: "uploaded"; readonly binaryPackage: BinaryPackage }
  /** The package cannot be stored (refused, too big): the job fails in its upload phase. */
  | { readonly kind: "fail"; readonly reason: string }
  /** Give the job back unfinished (the upload kept failing for reasons not the package's). */
  | { readonly kind: "release"; readonly reason: string }
  /** The dispatcher no longer holds the job: nothing is to be reported. */
  | { readonly kind: "forget"; readonly reason: string };

/** UploadPackage stores the file at path as the job's package. */
export type UploadPackage = (assignment: JobAssignment, path: string, signal: AbortSignal) => Promise<UploadOutcome>;

/**
 * UploadFailed: the package was built but the job has no result to report:
 * release says whether to give it back (JobReleased) or just forget it.
 */
export class UploadFailed extends Error {
  override readonly name = "UploadFailed";
  constructor(readonly pkgname: string, readonly release: boolean, reason: string) {
    super(`upload of ${pkgname} failed: ${reason}`);
  }
}

export function withUpload(inner: Executor, upload: UploadPackage): Executor {
  return {
    name: inner.name,
    async run(job, ctx) {
      const started = performance.now();
      const result = await inner.run(job, ctx);
      if (result.cancelled || result.outcome !== JobOutcome.SUCCEEDED || result.outputPath === "") return result;
      const outcome = await upload(job, result.outputPath, ctx.signal);
      const pkgname = job.job?.pkgname ?? "";
      switch (outcome.kind) {
        case "uploaded":
          return { ...result, binaryPackage: outcome.binaryPackage };
        case "fail":
          return { ...failed(elapsedSince(started), outcome.reason, "upload"), decision: result.decision };
        case "release":
          throw new UploadFailed(pkgname, true, outcome.reason);
        case "forget":
          throw new UploadFailed(pkgname, false, outcome.reason);
      }
    },
  };
}
