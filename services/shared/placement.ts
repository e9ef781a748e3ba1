/**
 * Placement decides where a build may run: on an agent that has the memory,
 * disk, CPUs and labels the job needs free, and that runs no other job of
 * the job's exclusion class; how many CPUs (MAKE_JOBS) a job gets of its
 * agent's budget; and, for a job that runs nowhere, why. It is pure: the
 * dispatcher's assigner and depgraph's NextReadyJob (which skips jobs that
 * fit no free agent) both decide with it, so they agree on what fits.
 *
 * The unit is the agent: one agent per host, its slots sharing the host's
 * CPUs, memory and disk (two agents on one host each get the share they are
 * told with --cpus, --memory and --disk).
 */

import { formatBytes } from "./sizes.js";

/** Needs is what one build needs of the agent that runs it; 0 or "" means no need of that kind. */
export interface Needs {
  readonly memoryBytes: number;
  readonly diskBytes: number;
  /** CPUs wanted: only an agent with at least this many takes the job, and MAKE_JOBS is this. */
  readonly cpus: number;
  /** Exclusion class: at most one job of a class per agent at a time. */
  readonly exclusive: string;
  /** Labels the agent must have, with these values. */
  readonly labels: Readonly<Record<string, string>>;
}

export const NO_NEEDS: Needs = { memoryBytes: 0, diskBytes: 0, cpus: 0, exclusive: "", labels: {} };

/** Host is an agent as placement sees it: what it has, and what its running jobs leave. */
export interface Host {
  readonly id: string;
  readonly freeSlots: number;
  /** 0: not known; then any CPU need fits (and the memory and disk ones likewise). */
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly diskBytes: number;
  readonly memoryFreeBytes: number;
  readonly diskFreeBytes: number;
  readonly labels: Readonly<Record<string, string>>;
  /** Exclusion classes of the jobs it runs now. */
  readonly exclusiveRunning: readonly string[];
}

/** Shortfall is one way a job does not fit a host. */
export type Shortfall =
  | { readonly kind: "memory" | "disk"; readonly needed: number; readonly has: number }
  | { readonly kind: "cpus"; readonly needed: number; readonly has: number }
  | { readonly kind: "label"; readonly key: string; readonly value: string; readonly has: string | undefined };

/**
 * shortfallOf says why the job could never run on the host, even idle
 * (memory, disk or CPUs it does not have, a label it lacks); undefined when
 * the host is big enough.
 */
export function shortfallOf(needs: Needs, host: Host): Shortfall | undefined {
  if (needs.memoryBytes > 0 && host.memoryBytes > 0 && needs.memoryBytes > host.memoryBytes) return { kind: "memory", needed: needs.memoryBytes, has: host.memoryBytes };
  if (needs.diskBytes > 0 && host.diskBytes > 0 && needs.diskBytes > host.diskBytes) return { kind: "disk", needed: needs.diskBytes, has: host.diskBytes };
  if (needs.cpus > 0 && host.cpus > 0 && needs.cpus > host.cpus) return { kind: "cpus", needed: needs.cpus, has: host.cpus };
  for (const [key, value] of Object.entries(needs.labels)) {
    if (host.labels[key] !== value) return { kind: "label", key, value, has: host.labels[key] };
  }
  return undefined;
}

/** Blocker is why a host big enough for the job cannot take it now. */
export type Blocker = "slots" | "memory" | "disk" | "exclusion";

/** blockerOf says why a host that is big enough cannot take the job now; undefined when it can. */
export function blockerOf(needs: Needs, host: Host): Blocker | undefined {
  // The exclusion rule first: it holds the job off the host whether a slot is free or not.
  if (needs.exclusive !== "" && host.exclusiveRunning.includes(needs.exclusive)) return "exclusion";
  if (host.freeSlots <= 0) return "slots";
  if (needs.memoryBytes > 0 && host.memoryBytes > 0 && needs.memoryBytes > host.memoryFreeBytes) return "memory";
  if (needs.diskBytes > 0 && host.diskBytes > 0 && needs.diskBytes > host.diskFreeBytes) return "disk";
  return undefined;
}

