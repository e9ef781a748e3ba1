// withDependencies puts the binary packages a job depends on into its
// depends/ directory before the build starts, so that no executor has to know
// where packages come from. A dependency that cannot be had fails the job in
// the "depends" phase, as a pkg_add that finds nothing would. A download that
// broke for reasons not the package's (the dispatcher restarting, the link
// dropping) is not the package's failure: the job is given back
// (DependenciesUnavailable), as withUpload does with an upload that kept failing.

import { Code, ConnectError } from "@connectrpc/connect";
import type { JobAssignment } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import { cancelled, elapsedSince, failed, type Executor } from "./executor.js";

/** FetchDependencies makes every assignment.dependencyPackages file appear in dir. */
export type FetchDependencies = (assignment: JobAssignment, dir: string, signal: AbortSignal) => Promise<void>;

/**
 * DependenciesUnavailable: the dependencies' download failed on the way
 * (a transport or dispatcher error), not because a package is missing or
 * wrong. The job has no result: the agent gives it back (JobReleased).
 */
export class DependenciesUnavailable extends Error {
  override readonly name = "DependenciesUnavailable";
  constructor(readonly pkgname: string, reason: string, options?: { cause?: unknown }) {
    super(`the dependencies of ${pkgname} could not be fetched: ${reason}`, options);
  }
}

/**
 * Codes of a download that say nothing about the package: the stream broke
 * (UNAVAILABLE, CANCELED, an HTTP/2 reset read as INTERNAL or UNKNOWN), timed
 * out, or the dispatcher had a moment. NOT_FOUND (no such package) and
 * FAILED_PRECONDITION (rebuilt since, another digest) still fail the job.
 */
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.Aborted, Code.Internal, Code.Unknown]);

/** Only an RPC's own error can be transient; a local error (a digest mismatch, a full disk) is the job's. */
function isTransient(e: unknown): boolean {
  return e instanceof ConnectError && TRANSIENT.has(e.code);
}

export function withDependencies(inner: Executor, fetch: FetchDependencies): Executor {
  return {
    name: inner.name,
    async run(job, ctx) {
      const started = performance.now();
      if (job.dependencyPackages.length > 0) {
        try {
          await fetch(job, ctx.workdir.dependsDir, ctx.signal);
        } catch (e) {
          if (ctx.signal.aborted) return cancelled(elapsedSince(started));
          const message = e instanceof Error ? e.message : String(e);
          if (isTransient(e)) {
            ctx.log.write("depends", `=== giving the job back: the dependencies' download broke off: ${message}\n`);
            throw new DependenciesUnavailable(job.job?.pkgname ?? "", message, { cause: e });
          }
          const reason = `could not fetch the dependencies' packages: ${message}`;
          ctx.log.write("depends", `${reason}\n`);
          return failed(elapsedSince(started), reason, "depends");
        }
        ctx.log.write("", `=== ${job.dependencyPackages.length} dependency packages in ${ctx.workdir.dependsDir}\n`);
      }
      if (ctx.signal.aborted) return cancelled(elapsedSince(started));
      const result = await inner.run(job, ctx);
      return { ...result, durationMs: elapsedSince(started) };
    },
  };
}
