/**
 * Steps is long work cut into slices: each `yield` is a point where the
 * caller may pause and let other work run before it asks for the next slice
 * (services/depgraph/slices.ts does, so a CreateBuild over 40,000 packages
 * does not keep health checks and reads waiting). The core stays pure: it
 * neither reads a clock nor waits; it only says where a pause is safe.
 */
export type Steps<T> = Generator<void, T, void>;

/** runSteps does all the slices at once, for callers that need the answer now. */
export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/**
 * Counter says when a loop has done enough work for one slice: tick(n) adds
 * n units and is true once every `every` units, where the loop should yield.
 */
export class Counter {
  private done = 0;

  constructor(private readonly every: number) {}

  tick(units = 1): boolean {
    this.done += units;
    if (this.done < this.every) return false;
    this.done = 0;
    return true;
  }
}

/** Items a linear pass over a build's packages handles per slice. */
export const ITEMS_PER_SLICE = 4_000;

/** mapInSlices is items.map(fn), yielding every `every` items. */
export function* mapInSlices<T, U>(items: readonly T[], fn: (item: T, index: number) => U, every = ITEMS_PER_SLICE): Steps<U[]> {
  const out: U[] = new Array<U>(items.length);
  for (let i = 0; i < items.length; i++) {
    out[i] = fn(items[i]!, i);
    if ((i + 1) % every === 0) yield;
  }
  return out;
}
