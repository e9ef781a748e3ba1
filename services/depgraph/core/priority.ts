import { findCyclesSteps } from "./cycles.js";
import { Counter, type Steps } from "./steps.js";

/** JobGraph is the part of a build a scheduling policy may look at. */
export interface JobGraph {
  /** Job indices each job needs. */
  readonly dependencies: readonly (readonly number[])[];
  /** Job indices that need each job. */
  readonly dependents: readonly (readonly number[])[];
  /** PBULK_WEIGHT per job. */
  readonly pbulkWeight: readonly number[];
  /** Expected build time per job in ms (history, or a fallback). */
  readonly expectedMs: readonly number[];
}

export type PolicyName = "critical-path" | "pbulk-weight" | "fifo";

/**
 * SchedulingPolicy gives each job a priority; the ready queue hands out the
 * largest first and, among equals, the one that became ready first.
 */
export interface SchedulingPolicy {
  readonly name: PolicyName;
  /** Yields between slices of work (see steps.ts); runSteps gets the answer at once. */
  priorities(graph: JobGraph): Steps<Float64Array>;
}

// Edges walked (or jobs visited) per slice: a few milliseconds.
const SLICE = 200_000;

/** FIFO: every job equal, so jobs go out in the order they became ready. */
export const fifoPolicy: SchedulingPolicy = {
  name: "fifo",
  *priorities(graph) {
    return new Float64Array(graph.dependencies.length);
  },
};

/**
 * pbulk's order (pbulk-build's compute_tree_depth): a job's PBULK_WEIGHT plus
 * that of every package that needs it, directly or not. Counts work that
 * waits on a job, but not how long any of it takes.
 *
 * The walk runs over the graph with each cycle made one node: every member
 * of a cycle reaches the same packages, and walking them member by member
 * costs the square of the cycle (an 8,000-package cycle took seconds).
 */
export const pbulkWeightPolicy: SchedulingPolicy = {
  name: "pbulk-weight",
  *priorities(graph) {
    const c = yield* condense(graph);
    return yield* pbulkWeights(graph, c);
  },
};

function* pbulkWeights(graph: JobGraph, c: Condensed): Steps<Float64Array> {
  const sums = new Float64Array(c.size);
  const seenBy = new Int32Array(c.size).fill(-1);
  const stack = new Int32Array(c.size);
  const { start, targets } = c.dependentsFlat;
  const slice = new Counter(SLICE);
  for (let root = 0; root < c.size; root++) {
    let sum = c.weight[root]!;
    let top = 0;
    let walked = 0;
    seenBy[root] = root;
    stack[top++] = root;
    while (top > 0) {
      const node = stack[--top]!;
      const end = start[node + 1]!;
      walked += end - start[node]!;
      for (let e = start[node]!; e < end; e++) {
        const up = targets[e]!;
        if (seenBy[up] === root) continue;
        seenBy[up] = root;
        sum += c.weight[up]!;
        stack[top++] = up;
      }
    }
    sums[root] = sum;
    if (slice.tick(walked + 1)) yield;
  }
  const result = new Float64Array(graph.dependencies.length);
  for (let i = 0; i < result.length; i++) result[i] = sums[c.componentOf[i]!]!;
  return result;
}

/**
 * Critical path: a job's expected duration plus the longest chain of expected
 * durations among the jobs that need it. Starting the longest remaining chain
 * first is what keeps the makespan near its lower bound; pbulk's weight is
 * added in a small share so that, between chains of equal length, the one
 * that unblocks more packages goes first.
 *
 * A cycle is never built, and neither is anything that needs it, so a chain
 * ends where it meets one: a cycle's members have no chain of their own, and
 * what they need is ranked by its other dependents only.
 */
export const criticalPathPolicy: SchedulingPolicy = {
  name: "critical-path",
  *priorities(graph) {
    const c = yield* condense(graph);
    const chain = new Float64Array(c.size);
    const order = reverseTopologicalOrder(c);
    yield;
    const slice = new Counter(SLICE / 4);
    for (const comp of order) {
      if (slice.tick(1 + c.dependents[comp]!.length)) yield;
      if (c.cyclic[comp] === 1) continue;
      let longestAfter = 0;
      for (const up of c.dependents[comp]!) if (chain[up]! > longestAfter) longestAfter = chain[up]!;
      chain[comp] = c.expectedMs[comp]! + longestAfter;
    }
    yield;
    const weights = yield* pbulkWeights(graph, c);
    const result = new Float64Array(graph.dependencies.length);
    for (let i = 0; i < result.length; i++) result[i] = chain[c.componentOf[i]!]! + weights[i]! * 1e-6;
    return result;
  },
};

