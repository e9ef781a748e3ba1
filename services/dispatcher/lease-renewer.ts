import type { Logger } from "pino";
import type { AgentRegistry, HeldJob } from "./core/registry.js";
import type { DepGraphLink } from "./depgraph-link.js";

export interface LeaseRenewerOptions {
  readonly registry: AgentRegistry;
  readonly depgraph: DepGraphLink;
  readonly logger: Logger;
  /** Renew running jobs' leases this often (well inside the lease length). */
  readonly everyMs: number;
  /** A job whose lease depgraph no longer holds (build cancelled, lease given to another): stop it. */
  readonly onLost: (job: HeldJob) => void;
}

/**
 * startLeaseRenewer renews the leases of every job any agent holds, in one
 * RenewLease call per period. A failed call is retried next period: the
 * period is well inside the lease length.
 */
export function startLeaseRenewer(options: LeaseRenewerOptions): { stop(): void } {
  const { registry, depgraph, logger, onLost } = options;
  const timer = setInterval(() => {
    const held = registry.allHeld();
    if (held.length === 0) return;
    depgraph.renewLeases(held).then((lost) => {
      for (const lease of lost) {
        const job = registry.holderOf(lease.buildId, lease.pkgname);
        if (job === undefined || job.leaseId !== lease.leaseId) continue;
        onLost(job);
      }
    }).catch((e) => logger.warn({ err: e }, "renewing leases failed; will retry"));
  }, options.everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
