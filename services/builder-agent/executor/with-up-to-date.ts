// withUpToDate is pbulk's `pkg-up-to-date && exit 0` at the top of pkg-build,
// for incremental builds: before building, the package the dispatcher already
// has is fetched and checked against the tree and the dependencies the scan
// resolves now. A current package is reported up to date (nothing built);
// otherwise the build runs and the result says why it was rebuilt. A job
// whose dependency was rebuilt in this build comes with a rebuild_reason and
// is rebuilt without looking.

import type { BinaryPackage } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import { JobOutcome } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import { elapsedSince, type Executor } from "./executor.js";

/** FetchCurrentPackage copies the stored <PKGNAME>.tgz to destPath; undefined when the dispatcher has none. */
export type FetchCurrentPackage = (assignment: JobAssignment, destPath: string, signal: AbortSignal) => Promise<BinaryPackage | undefined>;

/** CheckUpToDate is pkg-up-to-date on one package file: current or not, with the reason. */
export type CheckUpToDate = (assignment: JobAssignment, packageFile: string) => Promise<{ readonly upToDate: boolean; readonly reason: string }>;

export const NO_PACKAGE_REASON = "rebuilt: no binary package";

export function withUpToDate(inner: Executor, fetchCurrent: FetchCurrentPackage, check: CheckUpToDate): Executor {
  return {
    name: inner.name,
    async run(job, ctx) {
      if (!job.incremental || job.scan !== undefined) return inner.run(job, ctx);
      const started = performance.now();
      let decision = job.rebuildReason;
      if (decision === "") {
        const file = `${ctx.workdir.dir}/current-${job.job!.pkgname}.tgz`;
        const stored = await fetchCurrent(job, file, ctx.signal);
        if (stored === undefined) {
          decision = NO_PACKAGE_REASON;
        } else {
          const verdict = await check(job, file);
          if (verdict.upToDate) {
            return {
              outcome: JobOutcome.UP_TO_DATE, durationMs: elapsedSince(started), failureReason: "", failedPhase: "",
              decision: verdict.reason, outputPath: "", binaryPackage: stored, cancelled: false,
            };
          }
          decision = verdict.reason;
        }
      }
      ctx.log.write("", `=== ${decision}\n`);
      const result = await inner.run(job, ctx);
      return { ...result, decision, durationMs: elapsedSince(started) };
    },
  };
}
