// withUpload hands the package a successful build made to the dispatcher and
// puts what was stored into the result, so that a JobFinished never claims a
// package the dispatcher does not have.

import type { BinaryPackage } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import { JobOutcome } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { Executor } from "./executor.js";

/** UploadPackage stores the file at path as the job's package and says what was stored. */
export type UploadPackage = (assignment: JobAssignment, path: string, signal: AbortSignal) => Promise<BinaryPackage>;

/**
 * UploadFailed: the package was built but the dispatcher did not take it.
 * The dispatcher has then already failed the job (a corrupt upload) or given
 * it to someone else, so the agent has nothing left to report for it.
 */
export class UploadFailed extends Error {
  override readonly name = "UploadFailed";
  constructor(readonly pkgname: string, cause: unknown) {
    super(`upload of ${pkgname} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

export function withUpload(inner: Executor, upload: UploadPackage): Executor {
  return {
    name: inner.name,
    async run(job, ctx) {
      const result = await inner.run(job, ctx);
      if (result.cancelled || result.outcome !== JobOutcome.SUCCEEDED || result.outputPath === "") return result;
      try {
        return { ...result, binaryPackage: await upload(job, result.outputPath, ctx.signal) };
      } catch (e) {
        throw new UploadFailed(job.job?.pkgname ?? "", e);
      }
    },
  };
}
