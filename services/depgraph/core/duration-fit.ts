import type { Prediction, PredictionInput } from "./duration-model.js";
import { categoryOf, familyOf, relativesKey } from "./package-names.js";
import { Counter, ITEMS_PER_SLICE, type Steps } from "./steps.js";

// The duration model's last resort before medians: a log-linear fit over the
// packages of a build whose durations are known (see duration-model.ts).

/** Fewer known packages than this in a build, and the fit gives way to medians. */
export const MIN_FIT_ROWS = 24;
/** A category or family needs this many known packages to get a term of its own in the fit. */
export const MIN_GROUP_ROWS = 4;
/** At most this many family terms (the most common ones): the fit stays a few hundred terms. */
const MAX_FAMILIES = 120;
/** At most this many "needs X" terms (the dependencies most common among known packages): cmake, meson, rust, qt ... tell a build's size. */
const MAX_NEEDS = 150;
/** Ridge penalty on each group term: a group of a few packages moves the guess only part of the way. */
const GROUP_PENALTY = 2;
const NUMERIC_PENALTY = 0.01;
// Packages per slice: each costs a row of the fit.
const ROWS_PER_SLICE = ITEMS_PER_SLICE / 4;

/** GraphFeatures is what the fit reads from the graph beyond edge counts: per package, the longest dependency chain below it (packages). */
export interface GraphFeatures {
  readonly depth: Int32Array;
}

export function graphFeatures(input: PredictionInput): GraphFeatures {
  const n = input.packages.length;
  const depth = new Int32Array(n);
  const remaining = new Int32Array(n);
  const queue: number[] = [];
  for (let i = 0; i < n; i++) {
    remaining[i] = input.dependencies[i]!.length;
    if (remaining[i] === 0) queue.push(i);
  }
  // Kahn's order from the leaves; a cycle's members are never reached and keep depth 0.
  for (let k = 0; k < queue.length; k++) {
    const i = queue[k]!;
    for (const up of input.dependents[i]!) {
      if (depth[up]! < depth[i]! + 1) depth[up] = depth[i]! + 1;
      remaining[up] = remaining[up]! - 1;
      if (remaining[up] === 0) queue.push(up);
    }
  }
  return { depth };
}

export interface Fit {
  predict(i: number): number;
  explain(i: number): string;
}

const NUMERIC_NAMES = ["dependencies", "dependents", "depth", "SCAN_DEPENDS files"] as const;

/**
 * fitLogLinear fits ln(duration) = intercept + numeric terms + a term per
 * category, per name family and per dependency often needed (ridge
 * regression, solved exactly), over the packages whose duration is known.
 * Numeric terms are ln(1 + count), standardised so one penalty fits all.
 */
