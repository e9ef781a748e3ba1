/**
 * AgentRegistry is the dispatcher's picture of its agents: who is connected,
 * for which platform, with how many slots, running which jobs, and until when
 * each counts as alive. It is pure state driven by an explicit `now`, so the
 * heartbeat rules are tested without sleeping; the connect handlers and the
 * timer that calls expire() are adapters around it.
 */

import { chooseHost, NO_NEEDS, type Host, type Needs } from "../../shared/placement.js";

/** JobKey names one job of one build: "<buildId>\u0000<pkgname>". */
export type JobKey = string;

export function jobKey(buildId: string, pkgname: string): JobKey {
  return `${buildId}\u0000${pkgname}`;
}

export interface HeldJob {
  readonly buildId: string;
  readonly pkgname: string;
  readonly leaseId: string;
  readonly agentId: string;
  /** Host name the agent gave in its hello ("" when it gave none), for depgraph's Job.host. */
  readonly host: string;
  /** A package build, or a scan job (which only agents that scan are given). */
  readonly kind: JobKind;
  /** When it was sent to the agent (or re-attached). */
  readonly assignedAt: number;
  /** Set once the agent says it started (JobAccepted). */
  accepted: boolean;
  /** What it needs of the agent: reserved while it runs. */
  readonly needs: Needs;
  /** The agent's CPUs given to it as MAKE_JOBS (0 for a scan job, which has no make). */
  readonly makeJobs: number;
}

/** AgentResources is what an agent said it gives builds (AgentHello); 0 means not known. */
export interface AgentResources {
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly diskBytes: number;
  readonly labels: Readonly<Record<string, string>>;
}

const UNKNOWN_RESOURCES: AgentResources = { cpus: 0, memoryBytes: 0, diskBytes: 0, labels: {} };

/** JobKind: what a held job is. */
export type JobKind = "build" | "scan";

export interface AgentRecord {
  readonly id: string;
  /** Host name from the hello; "" when it gave none. */
  readonly host: string;
  readonly platform: string;
  readonly slots: number;
  /** It said it runs scan jobs (it has the tree and a scanner). */
  readonly scans: boolean;
  readonly resources: AgentResources;
  readonly connectedAt: number;
  /** Identifies this stream; a stale stream's late messages are ignored by it. */
  readonly session: number;
  lastSeen: number;
  deadline: number;
  draining: boolean;
  jobsDone: number;
  readonly jobs: Map<JobKey, HeldJob>;
}

/** AgentAlreadyConnected refuses a second live stream for one agent id. */
export class AgentAlreadyConnected extends Error {
  override readonly name = "AgentAlreadyConnected";
  constructor(readonly agentId: string) {
    super(`an agent with id "${agentId}" is already connected; give each agent its own id, or wait for the old stream to time out`);
  }
}

/** JobNotHeld refuses a report on a job the agent does not hold (any more). */
export class JobNotHeld extends Error {
  override readonly name = "JobNotHeld";
  constructor(readonly agentId: string, buildId: string, pkgname: string) {
    super(`agent "${agentId}" does not hold job ${pkgname} of build ${buildId} (it was never assigned to it, or its lease was given back)`);
  }
}

export interface RegistryOptions {
  /** After this long without a message, an agent is lost. */
  readonly heartbeatTimeoutMs: number;
}

export class AgentRegistry {
  private readonly agents = new Map<string, AgentRecord>();
  private readonly holders = new Map<JobKey, HeldJob>();
  private nextSession = 1;

  constructor(private readonly options: RegistryOptions) {}

  register(hello: { id: string; platform: string; slots: number; scans?: boolean; host?: string; resources?: AgentResources }, now: number): AgentRecord {
    if (this.agents.has(hello.id)) throw new AgentAlreadyConnected(hello.id);
    const agent: AgentRecord = {
      id: hello.id,
      host: hello.host ?? "",
      platform: hello.platform,
      slots: Math.max(1, hello.slots),
      scans: hello.scans ?? false,
      resources: hello.resources ?? UNKNOWN_RESOURCES,
      connectedAt: now,
      session: this.nextSession++,
      lastSeen: now,
      deadline: now + this.options.heartbeatTimeoutMs,
      draining: false,
      jobsDone: 0,
      jobs: new Map(),
    };
    this.agents.set(agent.id, agent);
    return agent;
  }

  /** Removes the agent and returns the jobs it held, which must go back to depgraph. */
  unregister(agentId: string, session: number): HeldJob[] {
    const agent = this.agents.get(agentId);
    if (agent === undefined || agent.session !== session) return [];
    this.agents.delete(agentId);
    const jobs = [...agent.jobs.values()];
    for (const job of jobs) this.holders.delete(jobKey(job.buildId, job.pkgname));
    return jobs;
  }

  get(agentId: string): AgentRecord | undefined {
    return this.agents.get(agentId);
  }

