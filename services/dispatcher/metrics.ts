// The dispatcher's Prometheus series: its agents and slots, read from the
// agent registry on scrape, and counters the service bumps as jobs move.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { AgentRecord, AgentRegistry, HeldJob } from "./core/registry.js";

/** Why the dispatcher gave a job back to depgraph. */
export type GiveBackReason =
  /** The agent's stream ended or its heartbeats stopped while it held the job. */
  | "agent_lost"
  /** The agent sent `released` (it is shutting down, or was stopped). */
  | "released_by_agent"
  /** The job arrived from NextReadyJob after the slot it was asked for went away. */
  | "no_free_slot"
  /** The agent's heartbeat no longer listed the job (it lost or dropped it). */
  | "not_running"
  /** The dispatcher could not store the job's package (disk full, I/O error): not the job's fault. */
  | "upload_failed";

/** DispatcherMetrics is what the service reports as jobs move; the gauges read the registry themselves. */
export interface DispatcherMetrics {
  /** The job, just received from NextReadyJob, was sent to an agent. */
  jobAssigned(job: HeldJob, platform: string): void;
  /** The agent said it started the job (JobAccepted). */
  jobAccepted(job: HeldJob, platform: string): void;
  jobFinished(platform: string, outcome: "succeeded" | "failed"): void;
  packageStored(platform: string, sizeBytes: bigint): void;
  jobsGivenBack(count: number, reason: GiveBackReason): void;
}

// Sub-millisecond on loopback; seconds mean an agent (or its link) is struggling.
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function createDispatcherMetrics(registry: Registry): DispatcherMetrics {
  const latency = new Histogram({
    name: "pkgfarm_assignment_latency_seconds",
    help: "Assignment latency: time from the dispatcher receiving a job in a NextReadyJob answer (and sending it to an agent's free slot) to that agent's JobAccepted, by platform. Jobs given back before being accepted are not observed.",
    labelNames: ["platform"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const assigned = new Counter({
    name: "pkgfarm_jobs_assigned_total",
    help: "Jobs sent to agents, by platform (a retried job counts once per attempt).",
    labelNames: ["platform"] as const,
    registers: [registry],
  });
  const finished = new Counter({
    name: "pkgfarm_jobs_finished_total",
    help: "Jobs agents reported finished, by platform and outcome (succeeded, failed).",
    labelNames: ["platform", "outcome"] as const,
    registers: [registry],
  });
  const uploadBytes = new Counter({
    name: "pkgfarm_package_upload_bytes_total",
    help: "Bytes of binary packages uploaded by agents and stored (verified against their SHA-256), by platform.",
    labelNames: ["platform"] as const,
    registers: [registry],
  });
  const uploads = new Counter({
    name: "pkgfarm_package_uploads_total",
    help: "Binary packages uploaded by agents and stored, by platform.",
    labelNames: ["platform"] as const,
    registers: [registry],
  });
  const givenBack = new Counter({
    name: "pkgfarm_jobs_given_back_total",
    help: "Jobs the dispatcher gave back to depgraph unbuilt, by reason: agent_lost (stream ended or heartbeats stopped), released_by_agent, no_free_slot (the slot went away while NextReadyJob was out), not_running (the agent's heartbeat no longer listed it), upload_failed (the dispatcher could not store its package).",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  // When each held job was sent to its agent. Weak, so a job forgotten
  // without an accept (given back, cancelled) leaves nothing behind.
  const sentAt = new WeakMap<HeldJob, number>();

  return {
    jobAssigned(job, platform) {
      sentAt.set(job, performance.now());
      assigned.inc({ platform });
    },
    jobAccepted(job, platform) {
      const at = sentAt.get(job);
      if (at === undefined) return;
      sentAt.delete(job);
      latency.observe({ platform }, (performance.now() - at) / 1000);
    },
    jobFinished(platform, outcome) {
      finished.inc({ platform, outcome });
    },
    packageStored(platform, sizeBytes) {
      uploads.inc({ platform });
      uploadBytes.inc({ platform }, Number(sizeBytes));
    },
    jobsGivenBack(count, reason) {
      if (count > 0) givenBack.inc({ reason }, count);
    },
  };
}

/**
 * registerAgentMetrics adds the agent and slot gauges, read from the
 * registry on scrape. A platform seen once keeps its series (at 0 when its
 * agents are gone), so "no agents" reads as 0, not as a missing series;
 * platforms are few.
 */
export function registerAgentMetrics(registry: Registry, agents: AgentRegistry): void {
  const platformsSeen = new Set<string>();
  const byPlatform = (value: (platform: string) => number) => {
    for (const platform of agents.platforms()) platformsSeen.add(platform);
    return [...platformsSeen].map((platform) => ({ platform, value: value(platform) }));
  };
  const sum = (platform: string, of: (agent: AgentRecord) => number) =>
    agents.list().filter((a) => a.platform === platform).reduce((n, a) => n + of(a), 0);

  new Gauge({
    name: "pkgfarm_agents_connected",
    help: "Agents with a live Connect stream, by platform (draining ones included).",
    labelNames: ["platform"] as const,
    registers: [registry],
    collect() {
      for (const { platform, value } of byPlatform((p) => sum(p, () => 1))) this.set({ platform }, value);
    },
  });
  new Gauge({
    name: "pkgfarm_agents_draining",
    help: "Connected agents that take no new work (drained by an operator, or shutting down), by platform.",
    labelNames: ["platform"] as const,
    registers: [registry],
    collect() {
      for (const { platform, value } of byPlatform((p) => sum(p, (a) => (a.draining ? 1 : 0)))) this.set({ platform }, value);
    },
  });
  new Gauge({
    name: "pkgfarm_agent_slots",
    help: "Build slots of the connected agents (jobs they run at once), by platform.",
    labelNames: ["platform"] as const,
    registers: [registry],
    collect() {
      for (const { platform, value } of byPlatform((p) => sum(p, (a) => a.slots))) this.set({ platform }, value);
    },
  });
  new Gauge({
    name: "pkgfarm_agent_slots_free",
    help: "Build slots with no job, by platform; a draining agent's slots are not free.",
    labelNames: ["platform"] as const,
    registers: [registry],
    collect() {
      for (const { platform, value } of byPlatform((p) => agents.freeSlotsFor(p))) this.set({ platform }, value);
    },
  });
  new Gauge({
    name: "pkgfarm_jobs_running",
    help: "Jobs held by connected agents (sent to them and not yet finished or given back), by platform.",
    labelNames: ["platform"] as const,
    registers: [registry],
    collect() {
      for (const { platform, value } of byPlatform((p) => sum(p, (a) => a.jobs.size))) this.set({ platform }, value);
    },
  });
}
