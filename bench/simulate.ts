import { DepGraph } from "../services/depgraph/core/depgraph.js";
import { Heap } from "../services/depgraph/core/heap.js";
import type { DurationHistory } from "../services/depgraph/core/history.js";
import type { PolicyName } from "../services/depgraph/core/priority.js";
import type { PackageTree } from "../services/depgraph/core/tree.js";

export interface SimulationResult {
  readonly policy: string;
  readonly agents: number;
  readonly makespanHours: number;
  readonly lowerBoundHours: number;
  readonly ratio: number;
  readonly jobsBuilt: number;
  readonly criticalPathHours: number;
  readonly totalWorkHours: number;
}

/**
 * SimHost is one build host of a simulated farm: its slots build at once,
 * each job taking its true duration divided by speed (1 is the machine the
 * durations were measured on). Other properties a placement needs (memory,
 * disk, labels) belong here too.
 */
export interface SimHost {
  readonly name: string;
  readonly slots: number;
  readonly speed: number;
}

/** agents hosts of one slot each at speed 1: the farm of the depgraph bench. */
export function uniformFarm(agents: number): SimHost[] {
  return Array.from({ length: agents }, (_, i) => ({ name: `agent-${i}`, slots: 1, speed: 1 }));
}

/** Total slots of a farm, and its capacity in reference-speed slots. */
export function farmCapacity(hosts: readonly SimHost[]): { slots: number; capacity: number; fastest: number } {
  let slots = 0;
  let capacity = 0;
  let fastest = 0;
  for (const h of hosts) {
    slots += h.slots;
    capacity += h.slots * h.speed;
    fastest = Math.max(fastest, h.speed);
  }
  return { slots, capacity, fastest };
}

const PLATFORM = "Sim-1.0-x86_64";
const BINARY = { fileName: "sim.tgz", sha256: "0".repeat(64), sizeBytes: 1 };

/** One free slot: the farm hands out work to the fastest free slot first. */
interface Slot {
  readonly host: SimHost;
  /** Index over the whole farm, fastest hosts first (dsynth splits its workers by index). */
  readonly index: number;
}

function slotsOf(hosts: readonly SimHost[]): Slot[] {
  const sorted = [...hosts].sort((a, b) => b.speed - a.speed);
  const slots: Slot[] = [];
  for (const host of sorted) for (let k = 0; k < host.slots; k++) slots.push({ host, index: slots.length });
  return slots;
}

/**
 * simulateBulkBuild runs a whole bulk build through the real core with a
 * scripted clock: `agents` build hosts each take the next ready job the
 * moment they are free, and a job takes its true duration. The policy sees
 * only what `history` tells it, never trueMs.
 */
export function simulateBulkBuild(
  tree: PackageTree,
  policy: PolicyName,
  agents: number,
  trueMs: (pkgname: string) => number,
  history: DurationHistory,
): SimulationResult {
  return simulateFarm(tree, policy, uniformFarm(agents), trueMs, history);
}

/**
 * simulateFarm is simulateBulkBuild on a farm of hosts of several speeds and
 * slot counts. Each MarkDone reports the time the job took on its host and
 * names the host, as a dispatcher does, so the duration model learns host
 * speeds. The lower bound is max(critical path on the fastest host, total
 * work over the farm's capacity).
 */
export function simulateFarm(
  tree: PackageTree,
  policy: PolicyName,
  hosts: readonly SimHost[],
  trueMs: (pkgname: string) => number,
  history: DurationHistory,
): SimulationResult {
  let now = 0;
  let ids = 0;
  const depgraph = new DepGraph({
    now: () => now,
    newId: () => String(++ids),
    history,
    defaultPolicy: policy,
    defaultLeaseMs: 1e12,
    maxLeaseMs: 1e12,
    maxLosses: 3,
    fallbackDurationMs: 60_000,
    tree,
  });
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy, limitTo: [], packagesDir: "", binaryPackages: new Map() });

  interface Running { end: number; pkgname: string; leaseId: string; slot: Slot }
  const running = new Heap<Running>((a, b) => a.end < b.end || (a.end === b.end && a.slot.index < b.slot.index));
  // Free slots, fastest first.
  const free = new Heap<Slot>((a, b) => a.index < b.index);
  for (const slot of slotsOf(hosts)) free.push(slot);
  let built = 0;
  const startWork = () => {
    while (free.size > 0) {
      const slot = free.peek()!;
      const [a] = depgraph.nextReadyJobs(PLATFORM, slot.host.name, 1, undefined);
      if (a === undefined) return;
      free.pop();
      running.push({ end: now + trueMs(a.job.pkgname) / slot.host.speed, pkgname: a.job.pkgname, leaseId: a.lease.id, slot });
    }
  };
  startWork();
  while (running.size > 0) {
    const done = running.pop()!;
    const startedAt = done.end - trueMs(done.pkgname) / done.slot.host.speed;
    now = done.end;
    depgraph.markDone([{
      buildId: build.id, pkgname: done.pkgname, leaseId: done.leaseId, agentId: done.slot.host.name, succeeded: true,
      durationMs: now - startedAt, binaryPackage: BINARY, logRef: "", failureReason: "",
    }]);
    free.push(done.slot);
    built++;
    // Finish everything that ends at this instant before choosing, as a real
    // dispatcher would see simultaneous completions together.
    if (running.peek()?.end === now) continue;
    startWork();
  }
  if (build.state !== "finished") throw new Error(`simulation stalled with ${build.countOf("pending")} jobs pending`);
  return result(policy, hosts, now, built, workFigures(build.jobs, trueMs));
}

