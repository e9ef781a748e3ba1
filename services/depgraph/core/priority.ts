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
  priorities(graph: JobGraph): Float64Array;
}

/** FIFO: every job equal, so jobs go out in the order they became ready. */
export const fifoPolicy: SchedulingPolicy = {
  name: "fifo",
  priorities: (graph) => new Float64Array(graph.dependencies.length),
};

/**
 * pbulk's order (pbulk-build's compute_tree_depth): a job's PBULK_WEIGHT plus
 * that of every package that needs it, directly or not. Counts work that
 * waits on a job, but not how long any of it takes.
 */
export const pbulkWeightPolicy: SchedulingPolicy = {
  name: "pbulk-weight",
  priorities(graph) {
    const n = graph.dependents.length;
    const result = new Float64Array(n);
    const seenBy = new Int32Array(n).fill(-1);
    const stack: number[] = [];
    for (let root = 0; root < n; root++) {
      let sum = graph.pbulkWeight[root]!;
      seenBy[root] = root;
      stack.push(root);
      while (stack.length > 0) {
        for (const up of graph.dependents[stack.pop()!]!) {
          if (seenBy[up] === root) continue;
          seenBy[up] = root;
          sum += graph.pbulkWeight[up]!;
          stack.push(up);
        }
      }
      result[root] = sum;
    }
    return result;
  },
};

/**
 * Critical path: a job's expected duration plus the longest chain of expected
 * durations among the jobs that need it. Starting the longest remaining chain
 * first is what keeps the makespan near its lower bound; pbulk's weight is
 * added in a small share so that, between chains of equal length, the one
 * that unblocks more packages goes first.
 */
export const criticalPathPolicy: SchedulingPolicy = {
  name: "critical-path",
  priorities(graph) {
    const n = graph.dependencies.length;
    const order = reverseTopologicalOrder(graph);
    const chain = new Float64Array(n);
    for (const job of order) {
      let longestAfter = 0;
      for (const up of graph.dependents[job]!) if (chain[up]! > longestAfter) longestAfter = chain[up]!;
      chain[job] = graph.expectedMs[job]! + longestAfter;
    }
    const weights = pbulkWeightPolicy.priorities(graph);
    for (let i = 0; i < n; i++) chain[i] = chain[i]! + weights[i]! * 1e-6;
    return chain;
  },
};

/** Jobs ordered so every job comes after all its dependents; jobs in cycles are left out. */
function reverseTopologicalOrder(graph: JobGraph): number[] {
  const n = graph.dependents.length;
  const remaining = new Int32Array(n);
  const order: number[] = [];
  for (let i = 0; i < n; i++) {
    remaining[i] = graph.dependents[i]!.length;
    if (remaining[i] === 0) order.push(i);
  }
  for (let k = 0; k < order.length; k++) {
    for (const down of graph.dependencies[order[k]!]!) {
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
