import type { Logger } from "pino";
import type { HeldJob } from "./core/registry.js";
import type { DepGraphLink } from "./depgraph-link.js";

export interface StartNoticeOptions {
  readonly depgraph: DepGraphLink;
  readonly logger: Logger;
  /** A job whose lease depgraph no longer holds (build cancelled meanwhile): stop it. */
  readonly onLost: (job: HeldJob) => void;
}

/**
 * StartNotices tells depgraph which build host runs a job as soon as the
 * agent accepts it. depgraph leased the job to the dispatcher, not to the
 * agent, so until then its Job.agent_id names the dispatcher and Job.host
 * nothing; the periodic lease renewal would say it only a third of a lease
 * later (minutes). The notice is a RenewLease naming the agent and its
 * host, coalesced per event-loop turn so a burst of acceptances is one call.
 */
export interface StartNotices {
  accepted(job: HeldJob): void;
}

export function createStartNotices(options: StartNoticeOptions): StartNotices {
  const { depgraph, logger, onLost } = options;
  let batch: HeldJob[] = [];
  const flush = () => {
    const jobs = batch;
    batch = [];
    depgraph.renewLeases(jobs).then((lost) => {
      const gone = new Set(lost.map((l) => `${l.buildId}\u0000${l.pkgname}\u0000${l.leaseId}`));
      for (const job of jobs) if (gone.has(`${job.buildId}\u0000${job.pkgname}\u0000${job.leaseId}`)) onLost(job);
    }).catch((e: unknown) => logger.debug({ err: e, jobs: jobs.length }, "telling depgraph where jobs run failed; the next lease renewal says it"));
  };
  return {
    accepted(job) {
      if (batch.length === 0) setImmediate(flush);
      batch.push(job);
    },
  };
}
