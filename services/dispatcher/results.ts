import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryPackageSchema, JobOutcome } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobFinished } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { AgentRegistry } from "./core/registry.js";
import type { DepGraphLink } from "./depgraph-link.js";
import type { JobControl } from "./job-control.js";
import type { LogStore } from "./log-store.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { Session } from "./sessions.js";
import type { UploadLedger } from "./uploads.js";
import { refOf } from "./wire.js";

export interface ResultRelayOptions {
  readonly registry: AgentRegistry;
  readonly uploads: UploadLedger;
  readonly logs: LogStore;
  readonly depgraph: DepGraphLink;
  readonly jobs: JobControl;
  readonly wake: (platform: string) => void;
  readonly metrics?: DispatcherMetrics;
}

/** ResultRelay turns an agent's JobFinished into depgraph's MarkDone. */
export interface ResultRelay {
  /**
   * Checks the report against what the agent holds and uploaded, frees the
   * slot and relays the result. Throws (a ConnectError or a registry error)
   * for a report that is refused; the job is then left as it was.
   */
  finished(session: Session, finished: JobFinished): Promise<void>;
}

export function createResultRelay(options: ResultRelayOptions): ResultRelay {
  const { registry, uploads, logs, depgraph, jobs, wake, metrics } = options;
  return {
    async finished(session, finished) {
      const held = registry.held(session.agent, refOf(finished.job));
      const durationMsValue = finished.duration === undefined ? 0 : Math.round(durationMs(finished.duration));
      const result: Parameters<DepGraphLink["markDone"]>[0] = {
        buildId: held.buildId, pkgname: held.pkgname, leaseId: held.leaseId, agentId: held.agentId, outcome: finished.outcome,
        duration: durationFromMs(durationMsValue), logRef: logs.logRef(held.buildId, held.pkgname), failureReason: "",
        failedPhase: finished.failedPhase, decision: finished.decision,
      };
      if (finished.outcome === JobOutcome.SUCCEEDED) {
        const stored = uploads.get(held);
        const claimed = finished.binaryPackage;
        if (stored === undefined || claimed === undefined || claimed.sha256 !== stored.sha256 || claimed.fileName !== stored.fileName) {
          throw new ConnectError(`job ${held.pkgname} of build ${held.buildId} reported success without a matching UploadPackage; upload the package first`, Code.FailedPrecondition);
        }
        result.binaryPackage = create(BinaryPackageSchema, { fileName: stored.fileName, sha256: stored.sha256, sizeBytes: stored.sizeBytes });
      } else if (finished.outcome === JobOutcome.FAILED) {
        result.failureReason = finished.failureReason || "the build failed";
      } else {
        throw new ConnectError("JobFinished needs an outcome: JOB_OUTCOME_SUCCEEDED or JOB_OUTCOME_FAILED", Code.InvalidArgument);
      }
      session.agent.jobsDone++;
      metrics?.jobFinished(session.agent.platform, finished.outcome === JobOutcome.SUCCEEDED ? "succeeded" : "failed");
      await jobs.end(held);
      wake(session.agent.platform);
      try {
        await depgraph.markDone(result);
        session.logger.info({ buildId: held.buildId, pkgname: held.pkgname, outcome: JobOutcome[finished.outcome], durationMs: durationMsValue }, "job finished");
      } catch (e) {
        session.logger.warn({ err: e, buildId: held.buildId, pkgname: held.pkgname }, "depgraph refused the result");
      }
    },
  };
}