/** fitsNow: the host can take the job at once. */
export function fitsNow(needs: Needs, host: Host): boolean {
  return shortfallOf(needs, host) === undefined && blockerOf(needs, host) === undefined;
}

/**
 * chooseHost picks the host for a job among those it fits now: the one with
 * the most free slots, so work spreads over hosts; among those, the one with
 * the least memory, so the big hosts stay free for the jobs only they can
 * take; then by id, so the choice does not depend on the list's order.
 */
export function chooseHost<H extends Host>(needs: Needs, hosts: readonly H[]): H | undefined {
  let best: H | undefined;
  for (const host of hosts) {
    if (!fitsNow(needs, host)) continue;
    if (best === undefined || host.freeSlots > best.freeSlots
      || (host.freeSlots === best.freeSlots && (host.memoryBytes < best.memoryBytes || (host.memoryBytes === best.memoryBytes && host.id < best.id)))) best = host;
  }
  return best;
}

/** takeOn is the host after it took the job: a slot less, its needs reserved, its class running. */
export function takeOn<H extends Host>(host: H, needs: Needs): H {
  return {
    ...host,
    freeSlots: host.freeSlots - 1,
    memoryFreeBytes: Math.max(0, host.memoryFreeBytes - needs.memoryBytes),
    diskFreeBytes: Math.max(0, host.diskFreeBytes - needs.diskBytes),
    exclusiveRunning: needs.exclusive === "" ? host.exclusiveRunning : [...host.exclusiveRunning, needs.exclusive],
  };
}

/**
 * HostPlan hands out the free part of a list of hosts one job at a time,
 * for a caller that leases jobs in priority order and must not lease more
 * than the hosts can take (depgraph's NextReadyJob).
 */
export class HostPlan<H extends Host> {
  private readonly hosts: H[];

  constructor(hosts: readonly H[]) {
    this.hosts = [...hosts];
  }

  /** Some host still has a free slot. */
  get open(): boolean {
    return this.hosts.some((h) => h.freeSlots > 0);
  }

  /** Places the job on the host chooseHost picks and returns it (updated); undefined when none can take it now. */
  take(needs: Needs): H | undefined {
    const chosen = chooseHost(needs, this.hosts);
    if (chosen === undefined) return undefined;
    const after = takeOn(chosen, needs);
    this.hosts[this.hosts.indexOf(chosen)] = after;
    return after;
  }
}

/** CpuBudget is an agent's CPUs and what its running builds were given of them. */
export interface CpuBudget {
  /** The agent's CPUs; 0 when not known. */
  readonly cpus: number;
  readonly slots: number;
  /** Jobs it runs now, the one being placed not included. */
  readonly running: number;
  /** MAKE_JOBS given to those jobs, summed. */
  readonly committed: number;
}

/**
 * makeJobsFor is the job's share of its agent's CPUs, as bob's dynamic
 * MAKE_JOBS: what the running builds were not given is split evenly between
 * this job and the agent's other free slots (the builds that can start while
 * it runs), so a lone slot gets every CPU and a full host is not
 * oversubscribed. A job that asks for CPUs (constraints cpus=N) gets them,
 * within what is left; one whose scan says MAKE_JOBS_SAFE=no gets 1; every
 * job gets at least 1.
 */
export function makeJobsFor(needs: Needs, budget: CpuBudget, makeJobsSafe = true): number {
  if (!makeJobsSafe || budget.cpus <= 0) return 1;
  const left = Math.max(1, budget.cpus - budget.committed);
  if (needs.cpus > 0) return Math.max(1, Math.min(needs.cpus, left));
  const sharing = Math.max(1, budget.slots - budget.running);
  return Math.max(1, Math.floor(left / sharing));
}

/** ResourceWait: why a ready job runs nowhere because of its needs (the WaitKind values placement adds). */
export type ResourceWait = "no-agent-with-resources" | "all-fitting-busy" | "exclusion";

