// A synthetic tree shaped like the real graphs of issue 11: a large base of
// libraries without cycles, one dependency cycle of thousands of packages
// (every member needs the next, and a few others, so it is one tangled
// component, not a ring), and applications on top, some of which need a
// member of the cycle and so can never be built. Deterministic for a seed.

/** BigGraphShape says how large each part is. */
export interface BigGraphShape {
  /** Members of the one big cycle. */
  readonly cycle: number;
  /** Libraries below everything, in a DAG. */
  readonly base: number;
  /** Applications above the base; one in `cycleUserEvery` needs a cycle member. */
  readonly above: number;
  /** Every nth application needs a member of the cycle (0: none does). */
  readonly cycleUserEvery: number;
  readonly seed: number;
}

export const BIG_CYCLE_SHAPE: BigGraphShape = { cycle: 8_000, base: 6_000, above: 6_000, cycleUserEvery: 5, seed: 11 };

/** bigGraphNames are the PKGNAMEs the generator gives, so tests can name them. */
export function cycleMember(i: number): string {
  return `cyc${i}-1.0`;
}

export function basePackage(i: number): string {
  return `lib${i}-1.0`;
}

export function abovePackage(i: number): string {
  return `app${i}-1.0`;
}

function location(pkgname: string): string {
  const name = pkgname.slice(0, pkgname.lastIndexOf("-"));
  const category = name.startsWith("cyc") ? "cycle" : name.startsWith("lib") ? "devel" : "misc";
  return `${category}/${name}`;
}

/** dep is one ALL_DEPENDS entry for pkgname, as pbulk-index prints it. */
function dep(pkgname: string): string {
  const name = pkgname.slice(0, pkgname.lastIndexOf("-"));
  return `${name}>=1.0:../../${location(pkgname)}`;
}

/** A small deterministic generator (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** bigGraphScan returns the pbulk-index text of the tree, one record per package. */
export function bigGraphScan(shape: BigGraphShape = BIG_CYCLE_SHAPE): string {
  const rand = random(shape.seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const lines: string[] = [];
  const emit = (pkgname: string, deps: readonly string[]) => {
    lines.push(
      `PKGNAME=${pkgname}`,
      `PKG_LOCATION=${location(pkgname)}`,
      `ALL_DEPENDS=${[...new Set(deps)].map(dep).join(" ")}`,
      `PKG_SKIP_REASON=`,
      `PKG_FAIL_REASON=`,
      `CATEGORIES=${location(pkgname).split("/")[0]}`,
      `MAINTAINER=pkgsrc-users@NetBSD.org`,
    );
  };
  for (let i = 0; i < shape.base; i++) {
    const deps: string[] = [];
    // A few earlier libraries, most of them near the bottom, as real trees
    // have a handful of libraries everything needs.
    const n = i === 0 ? 0 : 1 + pick(4);
    for (let k = 0; k < n; k++) deps.push(basePackage(rand() < 0.5 ? pick(Math.min(i, 50)) : pick(i)));
    emit(basePackage(i), deps);
  }
  for (let i = 0; i < shape.cycle; i++) {
    const deps = [cycleMember((i + 1) % shape.cycle)];
    if (rand() < 0.3) deps.push(cycleMember(pick(shape.cycle)));
    if (shape.base > 0) deps.push(basePackage(pick(shape.base)));
    emit(cycleMember(i), deps);
  }
  for (let i = 0; i < shape.above; i++) {
    const deps: string[] = [];
    const n = 1 + pick(4);
    for (let k = 0; k < n; k++) {
      if (i > 0 && rand() < 0.3) deps.push(abovePackage(pick(i)));
      else if (shape.base > 0) deps.push(basePackage(pick(shape.base)));
    }
    if (shape.cycleUserEvery > 0 && shape.cycle > 0 && i % shape.cycleUserEvery === 0) deps.push(cycleMember(pick(shape.cycle)));
    emit(abovePackage(i), deps);
  }
  lines.push("");
  return lines.join("\n");
}