function result(policy: string, hosts: readonly SimHost[], makespanMs: number, built: number, work: { criticalPathMs: number; totalWorkMs: number }): SimulationResult {
  const farm = farmCapacity(hosts);
  const lowerBound = Math.max(work.criticalPathMs / farm.fastest, work.totalWorkMs / farm.capacity);
  return {
    policy,
    agents: farm.slots,
    criticalPathHours: work.criticalPathMs / 3_600_000,
    totalWorkHours: work.totalWorkMs / 3_600_000,
    makespanHours: makespanMs / 3_600_000,
    lowerBoundHours: lowerBound / 3_600_000,
    ratio: makespanMs / lowerBound,
    jobsBuilt: built,
  };
}

/** SimGraph is the buildable part of a build: what list schedulers of other builders order. */
export interface SimGraph {
  readonly pkgnames: readonly string[];
  readonly dependencies: readonly (readonly number[])[];
  readonly dependents: readonly (readonly number[])[];
  /** The jobs of the core's build with these packages, for workFigures. */
  readonly jobs: readonly SimJob[];
}

/**
 * buildableGraph is the graph of the jobs a full build of tree would build
 * (neither prefailed, in a cycle, nor needing one that is), as the core
 * resolved them.
 */
export function buildableGraph(tree: PackageTree): SimGraph {
  let ids = 0;
  const depgraph = new DepGraph({
    now: () => 0, newId: () => String(++ids), history: { expectedMs: () => undefined, record: () => {}, typicalMs: () => undefined, *predict(_, input) {
      return input.packages.map(() => ({ ms: 1, source: "" }));
    } },
    defaultPolicy: "fifo", defaultLeaseMs: 1e12, maxLeaseMs: 1e12, maxLosses: 3, fallbackDurationMs: 1, tree,
  });
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: "fifo", limitTo: [], packagesDir: "", binaryPackages: new Map() });
  const jobs = build.jobs;
  const ok = new Uint8Array(jobs.length);
  // Decided in dependency order: a job is buildable when it starts pending
  // or ready and every dependency is buildable.
  const order = topologicalOrder(jobs.map((j) => j.dependencies));
  for (const i of order) ok[i] = (jobs[i]!.state === "pending" || jobs[i]!.state === "ready") && jobs[i]!.dependencies.every((d) => ok[d] === 1) ? 1 : 0;
  const indexOf = new Int32Array(jobs.length).fill(-1);
  const pkgnames: string[] = [];
  for (let i = 0; i < jobs.length; i++) if (ok[i] === 1) indexOf[i] = pkgnames.push(jobs[i]!.pkgname) - 1;
  const dependencies: number[][] = pkgnames.map(() => []);
  const dependents: number[][] = pkgnames.map(() => []);
  for (let i = 0; i < jobs.length; i++) {
    if (ok[i] !== 1) continue;
    for (const d of jobs[i]!.dependencies) {
      dependencies[indexOf[i]!]!.push(indexOf[d]!);
      dependents[indexOf[d]!]!.push(indexOf[i]!);
    }
  }
  const simJobs: SimJob[] = pkgnames.map((pkgname, i) => ({ pkgname, state: "succeeded", dependencies: dependencies[i]! }));
  return { pkgnames, dependencies, dependents, jobs: simJobs };
}

function topologicalOrder(dependencies: readonly (readonly number[])[]): number[] {
  const n = dependencies.length;
  const remaining = new Int32Array(n);
  const dependents: number[][] = Array.from({ length: n }, () => []);
  for (let i = 0; i < n; i++) {
    remaining[i] = dependencies[i]!.length;
    for (const d of dependencies[i]!) dependents[d]!.push(i);
  }
  const order: number[] = [];
  for (let i = 0; i < n; i++) if (remaining[i] === 0) order.push(i);
  for (let k = 0; k < order.length; k++) {
    for (const up of dependents[order[k]!]!) {
      remaining[up] = remaining[up]! - 1;
      if (remaining[up] === 0) order.push(up);
    }
  }
  return order;
}