/**
 * resourceWaitOf says why a ready job with these needs is not running on
 * any of the platform's hosts, when the reason is its needs: no host is big
 * enough (how much is needed, the most there is), every host big enough is
 * busy, or every one that is free runs a job of the job's exclusion class.
 * Undefined when the job fits a host now, when every host could take it
 * but has no free slot, or when there are no hosts (reasons that are not
 * its needs: the queue, busy agents, no agent of the platform).
 */
export function resourceWaitOf(needs: Needs, hosts: readonly Host[]): { kind: ResourceWait; detail: string } | undefined {
  if (hosts.length === 0) return undefined;
  const bigEnough = hosts.filter((h) => shortfallOf(needs, h) === undefined);
  if (bigEnough.length === 0) return { kind: "no-agent-with-resources", detail: noHostDetail(needs, hosts) };
  const blockers = bigEnough.map((h) => [h, blockerOf(needs, h)] as const);
  if (blockers.some(([, b]) => b === undefined)) return undefined;
  // Every host could take it but has no free slot: plain busy, not its needs.
  if (bigEnough.length === hosts.length && blockers.every(([, b]) => b === "slots")) return undefined;
  const names = (list: readonly (readonly [Host, Blocker | undefined])[]) => list.map(([h]) => h.id).join(", ");
  const excluded = blockers.filter(([, b]) => b === "exclusion");
  if (excluded.length === blockers.length) {
    return { kind: "exclusion", detail: `held: at most one job of class ${needs.exclusive} per agent, and every agent that fits runs one (${names(excluded)})` };
  }
  const fitting = `${bigEnough.length} agent${bigEnough.length === 1 ? "" : "s"} that fit${bigEnough.length === 1 ? "s" : ""}`;
  const why = blockers.map(([h, b]) => `${h.id}: ${b === "slots" ? "no free slot" : b === "exclusion" ? `runs a ${needs.exclusive} job` : `${b} taken by its running jobs`}`).join("; ");
  return { kind: "all-fitting-busy", detail: `all ${fitting} ${bigEnough.length === 1 ? "is" : "are"} busy (${why})` };
}

function noHostDetail(needs: Needs, hosts: readonly Host[]): string {
  const most = (pick: (h: Host) => number) => Math.max(...hosts.map(pick));
  const parts: string[] = [];
  if (needs.memoryBytes > 0 && hosts.every((h) => h.memoryBytes > 0) && needs.memoryBytes > most((h) => h.memoryBytes)) {
    parts.push(`≥ ${formatBytes(needs.memoryBytes)} memory (the most an agent has is ${formatBytes(most((h) => h.memoryBytes))})`);
  }
  if (needs.diskBytes > 0 && hosts.every((h) => h.diskBytes > 0) && needs.diskBytes > most((h) => h.diskBytes)) {
    parts.push(`≥ ${formatBytes(needs.diskBytes)} disk (the most an agent has is ${formatBytes(most((h) => h.diskBytes))})`);
  }
  if (needs.cpus > 0 && hosts.every((h) => h.cpus > 0) && needs.cpus > most((h) => h.cpus)) {
    parts.push(`≥ ${needs.cpus} CPUs (the most an agent has is ${most((h) => h.cpus)})`);
  }
  for (const [key, value] of Object.entries(needs.labels)) {
    if (!hosts.some((h) => h.labels[key] === value)) parts.push(`label ${key}=${value}`);
  }
  // Each need alone is met by some agent, but none meets them all.
  if (parts.length === 0) {
    const per = hosts.map((h) => `${h.id} lacks ${describeShortfall(shortfallOf(needs, h)!)}`).join("; ");
    return `no agent has everything the job needs (${per})`;
  }
  return `no agent with ${parts.join(" and ")}`;
}

/** describeShortfall says in words what a host lacks. */
export function describeShortfall(s: Shortfall): string {
  switch (s.kind) {
    case "memory":
    case "disk":
      return `${s.kind}: needs ${formatBytes(s.needed)}, has ${formatBytes(s.has)}`;
    case "cpus":
      return `CPUs: needs ${s.needed}, has ${s.has}`;
    case "label":
      return `label ${s.key}=${s.value}${s.has === undefined ? "" : ` (it has ${s.key}=${s.has})`}`;
  }
}
