import { Counter, runSteps, type Steps } from "./steps.js";

/**
 * findCycles returns every dependency cycle of a graph given as adjacency
 * lists over node indices: each strongly connected component with more than
 * one node, or one node that needs itself. Tarjan's algorithm, iterative so a
 * 51-deep (or 29,000-deep) chain cannot overflow the stack.
 */
export function findCycles(edges: readonly (readonly number[])[]): number[][] {
  return runSteps(findCyclesSteps(edges));
}

// Edges followed per slice of findCyclesSteps.
const EDGES_PER_SLICE = 20_000;

/** findCyclesSteps is findCycles in slices (see steps.ts): a whole tree has 200,000 edges. */
export function* findCyclesSteps(edges: readonly (readonly number[])[]): Steps<number[][]> {
  const slice = new Counter(EDGES_PER_SLICE);
  const n = edges.length;
  const index = new Int32Array(n).fill(-1);
  const lowLink = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const cycles: number[][] = [];
  let nextIndex = 0;
  // Explicit call stack: node and position in its edge list.
  const callNode: number[] = [];
  const callEdge: number[] = [];

  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    callNode.push(root);
    callEdge.push(0);
    index[root] = lowLink[root] = nextIndex++;
    stack.push(root);
    onStack[root] = 1;
    while (callNode.length > 0) {
      if (slice.tick()) yield;
      const top = callNode.length - 1;
      const v = callNode[top]!;
      const out = edges[v]!;
      const e = callEdge[top]!;
      if (e < out.length) {
        callEdge[top] = e + 1;
        const w = out[e]!;
        if (index[w] === -1) {
          index[w] = lowLink[w] = nextIndex++;
          stack.push(w);
          onStack[w] = 1;
          callNode.push(w);
          callEdge.push(0);
        } else if (onStack[w] === 1 && index[w]! < lowLink[v]!) {
          lowLink[v] = index[w]!;
        }
        continue;
      }
      callNode.pop();
      callEdge.pop();
      if (callNode.length > 0) {
        const parent = callNode[callNode.length - 1]!;
        if (lowLink[v]! < lowLink[parent]!) lowLink[parent] = lowLink[v]!;
      }
      if (lowLink[v] === index[v]) {
        const component: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          component.push(w);
        } while (w !== v);
        if (component.length > 1 || out.includes(v)) cycles.push(component.reverse());
      }
    }
  }
  return cycles;
}

/** Members a cycle's description names before it stops (Job.cycle holds more). */
export const CYCLE_MEMBERS_NAMED = 5;

const descriptions = new WeakMap<readonly string[], string>();

/**
 * cycleReason is the reason every job of a cycle shares: how many packages
 * the cycle has and the first few of them. A cycle of 8,000 packages named
 * in full in each of its jobs' reasons cost a build 1.9 GB; this is one
 * short string per cycle, made once for each members array (the tree keeps
 * one per cycle for as long as the cycle stands) and shared by every job and
 * build that refers to it.
 */
export function cycleReason(members: readonly string[]): string {
  let reason = descriptions.get(members);
  if (reason === undefined) {
    const named = members.slice(0, CYCLE_MEMBERS_NAMED).join(" -> ");
    reason = members.length <= CYCLE_MEMBERS_NAMED
      ? `dependency cycle: ${named}`
      : `member of a dependency cycle of ${members.length.toLocaleString("en-US")} packages: ${named} -> ... (first ${CYCLE_MEMBERS_NAMED})`;
    descriptions.set(members, reason);
  }
  return reason;
}