/**
 * Condensed is a job graph with each cycle (strongly connected component of
 * more than one job, or a job that needs itself) made one node, so it has no
 * cycles. Nodes not on a cycle keep their own component.
 */
interface Condensed {
  /** Number of components. */
  readonly size: number;
  /** Component of each job. */
  readonly componentOf: Int32Array;
  /** 1 for a component that is a cycle. */
  readonly cyclic: Uint8Array;
  /** Distinct components that need each component, itself left out. */
  readonly dependents: readonly (readonly number[])[];
  /** Distinct components each component needs, itself left out. */
  readonly dependencies: readonly (readonly number[])[];
  /** dependents as one array (component k's are targets[start[k]...start[k+1]]), for the walks. */
  readonly dependentsFlat: { readonly start: Int32Array; readonly targets: Int32Array };
  /** Summed PBULK_WEIGHT of the members. */
  readonly weight: Float64Array;
  /** Expected duration of a job not on a cycle (0 for a cycle). */
  readonly expectedMs: Float64Array;
}

function* condense(graph: JobGraph): Steps<Condensed> {
  const n = graph.dependencies.length;
  const componentOf = new Int32Array(n).fill(-1);
  const cycles = yield* findCyclesSteps(graph.dependencies);
  let size = 0;
  for (const members of cycles) {
    for (const i of members) componentOf[i] = size;
    size++;
  }
  const cyclicCount = size;
  for (let i = 0; i < n; i++) if (componentOf[i] === -1) componentOf[i] = size++;
  yield;
  const cyclic = new Uint8Array(size);
  cyclic.fill(1, 0, cyclicCount);
  const weight = new Float64Array(size);
  const expectedMs = new Float64Array(size);
  for (let i = 0; i < n; i++) {
    const comp = componentOf[i]!;
    weight[comp] = weight[comp]! + graph.pbulkWeight[i]!;
    if (comp >= cyclicCount) expectedMs[comp] = graph.expectedMs[i]!;
  }
  yield;
  const dependents: number[][] = Array.from({ length: size }, () => []);
  const dependencies: number[][] = Array.from({ length: size }, () => []);
  yield;
  // Last component that added each edge target, so an edge is kept once.
  const addedFor = new Int32Array(size).fill(-1);
  const members: number[][] = Array.from({ length: size }, () => []);
  for (let i = 0; i < n; i++) members[componentOf[i]!]!.push(i);
  yield;
  const slice = new Counter(SLICE / 4);
  let edges = 0;
  for (let comp = 0; comp < size; comp++) {
    for (const i of members[comp]!) {
      if (slice.tick(1 + graph.dependencies[i]!.length)) yield;
      for (const d of graph.dependencies[i]!) {
        const dc = componentOf[d]!;
        if (dc === comp || addedFor[dc] === comp) continue;
        addedFor[dc] = comp;
        dependencies[comp]!.push(dc);
        dependents[dc]!.push(comp);
        edges++;
      }
    }
  }
  yield;
  const start = new Int32Array(size + 1);
  const targets = new Int32Array(edges);
  for (let comp = 0, at = 0; comp < size; comp++) {
    start[comp] = at;
    for (const up of dependents[comp]!) targets[at++] = up;
  }
  start[size] = edges;
  return { size, componentOf, cyclic, dependents, dependencies, dependentsFlat: { start, targets }, weight, expectedMs };
}

/** Components ordered so every one comes after all its dependents. */
function reverseTopologicalOrder(c: Condensed): number[] {
  const remaining = new Int32Array(c.size);
  const order: number[] = [];
  for (let i = 0; i < c.size; i++) {
    remaining[i] = c.dependents[i]!.length;
    if (remaining[i] === 0) order.push(i);
  }
  for (let k = 0; k < order.length; k++) {
    for (const down of c.dependencies[order[k]!]!) {
      remaining[down] = remaining[down]! - 1;
      if (remaining[down] === 0) order.push(down);
    }
  }
  return order;
}

export const policies: Readonly<Record<PolicyName, SchedulingPolicy>> = {
  "critical-path": criticalPathPolicy,
  "pbulk-weight": pbulkWeightPolicy,
  fifo: fifoPolicy,
};