/**
 * ListOrder is another builder's way to choose among ready jobs, for the
 * comparison: queues of job indices by priority (largest first, then the
 * one ready first), and which queue a slot takes from.
 */
export interface ListOrder {
  readonly name: string;
  /** One priority array per queue; every ready job enters every queue. */
  readonly queues: readonly Float64Array[];
  /** Which queue a free slot takes from. */
  queueFor(slotIndex: number, totalSlots: number): number;
}

/**
 * simulateListOrder runs a bulk build of graph with a list scheduler that
 * orders ready jobs as order says: the same farm, clock and rules as
 * simulateFarm, but the choice is poudriere's, dsynth's or another's, not
 * pkgfarm's core.
 */
export function simulateListOrder(graph: SimGraph, order: ListOrder, hosts: readonly SimHost[], trueMs: (pkgname: string) => number): SimulationResult {
  const n = graph.pkgnames.length;
  const duration = Float64Array.from(graph.pkgnames, (name) => trueMs(name));
  const waiting = Int32Array.from(graph.dependencies, (d) => d.length);
  const started = new Uint8Array(n);
  let readySeq = 0;
  const readyAt = new Float64Array(n);
  const queues = order.queues.map((priority) => new Heap<number>((a, b) => priority[a]! > priority[b]! || (priority[a] === priority[b] && readyAt[a]! < readyAt[b]!)));
  const makeReady = (i: number) => {
    readyAt[i] = readySeq++;
    for (const q of queues) q.push(i);
  };
  for (let i = 0; i < n; i++) if (waiting[i] === 0) makeReady(i);
  const slots = slotsOf(hosts);
  interface Running { end: number; job: number; slot: Slot }
  const running = new Heap<Running>((a, b) => a.end < b.end || (a.end === b.end && a.slot.index < b.slot.index));
  const free = new Heap<Slot>((a, b) => a.index < b.index);
  for (const slot of slots) free.push(slot);
  let now = 0;
  let built = 0;
  const next = (q: Heap<number>): number | undefined => {
    while (q.size > 0) {
      const i = q.pop()!;
      if (started[i] === 0) return i;
    }
    return undefined;
  };
  const startWork = () => {
    const deferred: Slot[] = [];
    while (free.size > 0) {
      const slot = free.pop()!;
      const job = next(queues[order.queueFor(slot.index, slots.length)]!);
      if (job === undefined) {
        deferred.push(slot);
        // Another queue may still hold work for another slot; all queues
        // hold the same jobs, so an empty one means none is ready.
        break;
      }
      started[job] = 1;
      running.push({ end: now + duration[job]! / slot.host.speed, job, slot });
    }
    for (const slot of deferred) free.push(slot);
  };
  startWork();
  while (running.size > 0) {
    const done = running.pop()!;
    now = done.end;
    built++;
    free.push(done.slot);
    for (const up of graph.dependents[done.job]!) {
      waiting[up] = waiting[up]! - 1;
      if (waiting[up] === 0) makeReady(up);
    }
    if (running.peek()?.end === now) continue;
    startWork();
  }
  if (built !== n) throw new Error(`list simulation stalled: ${n - built} jobs never ready`);
  return result(order.name, hosts, now, built, workFigures(graph.jobs, trueMs));
}

interface SimJob {
  readonly pkgname: string;
  readonly state: string;
  readonly dependencies: readonly number[];
}

/** Critical path and total work over the jobs that were built, with true durations. */
export function workFigures(jobs: readonly SimJob[], trueMs: (pkgname: string) => number): { criticalPathMs: number; totalWorkMs: number; jobs: number } {
  const finish = new Float64Array(jobs.length).fill(-1);
  let criticalPathMs = 0;
  let totalWorkMs = 0;
  let count = 0;
  const visit = (root: number): number => {
    const stack = [root];
    while (stack.length > 0) {
      const i = stack[stack.length - 1]!;
      if (finish[i]! >= 0) {
        stack.pop();
        continue;
      }
      const pendingDeps = jobs[i]!.dependencies.filter((d) => finish[d]! < 0);
      if (pendingDeps.length > 0) {
        stack.push(...pendingDeps);
        continue;
      }
      stack.pop();
      let start = 0;
      for (const d of jobs[i]!.dependencies) start = Math.max(start, finish[d]!);
      finish[i] = start + (jobs[i]!.state === "succeeded" ? trueMs(jobs[i]!.pkgname) : 0);
    }
    return finish[root]!;
  };
  jobs.forEach((job, i) => {
    if (job.state !== "succeeded") return;
    count++;
    totalWorkMs += trueMs(job.pkgname);
    criticalPathMs = Math.max(criticalPathMs, visit(i));
  });
  return { criticalPathMs, totalWorkMs, jobs: count };
}

/** A small fast PRNG with a fixed seed, so every run draws the same durations. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
