// withJobLog frames a job's log: a first line saying which agent, slot and
// executor run it, and a last one with the failure, written into the failing
// phase's log too, so that a reader of only that phase still sees why. It is
// also where an executor's unexpected exception becomes a failed job rather
// than a job the agent silently loses.

import { JobOutcome } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import { cancelled, elapsedSince, failed, type Executor } from "./executor.js";
import { DependenciesUnavailable } from "./with-dependencies.js";
import { UploadFailed } from "./with-upload.js";

export function withJobLog(inner: Executor, agentId: string): Executor {
  return {
    name: inner.name,
    async run(job, ctx) {
      const started = performance.now();
      const what = job.scan !== undefined ? `scan ${job.scan.jobName}` : `${job.location}${job.multiVersion === "" ? "" : ` (${job.multiVersion})`}`;
      ctx.log.write("", `=== ${agentId} slot ${ctx.slot}: ${what} with the ${inner.name} executor\n`);
      let result;
      try {
        result = await inner.run(job, ctx);
      } catch (e) {
        // Jobs without a result (given back or forgotten): the agent handles them.
        if (e instanceof UploadFailed || e instanceof DependenciesUnavailable) throw e;
        if (ctx.signal.aborted) return cancelled(elapsedSince(started));
        result = failed(elapsedSince(started), `the agent could not run the job: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (result.cancelled) return result;
      if (result.outcome === JobOutcome.FAILED) {
        // A phase's chunk is part of the job's whole log as well, so one write
        // puts the line into both.
        ctx.log.write(result.failedPhase, `=== ${agentId}: ${result.failureReason}\n`);
      } else if (result.decision !== "") {
        ctx.log.write("", `=== ${agentId}: ${result.decision}\n`);
      }
      return result;
    },
  };
}