export function* fitLogLinear(input: PredictionInput, features: GraphFeatures, known: readonly number[], knownMs: readonly Prediction[]): Steps<Fit> {
  const slice = new Counter(ROWS_PER_SLICE);
  const n = input.packages.length;
  const raw = (i: number): number[] => [
    Math.log1p(input.dependencies[i]!.length),
    Math.log1p(input.dependents[i]!.length),
    Math.log1p(features.depth[i]!),
    Math.log1p(input.packages[i]!.scanDependsCount),
  ];
  const numeric: number[][] = new Array(n);
  for (let i = 0; i < n; i++) {
    numeric[i] = raw(i);
    if (slice.tick()) yield;
  }
  const width = NUMERIC_NAMES.length;
  const mean = new Float64Array(width);
  const scale = new Float64Array(width);
  for (const i of known) for (let f = 0; f < width; f++) mean[f] = mean[f]! + numeric[i]![f]! / known.length;
  for (const i of known) for (let f = 0; f < width; f++) scale[f] = scale[f]! + (numeric[i]![f]! - mean[f]!) ** 2 / known.length;
  for (let f = 0; f < width; f++) scale[f] = Math.sqrt(scale[f]!) || 1;

  const categoryCount = new Map<string, number>();
  const familyCount = new Map<string, number>();
  for (const i of known) {
    const p = input.packages[i]!;
    categoryCount.set(categoryOf(p), (categoryCount.get(categoryOf(p)) ?? 0) + 1);
    const family = familyOf(p.pkgname);
    if (family !== "") familyCount.set(family, (familyCount.get(family) ?? 0) + 1);
  }
  const groupIndex = new Map<string, number>();
  let p = 1 + width;
  for (const [category, count] of categoryCount) if (count >= MIN_GROUP_ROWS) groupIndex.set(`c:${category}`, p++);
  const families = [...familyCount].filter(([, count]) => count >= MIN_GROUP_ROWS).sort((a, b) => b[1] - a[1]).slice(0, MAX_FAMILIES);
  for (const [family] of families) groupIndex.set(`f:${family}`, p++);
  // What a package needs says how it builds: a package that needs cmake,
  // rust or qt6-qtbase builds longer than one that needs only gettext.
  const needsKeys = (i: number) => new Set(input.dependencies[i]!.map((d) => relativesKey(input.packages[d]!.pkgname)));
  const needsCount = new Map<string, number>();
  for (const i of known) for (const key of needsKeys(i)) needsCount.set(key, (needsCount.get(key) ?? 0) + 1);
  const needs = [...needsCount].filter(([, count]) => count >= MIN_GROUP_ROWS).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_NEEDS);
  for (const [key] of needs) groupIndex.set(`n:${key}`, p++);

  /** Sparse row: [column, value] pairs. */
  const row = (i: number): [number, number][] => {
    const cells: [number, number][] = [[0, 1]];
    for (let f = 0; f < width; f++) cells.push([1 + f, (numeric[i]![f]! - mean[f]!) / scale[f]!]);
    const pkg = input.packages[i]!;
    const c = groupIndex.get(`c:${categoryOf(pkg)}`);
    if (c !== undefined) cells.push([c, 1]);
    const fam = groupIndex.get(`f:${familyOf(pkg.pkgname)}`);
    if (fam !== undefined) cells.push([fam, 1]);
    for (const key of needsKeys(i)) {
      const column = groupIndex.get(`n:${key}`);
      if (column !== undefined) cells.push([column, 1]);
    }
    return cells;
  };

  const a = new Float64Array(p * p);
  const b = new Float64Array(p);
  for (const i of known) {
    const y = Math.log(Math.max(knownMs[i]!.ms, 1));
    const cells = row(i);
    for (const [j, x] of cells) {
      b[j] = b[j]! + x * y;
      for (const [k, z] of cells) a[j * p + k] = a[j * p + k]! + x * z;
    }
    if (slice.tick()) yield;
  }
  yield;
  for (let j = 1; j < p; j++) a[j * p + j] = a[j * p + j]! + (j <= width ? NUMERIC_PENALTY * known.length : GROUP_PENALTY);
  const beta = yield* solveSymmetric(a, b, p);
  yield;

  const termOf = (i: number) => {
    const cells = row(i);
    let sum = 0;
    for (const [j, x] of cells) sum += beta[j]! * x;
    return { sum, cells };
  };
  return {
    predict(i) {
      return Math.exp(termOf(i).sum);
    },
    explain(i) {
      const pkg = input.packages[i]!;
      const parts = [`category ${categoryOf(pkg)}`];
      const family = familyOf(pkg.pkgname);
      if (family !== "") parts.push(`family ${family}`);
      parts.push(`${input.dependencies[i]!.length} dependencies`, `${input.dependents[i]!.length} dependents`, `depth ${features.depth[i]}`);
      return `fit over ${known.length} known: ${parts.join(", ")}`;
    },
  };
}

/** Solves a x = b for a symmetric positive definite a (row-major, p × p) by Cholesky, a slice per few columns. */
function* solveSymmetric(a: Float64Array, b: Float64Array, p: number): Steps<Float64Array> {
  const l = new Float64Array(p * p);
  const slice = new Counter(2_000_000);
  for (let j = 0; j < p; j++) {
    if (slice.tick((p - j) * j)) yield;
    let d = a[j * p + j]!;
    for (let k = 0; k < j; k++) d -= l[j * p + k]! ** 2;
    const root = Math.sqrt(Math.max(d, 1e-12));
    l[j * p + j] = root;
    for (let i = j + 1; i < p; i++) {
      let s = a[i * p + j]!;
      for (let k = 0; k < j; k++) s -= l[i * p + k]! * l[j * p + k]!;
      l[i * p + j] = s / root;
    }
  }
  const y = new Float64Array(p);
  for (let i = 0; i < p; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i * p + k]! * y[k]!;
    y[i] = s / l[i * p + i]!;
  }
  const x = new Float64Array(p);
  for (let i = p - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < p; k++) s -= l[k * p + i]! * x[k]!;
    x[i] = s / l[i * p + i]!;
  }
  return x;
}
