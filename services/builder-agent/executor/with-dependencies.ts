// withDependencies puts the binary packages a job depends on into its
// depends/ directory before the build starts, so that no executor has to know
// where packages come from. A dependency that cannot be had fails the job in
// the "depends" phase, as a pkg_add that finds nothing would.

import type { JobAssignment } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import { cancelled, elapsedSince, failed, type Executor } from "./executor.js";

/** FetchDependencies makes every assignment.dependencyPackages file appear in dir. */
export type FetchDependencies = (assignment: JobAssignment, dir: string, signal: AbortSignal) => Promise<void>;

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
          const reason = `could not fetch the dependencies' packages: ${e instanceof Error ? e.message : String(e)}`;
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