  list(): AgentRecord[] {
    return [...this.agents.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Any message from an agent proves it alive. */
  touch(agent: AgentRecord, now: number): void {
    agent.lastSeen = now;
    agent.deadline = now + this.options.heartbeatTimeoutMs;
  }

  /** Agents whose heartbeats stopped; the caller ends their streams and gives their jobs back. */
  expired(now: number): AgentRecord[] {
    return [...this.agents.values()].filter((a) => a.deadline <= now);
  }

  /** The earliest heartbeat deadline, so one timer serves every agent. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const a of this.agents.values()) if (next === undefined || a.deadline < next) next = a.deadline;
    return next;
  }

  freeSlots(agent: AgentRecord): number {
    return agent.draining ? 0 : Math.max(0, agent.slots - agent.jobs.size);
  }

  /** Total free slots of the platform's agents. */
  freeSlotsFor(platform: string): number {
    let free = 0;
    for (const a of this.agents.values()) if (a.platform === platform) free += this.freeSlots(a);
    return free;
  }

  /** Free slots of the platform's agents that run scan jobs: while there are none, depgraph is not asked for scan jobs. */
  freeScanSlotsFor(platform: string): number {
    let free = 0;
    for (const a of this.agents.values()) if (a.platform === platform && a.scans) free += this.freeSlots(a);
    return free;
  }

  platforms(): Set<string> {
    return new Set([...this.agents.values()].map((a) => a.platform));
  }

  /**
   * hostOf is the agent as placement sees it: what it has, and what the
   * jobs it holds leave free of it.
   */
  hostOf(agent: AgentRecord): Host & { readonly agent: AgentRecord } {
    const { resources } = agent;
    let memory = 0;
    let disk = 0;
    const exclusive: string[] = [];
    for (const job of agent.jobs.values()) {
      memory += job.needs.memoryBytes;
      disk += job.needs.diskBytes;
      if (job.needs.exclusive !== "") exclusive.push(job.needs.exclusive);
    }
    return {
      agent,
      id: agent.id,
      freeSlots: this.freeSlots(agent),
      cpus: resources.cpus,
      memoryBytes: resources.memoryBytes,
      diskBytes: resources.diskBytes,
      memoryFreeBytes: Math.max(0, resources.memoryBytes - memory),
      diskFreeBytes: Math.max(0, resources.diskBytes - disk),
      labels: resources.labels,
      exclusiveRunning: exclusive,
    };
  }

  /** The platform's agents as placement sees them; for a scan job only those that run scans. */
  hostsFor(platform: string, kind: JobKind = "build"): (Host & { readonly agent: AgentRecord })[] {
    return this.list().filter((a) => a.platform === platform && (kind === "build" || a.scans)).map((a) => this.hostOf(a));
  }

  /**
   * Picks the agent of the platform that the job fits now, as placement
   * chooses (chooseHost: most free slots, so work spreads across hosts;
   * then the smallest, so big hosts stay free for big jobs). A scan job
   * goes only to an agent that runs scans.
   */
  pickAgent(platform: string, kind: JobKind = "build", needs: Needs = NO_NEEDS): AgentRecord | undefined {
    return chooseHost(needs, this.hostsFor(platform, kind))?.agent;
  }

  /** MAKE_JOBS given to the jobs an agent holds, summed. */
  cpusCommitted(agent: AgentRecord): number {
    let sum = 0;
    for (const job of agent.jobs.values()) sum += job.makeJobs;
    return sum;
  }

  hold(agent: AgentRecord, job: { buildId: string; pkgname: string; leaseId: string }, now: number, kind: JobKind = "build", placed: { needs: Needs; makeJobs: number } = { needs: NO_NEEDS, makeJobs: 0 }): HeldJob {
    const held: HeldJob = { buildId: job.buildId, pkgname: job.pkgname, leaseId: job.leaseId, agentId: agent.id, host: agent.host, kind, assignedAt: now, accepted: false, ...placed };
    const key = jobKey(job.buildId, job.pkgname);
    agent.jobs.set(key, held);
    this.holders.set(key, held);
    return held;
  }

  /** The job, if this agent holds it under this lease; JobNotHeld otherwise. */
  held(agent: AgentRecord, job: { buildId: string; pkgname: string; leaseId: string }): HeldJob {
    const held = agent.jobs.get(jobKey(job.buildId, job.pkgname));
    if (held === undefined || held.leaseId !== job.leaseId) throw new JobNotHeld(agent.id, job.buildId, job.pkgname);
    return held;
  }

  /** The holder of a job, whichever agent it is. */
  holderOf(buildId: string, pkgname: string): HeldJob | undefined {
    return this.holders.get(jobKey(buildId, pkgname));
  }

  release(job: HeldJob): void {
    const key = jobKey(job.buildId, job.pkgname);
    const agent = this.agents.get(job.agentId);
    if (agent?.jobs.get(key) === job) agent.jobs.delete(key);
    if (this.holders.get(key) === job) this.holders.delete(key);
  }

  /**
   * notListed compares what an agent says it runs (a heartbeat's list) with
   * what it holds here, and returns the held jobs it no longer runs: it lost
   * or dropped them, and they must go back. An assignment may still be on
   * its way down the stream when the agent sends its heartbeat, so a job
   * counts only once the agent accepted it or it was sent at least graceMs
   * (a heartbeat interval or more) ago.
   */
  notListed(agent: AgentRecord, listed: readonly { buildId: string; pkgname: string; leaseId: string }[], now: number, graceMs: number): HeldJob[] {
    const running = new Set(listed.map((j) => `${jobKey(j.buildId, j.pkgname)}\u0000${j.leaseId}`));
    const missing: HeldJob[] = [];
    for (const [key, job] of agent.jobs) {
      if (running.has(`${key}\u0000${job.leaseId}`)) continue;
      if (job.accepted || now - job.assignedAt >= graceMs) missing.push(job);
    }
    return missing;
  }

  /** Every job held by any agent, for lease renewal. */
  allHeld(): HeldJob[] {
    return [...this.holders.values()];
  }
}
