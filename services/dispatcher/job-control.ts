import { create } from "@bufbuild/protobuf";
import type { ReturnReason } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { ConnectResponseSchema } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { AgentRegistry, HeldJob } from "./core/registry.js";
import type { DepGraphLink, LeaseKey } from "./depgraph-link.js";
import type { LogStore } from "./log-store.js";
import type { DispatcherMetrics, GiveBackReason } from "./metrics.js";
import type { SessionTable } from "./sessions.js";
import type { UploadLedger } from "./uploads.js";
import { runningJob } from "./wire.js";

export interface JobControlOptions {
  readonly registry: AgentRegistry;
  readonly sessions: SessionTable;
  readonly uploads: UploadLedger;
  readonly logs: LogStore;
  readonly depgraph: DepGraphLink;
  readonly metrics?: DispatcherMetrics;
  /** A slot of the platform came free: its puller re-counts. */
  readonly wake: (platform: string) => void;
}

/**
 * JobControl is how a job stops being the dispatcher's concern: it ends
 * (finished, cancelled, given back), is cancelled on its agent, or goes back
 * to depgraph. Every other part ends jobs through it, so a job's slot, upload
 * and log are always let go together.
 */
export interface JobControl {
  /**
   * Forgets a job the dispatcher no longer tracks for its agent and closes
   * its log, with a last line saying why when there is one. Safe for a job
   * already released.
   */
  end(job: HeldJob, note?: string): Promise<void>;
  /** Ends the job and tells its agent to stop it. */
  cancel(job: HeldJob, reason: string): void;
  /** Gives leases back to depgraph, counted under the metric's reason. */
  giveBack(leases: readonly LeaseKey[], reason: ReturnReason, message: string, counted: GiveBackReason): Promise<void>;
}

export function createJobControl(options: JobControlOptions): JobControl {
  const { registry, sessions, uploads, logs, depgraph, metrics, wake } = options;
  const end = (job: HeldJob, note?: string) => {
    registry.release(job);
    uploads.forget(job);
    const appended = note === undefined ? Promise.resolve() : logs.append(job.buildId, job.pkgname, Buffer.from(`\n=== ${note} ===\n`));
    return appended.then(() => logs.finish(job.buildId, job.pkgname)).catch(() => {});
  };
  return {
    end,
    cancel(job, reason) {
      const session = sessions.get(job.agentId);
      void end(job, `cancelled: ${reason}`);
      session?.outbox.push(create(ConnectResponseSchema, { message: { case: "cancel", value: { job: runningJob(job), reason } } }));
      session?.logger.info({ buildId: job.buildId, pkgname: job.pkgname, reason }, "job cancelled on agent");
      if (session !== undefined) wake(session.agent.platform);
    },
    giveBack(leases, reason, message, counted) {
      metrics?.jobsGivenBack(leases.length, counted);
      return depgraph.returnJobs(leases, reason, message);
    },
  };
}
