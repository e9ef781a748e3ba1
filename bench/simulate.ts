import { DepGraph } from "../services/depgraph/core/depgraph.js";
import { Heap } from "../services/depgraph/core/heap.js";
import type { DurationHistory } from "../services/depgraph/core/history.js";
import type { PolicyName } from "../services/depgraph/core/priority.js";
import type { PackageTree } from "../services/depgraph/core/tree.js";
import type { ResourceBook } from "../services/depgraph/core/resource-needs.js";
import { chooseHost, takeOn, type Host, type Needs } from "../services/shared/placement.js";

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
 * durations were measured on). memoryBytes is what placement sees of it
 * (simulatePlacedFarm); absent or 0, as for an agent that did not say, any
 * memory need fits.
 */
export interface SimHost {
  readonly name: string;
  readonly slots: number;
  readonly speed: number;
  readonly memoryBytes?: number;
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
 * simulatedBuild is a depgraph on the simulation's clock, leases that never
 * expire, and one full build of the tree: what every simulated farm builds.
 */
function simulatedBuild(tree: PackageTree, policy: PolicyName, history: DurationHistory, now: () => number, resources?: ResourceBook) {
  let ids = 0;
  const depgraph = new DepGraph({
    now,
    newId: () => String(++ids),
    history,
    ...(resources === undefined ? {} : { resources }),
    defaultPolicy: policy,
    defaultLeaseMs: 1e12,
    maxLeaseMs: 1e12,
    maxLosses: 3,
    fallbackDurationMs: 60_000,
    tree,
  });
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  return { depgraph, build };
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
  const { depgraph, build } = simulatedBuild(tree, policy, history, () => now);

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

/** PlacedResult is a memory-limited farm's run: the figures of any run, the lower bound's parts, and what the placement check found. */
export interface PlacedResult extends SimulationResult {
  readonly lowerBound: MemoryLowerBound;
  /** Jobs started where they do not fit: a host without the memory for them (too small, or too full at that moment), without a free slot, or already running one of their exclusion class. Must be 0. */
  readonly misplaced: number;
  /** Jobs started on each host. */
  readonly startedOn: Readonly<Record<string, number>>;
  /** The most memory the jobs running at once on each host truly needed, in bytes. */
  readonly peakMemoryUsed: Readonly<Record<string, number>>;
}

/**
 * simulatePlacedFarm is simulateFarm on a farm whose hosts have memory and
 * whose packages need it, placed the way the services place them: the
 * dispatcher sends depgraph its hosts with what is free on them
 * (NextReadyJob's agents), depgraph's core leases only jobs that fit a
 * host's free part (DepGraph.placementRound, a HostPlan), and the
 * dispatcher puts each leased job on the host chooseHost picks
 * (AgentRegistry.pickAgent). Placement knows only what resources (the
 * core's ResourceBook) says a package needs; memoryNeed and exclusiveOf
 * (its class under "at most one of these at a time per host"; "" for none)
 * are the truth. Each start is checked against the host's memory and slots,
 * what its running jobs truly hold and the classes they run, by arithmetic
 * of its own rather than placement's functions, so a job placed where it
 * does not fit is counted, whether placement erred or was told wrong; the
 * lower bound is computed from the truth too.
 */
export function simulatePlacedFarm(
  tree: PackageTree,
  policy: PolicyName,
  hosts: readonly SimHost[],
  trueMs: (pkgname: string) => number,
  history: DurationHistory,
  memoryNeed: (pkgname: string) => number,
  resources: ResourceBook,
  exclusiveOf: (pkgname: string) => string = () => "",
): PlacedResult {
  let now = 0;
  const { depgraph, build } = simulatedBuild(tree, policy, history, () => now, resources);
  const needOf = (pkgname: string, location: string) => resources.needsOf(pkgname, location).needs;

  // reserved is what the dispatcher's registry counts (the needs it was
  // told); used is what the running jobs truly need.
  // reservedClasses and classes likewise: the exclusion classes the registry
  // was told its running jobs have, and those they truly have.
  interface HostState { readonly sim: SimHost; running: number; reserved: number; used: number; peak: number; started: number; reservedClasses: string[]; classes: string[] }
  const state = new Map(hosts.map((h) => [h.name, { sim: h, running: 0, reserved: 0, used: 0, peak: 0, started: 0, reservedClasses: [], classes: [] } as HostState]));
  // What the dispatcher's registry would send: each host with what its running jobs leave free.
  const placementView = (): Host[] => [...state.values()].map((s) => ({
    id: s.sim.name,
    freeSlots: s.sim.slots - s.running,
    cpus: 0,
    memoryBytes: s.sim.memoryBytes ?? 0,
    diskBytes: 0,
    memoryFreeBytes: Math.max(0, (s.sim.memoryBytes ?? 0) - s.reserved),
    diskFreeBytes: 0,
    labels: {},
    exclusiveRunning: [...s.reservedClasses],
  }));
  interface Running { end: number; seq: number; pkgname: string; leaseId: string; host: HostState; needs: Needs; trueBytes: number; trueClass: string; startedAt: number }
  const running = new Heap<Running>((a, b) => a.end < b.end || (a.end === b.end && a.seq < b.seq));
  let seq = 0;
  let built = 0;
  let misplaced = 0;
  // No job needs less than this, so a host with less free runs nothing more.
  const smallestNeed = Math.min(...build.jobs.map((j) => needOf(j.pkgname, j.pkg.record.location).memoryBytes));
  const startWork = () => {
    let view = placementView();
    // Ask for no more jobs than the hosts could take if every one needed the
    // least any job needs. The round leases in priority order and stops at
    // this many, and no more could fit anyway, so the choice is the same; but
    // without the cap a host with a free slot and too little memory left
    // makes the round look at every ready job, on every completion.
    const room = view.reduce((sum, h) => sum + (h.memoryBytes > 0 && smallestNeed > 0 ? Math.min(h.freeSlots, Math.floor(h.memoryFreeBytes / smallestNeed)) : h.freeSlots), 0);
    if (room === 0) return;
    const round = depgraph.placementRound(view);
    let leased;
    try {
      leased = depgraph.nextReadyJobs(PLATFORM, "dispatcher", room, undefined, round);
    } finally {
      round.end();
    }
    for (const a of leased) {
      const needs = depgraph.needsOf(a.job).needs;
      const chosen = chooseHost(needs, view);
      // The round reserved room for every job it leased, in this order, with
      // the same placement rules: a job with no host means the two disagree.
      if (chosen === undefined) throw new Error(`depgraph leased ${a.job.pkgname} but no host can take it: core and dispatcher placement disagree`);
      view = view.map((h) => (h === chosen ? takeOn(h, needs) : h));
      const host = state.get(chosen.id)!;
      const memory = host.sim.memoryBytes ?? 0;
      const trueBytes = memoryNeed(a.job.pkgname);
      const trueClass = exclusiveOf(a.job.pkgname);
      if ((memory > 0 && host.used + trueBytes > memory) || host.running >= host.sim.slots || (trueClass !== "" && host.classes.includes(trueClass))) misplaced++;
      if (needs.exclusive !== "") host.reservedClasses.push(needs.exclusive);
      if (trueClass !== "") host.classes.push(trueClass);
      host.running++;
      host.started++;
      host.reserved += needs.memoryBytes;
      host.used += trueBytes;
      host.peak = Math.max(host.peak, host.used);
      running.push({ end: now + trueMs(a.job.pkgname) / host.sim.speed, seq: seq++, pkgname: a.job.pkgname, leaseId: a.lease.id, host, needs, trueBytes, trueClass, startedAt: now });
    }
  };
  startWork();
  while (running.size > 0) {
    const done = running.pop()!;
    now = done.end;
    done.host.running--;
    done.host.reserved -= done.needs.memoryBytes;
    done.host.used -= done.trueBytes;
    if (done.needs.exclusive !== "") done.host.reservedClasses.splice(done.host.reservedClasses.indexOf(done.needs.exclusive), 1);
    if (done.trueClass !== "") done.host.classes.splice(done.host.classes.indexOf(done.trueClass), 1);
    depgraph.markDone([{
      buildId: build.id, pkgname: done.pkgname, leaseId: done.leaseId, agentId: done.host.sim.name, succeeded: true,
      durationMs: now - done.startedAt, binaryPackage: BINARY, logRef: "", failureReason: "", peakMemoryBytes: done.trueBytes,
    }]);
    built++;
    if (running.peek()?.end === now) continue;
    startWork();
  }
  if (build.state !== "finished") throw new Error(`simulation stalled with ${build.countOf("pending")} jobs pending`);
  const jobs = build.jobs.map((j) => ({ pkgname: j.pkgname, state: j.state, dependencies: j.dependencies, memoryBytes: memoryNeed(j.pkgname), exclusive: exclusiveOf(j.pkgname) }));
  const lowerBound = memoryLowerBound(jobs, trueMs, hosts);
  const farm = farmCapacity(hosts);
  return {
    policy,
    agents: farm.slots,
    criticalPathHours: lowerBound.criticalPathMs / 3_600_000,
    totalWorkHours: lowerBound.totalWorkMs / 3_600_000,
    makespanHours: now / 3_600_000,
    lowerBoundHours: lowerBound.ms / 3_600_000,
    ratio: now / lowerBound.ms,
    jobsBuilt: built,
    lowerBound,
    misplaced,
    startedOn: Object.fromEntries([...state.values()].map((s) => [s.sim.name, s.started])),
    peakMemoryUsed: Object.fromEntries([...state.values()].map((s) => [s.sim.name, s.peak])),
  };
}

/** MemoryLowerBound is a memory-limited farm's lower bound and the terms it is the largest of. */
export interface MemoryLowerBound {
  readonly ms: number;
  /** Which term is the bound: "critical path", "memory-time", "class C, one per host", "jobs needing ≥ N GiB", or "work / capacity" (no needs). */
  readonly bindingTerm: string;
  /** Longest chain of true durations, each at the fastest speed of the hosts that job fits (ms of wall time). */
  readonly criticalPathMs: number;
  /** Total true work at reference speed. */
  readonly totalWorkMs: number;
  /** One term per distinct memory need N: the work of the jobs needing at least N over the rate the hosts can run them at. */
  readonly byNeed: readonly { readonly needBytes: number; readonly jobs: number; readonly workMs: number; readonly concurrentSlots: number; readonly rate: number; readonly boundMs: number }[];
  /** Σ need × work over Σ host memory × speed. */
  readonly memoryTimeMs: number;
  /** One term per exclusion class: its work over Σ speed of the hosts its jobs fit (one at a time on each). */
  readonly byClass: readonly { readonly exclusive: string; readonly jobs: number; readonly workMs: number; readonly rate: number; readonly boundMs: number }[];
}

/**
 * memoryLowerBound: no schedule of these jobs on these hosts can end
 * sooner than the largest of
 *  - the critical path, each job taking its duration at the fastest speed
 *    of the hosts it fits (a job never runs faster than that);
 *  - for each memory need N among the jobs: the work of the jobs that need
 *    at least N, over the rate the farm can run them at. Such a job runs
 *    only on a host with at least N, and each one holds N of it, so host h
 *    runs at most min(slots, ⌊memory / N⌋) of them at once, each at the
 *    host's speed; the rate is that sum. For the smallest N this is total
 *    work over the farm's capacity, made smaller by memory where a host's
 *    memory cannot fill its slots; for the largest it is the work only the
 *    big hosts can run over the big hosts' capacity;
 *  - memory-time: every running job holds its need, so Σ need × duration
 *    cannot exceed the farm's Σ memory × speed per unit of time;
 *  - for each exclusion class: its work over the summed speed of the hosts
 *    that fit its smallest memory need, since each runs one at a time.
 * Hosts without a memory figure count as fitting anything, as placement
 * treats them. Every job must fit some host, or no schedule ends at all.
 */
export function memoryLowerBound(
  jobs: readonly (SimJob & { readonly memoryBytes: number; readonly exclusive?: string })[],
  trueMs: (pkgname: string) => number,
  hosts: readonly SimHost[],
): MemoryLowerBound {
  const fitsOn = (need: number, h: SimHost) => !(h.memoryBytes !== undefined && h.memoryBytes > 0 && need > h.memoryBytes);
  const fastestFor = new Map<number, number>();
  const fastest = (need: number) => {
    let speed = fastestFor.get(need);
    if (speed === undefined) {
      speed = Math.max(0, ...hosts.filter((h) => fitsOn(need, h)).map((h) => h.speed));
      if (speed === 0) throw new Error(`a job needs ${need} bytes of memory and no host has that much`);
      fastestFor.set(need, speed);
    }
    return speed;
  };
  const needByName = new Map(jobs.map((j) => [j.pkgname, j.memoryBytes]));
  const criticalPathMs = workFigures(jobs, (name) => trueMs(name) / fastest(needByName.get(name)!)).criticalPathMs;
  const built = jobs.filter((j) => j.state === "succeeded");
  const totalWorkMs = built.reduce((sum, j) => sum + trueMs(j.pkgname), 0);
  const needs = [...new Set(built.map((j) => j.memoryBytes))].sort((a, b) => a - b);
  const byNeed = needs.map((need) => {
    const mine = built.filter((j) => j.memoryBytes >= need);
    const workMs = mine.reduce((sum, j) => sum + trueMs(j.pkgname), 0);
    let concurrentSlots = 0;
    let rate = 0;
    for (const h of hosts) {
      if (!fitsOn(need, h)) continue;
      const atOnce = need > 0 && h.memoryBytes !== undefined && h.memoryBytes > 0 ? Math.min(h.slots, Math.floor(h.memoryBytes / need)) : h.slots;
      concurrentSlots += atOnce;
      rate += atOnce * h.speed;
    }
    return { needBytes: need, jobs: mine.length, workMs, concurrentSlots, rate, boundMs: workMs / rate };
  });
  const withMemory = hosts.every((h) => h.memoryBytes !== undefined && h.memoryBytes > 0);
  const memoryTimeMs = withMemory
    ? built.reduce((sum, j) => sum + j.memoryBytes * trueMs(j.pkgname), 0) / hosts.reduce((sum, h) => sum + h.memoryBytes! * h.speed, 0)
    : 0;
  const classes = [...new Set(built.map((j) => j.exclusive ?? "").filter((c) => c !== ""))].sort();
  const byClass = classes.map((exclusive) => {
    const mine = built.filter((j) => j.exclusive === exclusive);
    const workMs = mine.reduce((sum, j) => sum + trueMs(j.pkgname), 0);
    const smallest = Math.min(...mine.map((j) => j.memoryBytes));
    const rate = hosts.filter((h) => fitsOn(smallest, h)).reduce((sum, h) => sum + h.speed, 0);
    return { exclusive, jobs: mine.length, workMs, rate, boundMs: workMs / rate };
  });
  const terms: [string, number][] = [["critical path", criticalPathMs], ["memory-time", memoryTimeMs],
    ...byClass.map((t) => [`class ${t.exclusive}, one per host`, t.boundMs] as [string, number]),
    ...byNeed.map((t) => [t.needBytes === 0 ? "work / capacity" : `jobs needing ≥ ${formatGiB(t.needBytes)}`, t.boundMs] as [string, number])];
  const [bindingTerm, ms] = terms.reduce((a, b) => (b[1] > a[1] ? b : a));
  return { ms, bindingTerm, criticalPathMs, totalWorkMs, byNeed, memoryTimeMs, byClass };
}

function formatGiB(bytes: number): string {
  return `${Math.round((bytes / 2 ** 30) * 100) / 100} GiB`;
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
