import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  DepGraphService,
  JobResultSchema,
  LeaseRefSchema,
  ReturnReason,
  type Assignment,
  type Build,
  type Job,
  type JobResult,
  type LeaseRef,
  type Package,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";

/** LeaseKey names a lease; agentId, when given, tells depgraph which build host runs the job. */
export type LeaseKey = Pick<LeaseRef, "buildId" | "pkgname" | "leaseId"> & { readonly agentId?: string; readonly host?: string };

/**
 * DepGraphLink is everything the dispatcher asks of depgraph. Results from
 * many agents are coalesced into one MarkDone per event-loop turn: a unary
 * call costs about a millisecond of CPU on each side, so per-job calls would
 * cap the whole farm near 1,000 jobs per second.
 */
export interface DepGraphLink {
  /** Leases up to maxJobs jobs of the platform; scan jobs too (first) when includeScanJobs. */
  nextReadyJobs(platform: string, maxJobs: number, signal: AbortSignal, includeScanJobs?: boolean): Promise<Assignment[]>;
  /** Resolves when depgraph took the result; rejects with its refusal (e.g. FAILED_PRECONDITION). */
  markDone(result: Omit<JobResult, "$typeName">): Promise<void>;
  /** Gives leases back; a lease depgraph no longer holds is skipped, not an error. */
  returnJobs(leases: readonly LeaseKey[], reason: ReturnReason, message: string): Promise<void>;
  /** Renews the leases; returns those depgraph says are lost. */
  renewLeases(leases: readonly LeaseKey[]): Promise<LeaseKey[]>;
  // Reads, for the build publisher (reports and repository when a build ends).
  /** Every build depgraph keeps, newest first. */
  listBuilds(signal?: AbortSignal): Promise<Build[]>;
  /** Every job of the build (all pages), by PKGNAME. */
  listJobs(buildId: string, signal?: AbortSignal): Promise<Job[]>;
  /** The package in the platform's tree; undefined when the tree has no such package (any more). */
  getPackage(pkgname: string, platform: string, signal?: AbortSignal): Promise<Package | undefined>;
  /** Every package of the platform's tree (all pages), without scan_depends. */
  listPackages(platform: string, signal?: AbortSignal): Promise<Package[]>;
}

export interface DepGraphLinkOptions {
  readonly client: Client<typeof DepGraphService>;
  /** The id depgraph records as the lease holder. */
  readonly holderId: string;
  readonly leaseMs: number;
  /** How long one NextReadyJob call may wait for work. */
  readonly pollWaitMs: number;
  readonly logger: Logger;
}

const MAX_BATCH = 512;

/**
 * Failures that say nothing about the result itself: depgraph is restarting
 * or unreachable. A result is never dropped for one of these; it waits and
 * goes again, because depgraph restores its leases and will take it.
 */
const TRANSIENT: ReadonlySet<Code> = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Unknown, Code.Canceled]);

export function createDepGraphLink(options: DepGraphLinkOptions): DepGraphLink {
  const { client, logger } = options;
  let pending: { result: JobResult; resolve: () => void; reject: (e: unknown) => void }[] = [];
  let flushScheduled = false;
  let retryDelayMs = 0;
  let retryTimer: NodeJS.Timeout | undefined;

  const flush = async () => {
    flushScheduled = false;
    if (retryTimer !== undefined) return;
    const batch = pending.splice(0, MAX_BATCH);
    if (pending.length > 0) scheduleFlush();
    if (batch.length === 0) return;
    try {
      await client.markDone({ results: batch.map((p) => p.result) });
      retryDelayMs = 0;
      for (const p of batch) p.resolve();
    } catch (e) {
      if (TRANSIENT.has(ConnectError.from(e).code)) {
        pending.unshift(...batch);
        retryDelayMs = Math.min(5_000, Math.max(100, retryDelayMs * 2));
        logger.warn({ err: ConnectError.from(e).message, results: pending.length, retryInMs: retryDelayMs }, "depgraph unreachable; results kept for the next try");
        retryTimer ??= setTimeout(() => {
          retryTimer = undefined;
          scheduleFlush();
        }, retryDelayMs).unref();
        return;
      }
      // A batch is all-or-nothing: one stale lease refuses it whole. Retry
      // one by one so each result gets its own answer.
      if (batch.length > 1 && ConnectError.from(e).code === Code.FailedPrecondition) {
        await Promise.all(batch.map(async (p) => {
          try {
            await client.markDone({ results: [p.result] });
            p.resolve();
          } catch (single) {
            p.reject(single);
          }
        }));
      } else {
        for (const p of batch) p.reject(e);
      }
    }
  };
  const scheduleFlush = () => {
    if (flushScheduled) return;
    flushScheduled = true;
    setImmediate(() => void flush());
  };

  const leaseRefs = (leases: readonly LeaseKey[]) =>
    leases.map((l) => create(LeaseRefSchema, { buildId: l.buildId, pkgname: l.pkgname, leaseId: l.leaseId, agentId: l.agentId ?? "", host: l.host ?? "" }));

  return {
    async nextReadyJobs(platform, maxJobs, signal, includeScanJobs = false) {
      const response = await client.nextReadyJob(
        { platform, agentId: options.holderId, maxJobs, wait: durationFromMs(options.pollWaitMs), leaseDuration: durationFromMs(options.leaseMs), includeScanJobs },
        { signal },
      );
      return response.assignments;
    },
    markDone(result) {
      return new Promise<void>((resolve, reject) => {
        pending.push({ result: create(JobResultSchema, result), resolve, reject });
        if (pending.length >= MAX_BATCH) void flush();
        else scheduleFlush();
      });
    },
    async returnJobs(leases, reason, message) {
      if (leases.length === 0) return;
      try {
        await client.returnJob({ leases: leaseRefs(leases), reason, message });
      } catch (e) {
        if (ConnectError.from(e).code !== Code.FailedPrecondition) throw e;
        // All-or-nothing again: give back the ones still held.
        for (const lease of leases) {
          try {
            await client.returnJob({ leases: leaseRefs([lease]), reason, message });
          } catch (single) {
            if (ConnectError.from(single).code !== Code.FailedPrecondition) throw single;
            logger.debug({ buildId: lease.buildId, pkgname: lease.pkgname }, "lease already gone; nothing to give back");
          }
        }
      }
    },
    async renewLeases(leases) {
      if (leases.length === 0) return [];
      const response = await client.renewLease({ leases: leaseRefs(leases), leaseDuration: durationFromMs(options.leaseMs) });
      return response.lost.map((l) => ({ buildId: l.buildId, pkgname: l.pkgname, leaseId: l.leaseId }));
    },
    async listBuilds(signal) {
      return (await client.listBuilds({}, { signal })).builds;
    },
    async listJobs(buildId, signal) {
      const jobs: Job[] = [];
      let pageToken = "";
      do {
        const page = await client.listJobs({ buildId, pageSize: 10_000, pageToken }, { signal });
        jobs.push(...page.jobs);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return jobs;
    },
    async getPackage(pkgname, platform, signal) {
      try {
        return (await client.getPackage({ pkgname, platform }, { signal })).package;
      } catch (e) {
        if (ConnectError.from(e).code === Code.NotFound) return undefined;
        throw e;
      }
    },
    async listPackages(platform, signal) {
      const packages: Package[] = [];
      let pageToken = "";
      do {
        const page = await client.listPackages({ platform, pageSize: 10_000, pageToken }, { signal });
        packages.push(...page.packages);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return packages;
    },
  };
}
