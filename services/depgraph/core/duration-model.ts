import type { BuildHistoryRow, DurationHistory } from "./history.js";
import type { ScanRecord } from "./scan-record.js";
import { Counter, ITEMS_PER_SLICE, type Steps } from "./steps.js";

/**
 * The duration model predicts how long a package takes to build before it
 * was ever built, so the critical-path order works on a first bulk build.
 *
 * What it knows: every duration it was told (an operator's history CSV,
 * every MarkDone), per platform and normalised by the speed of the host
 * that built it. What it guesses from, nearest first:
 *
 * 1. the package itself on this platform, then on another (scaled by how
 *    the two platforms compare on packages both built);
 * 2. its relatives at the same location: a version bump (same PKGBASE) or
 *    another MULTI_VERSION variant (py312-foo for py313-foo);
 * 3. its name's relatives elsewhere: the PKGBASE with its digits left out
 *    (gcc12 for gcc14, qt5-qtbase for qt6-qtbase, mariadb-server at
 *    another location);
 * 4. a log-linear fit over the packages of the build that have a duration:
 *    category, name family (py, p5, php, qt ...), dependencies, dependents,
 *    depth of the dependency chain below, SCAN_DEPENDS size;
 * 5. with too little to fit, the category's median, then the median of all.
 *
 * Each prediction says which of these it came from. Nothing here does I/O:
 * the state persister stores what the model learns (see onLearn, snapshot).
 */

/** What the model knows about one package of a build it predicts for. */
export interface PackageFacts {
  readonly pkgname: string;
  readonly location: string;
  readonly categories: readonly string[];
  /** Number of files in SCAN_DEPENDS: Makefile fragments a package includes grow with its build system. */
  readonly scanDependsCount: number;
  /** PBULK_WEIGHT; an operator's hint that scales a guess (100 is neutral). */
  readonly pbulkWeight: number;
}

const scanDependsCounts = new WeakMap<ScanRecord, number>();

/** packageFacts reads what the model uses from a scan record (SCAN_DEPENDS counted once per record: it is kilobytes). */
export function packageFacts(record: ScanRecord): PackageFacts {
  let count = scanDependsCounts.get(record);
  if (count === undefined) {
    count = 0;
    const s = record.scanDepends;
    let inWord = false;
    for (let i = 0; i < s.length; i++) {
      const space = s.charCodeAt(i) === 0x20;
      if (!space && !inWord) count++;
      inWord = !space;
    }
    scanDependsCounts.set(record, count);
  }
  return { pkgname: record.pkgname, location: record.location, categories: record.categories, scanDependsCount: count, pbulkWeight: record.pbulkWeight };
}

/** A build's packages and their edges, as indices into packages. */
export interface PredictionInput {
  readonly packages: readonly PackageFacts[];
  readonly dependencies: readonly (readonly number[])[];
  readonly dependents: readonly (readonly number[])[];
}

/** Prediction is an expected duration at reference speed and where it came from. */
export interface Prediction {
  readonly ms: number;
  /** For a person: "history", "history on NetBSD-9.4-x86_64", "relative py312-foo-1.0", "fit: category devel ...", "category median devel", "median". */
  readonly source: string;
}

/** Where a duration was measured. An empty platform is an imported table; an empty host an unknown one. */
export interface MeasuredOn {
  readonly platform?: string;
  readonly host?: string;
}

/** One duration the model keeps: the last one of a package on a platform. */
export interface ObservedDuration {
  readonly location: string;
  /** As reported. */
  readonly durationMs: number;
  /** As the reference host (speed 1) would take: durationMs times the host's speed then. */
  readonly normalizedMs: number;
  readonly host: string;
}

/** DurationSnapshot is everything the model learnt, for a store and back. */
export interface DurationSnapshot {
  /** [platform, pkgname, observation]. */
  readonly observations: readonly (readonly [string, string, ObservedDuration])[];
  /** [platform, host, ln(reference ms / host ms) samples, oldest first]. */
  readonly hostSamples: readonly (readonly [string, string, readonly number[]])[];
}

/** A notice that the model learnt something about a package, and maybe a host. */
export interface Learnt {
  readonly platform: string;
  readonly pkgname: string;
  readonly observation: ObservedDuration;
  /** The host whose speed samples changed, with them; undefined when none did. */
  readonly host?: { readonly name: string; readonly samples: readonly number[] };
}

/** DurationModel is a DurationHistory that also predicts, learns host speeds, and can be saved. */
export interface DurationModel extends DurationHistory {
  /** Speed of a host against the reference (1): 0.5 builds the same packages in twice the time. */
  hostSpeed(platform: string, host: string): number;
  /** Replaces what the model knows of the snapshot's packages and hosts. */
  restore(snapshot: DurationSnapshot): void;
  snapshot(): DurationSnapshot;
  /** Calls listener after every record; returns an unsubscribe function. */
  onLearn(listener: (learnt: Learnt) => void): () => void;
}

/** Speed samples kept per host: recent builds count, a host upgraded last month should not be averaged forever. */
export const HOST_SAMPLES = 64;
/** Fewer known packages than this in a build, and the fit gives way to medians. */
const MIN_FIT_ROWS = 24;
/** A category or family needs this many known packages to get a term of its own in the fit. */
const MIN_GROUP_ROWS = 4;
/** At most this many family terms (the most common ones): the fit stays a few hundred terms. */
const MAX_FAMILIES = 120;
/** At most this many "needs X" terms (the dependencies most common among known packages): cmake, meson, rust, qt ... tell a build's size. */
const MAX_NEEDS = 150;
/** Ridge penalty on each group term: a group of a few packages moves the guess only part of the way. */
const GROUP_PENALTY = 2;
const NUMERIC_PENALTY = 0.01;
/** Platforms compared on fewer common packages than this are taken to be equally fast. */
const MIN_COMMON_FOR_RATIO = 8;

export function createDurationModel(rows: readonly BuildHistoryRow[] = []): DurationModel {
  /** platform → pkgname → last observation ("" is imported). */
  const tables = new Map<string, Map<string, ObservedDuration>>();
  const hosts = new Map<string, Map<string, number[]>>();
  const listeners = new Set<(learnt: Learnt) => void>();
  /** The last duration seen at each location, any platform: a new version takes about as long as the old. */
  const atLocation = new Map<string, ObservedDuration>();
  let typical: number | undefined;
  let ratios = new Map<string, number>();

  const tableOf = (platform: string) => {
    let table = tables.get(platform);
    if (table === undefined) tables.set(platform, table = new Map());
    return table;
  };
  const samplesOf = (platform: string, host: string) => hosts.get(platform)?.get(host);
  const changed = () => {
    typical = undefined;
    ratios = new Map();
  };

  const hostSpeed = (platform: string, host: string): number => {
    const samples = samplesOf(platform, host);
    return samples === undefined || samples.length === 0 ? 1 : Math.exp(median(samples));
  };

  /** How much slower platform `from`'s builds are than `to`'s: to's ms ≈ from's ms × ratio. */
  const platformRatio = (to: string, from: string): number => {
    const key = `${to}\n${from}`;
    let ratio = ratios.get(key);
    if (ratio === undefined) {
      const a = tables.get(to);
      const b = tables.get(from);
      const logs: number[] = [];
      if (a !== undefined && b !== undefined) {
        for (const [name, o] of a) {
          const p = b.get(name);
          if (p !== undefined && o.normalizedMs > 0 && p.normalizedMs > 0) logs.push(Math.log(o.normalizedMs / p.normalizedMs));
        }
      }
      ratio = logs.length >= MIN_COMMON_FOR_RATIO ? Math.exp(median(logs)) : 1;
      ratios.set(key, ratio);
    }
    return ratio;
  };

  /** The package's own duration on platform, or scaled from another platform's. */
  const own = (platform: string, pkgname: string): Prediction | undefined => {
    const here = tables.get(platform)?.get(pkgname);
    if (here !== undefined) return { ms: here.normalizedMs, source: "history" };
    for (const [other, table] of tables) {
      if (other === platform) continue;
      const there = table.get(pkgname);
      if (there !== undefined) return { ms: there.normalizedMs * platformRatio(platform, other), source: other === "" ? "imported history" : `history on ${other}` };
    }
    return undefined;
  };

  const model: DurationModel = {
    expectedMs(pkgname, location, platform = "") {
      const known = own(platform, pkgname);
      if (known !== undefined) return known.ms;
      return atLocation.get(location)?.normalizedMs;
    },

    record(pkgname, location, durationMs, where = {}) {
      const platform = where.platform ?? "";
      const host = where.host ?? "";
      const table = tableOf(platform);
      let hostChanged: Learnt["host"];
      if (host !== "" && durationMs > 0) {
        // The speed sample compares this build with the same package built
        // by another host of the platform, or else with the imported table.
        const before = table.get(pkgname);
        const reference = before !== undefined && before.host !== host ? before.normalizedMs
          : before === undefined ? tables.get("")?.get(pkgname)?.normalizedMs : undefined;
        if (reference !== undefined && reference > 0) {
          let perHost = hosts.get(platform);
          if (perHost === undefined) hosts.set(platform, perHost = new Map());
          let samples = perHost.get(host);
          if (samples === undefined) perHost.set(host, samples = []);
          samples.push(Math.log(reference / durationMs));
          if (samples.length > HOST_SAMPLES) samples.splice(0, samples.length - HOST_SAMPLES);
          hostChanged = { name: host, samples: [...samples] };
        }
      }
      const observation: ObservedDuration = { location, durationMs, normalizedMs: durationMs * hostSpeed(platform, host), host };
      table.set(pkgname, observation);
      atLocation.set(location, observation);
      changed();
      for (const listener of listeners) listener({ platform, pkgname, observation, host: hostChanged });
    },

    typicalMs() {
      if (typical === undefined) {
        const all: number[] = [];
        for (const table of tables.values()) for (const o of table.values()) all.push(o.normalizedMs);
        if (all.length > 0) typical = median(all);
      }
      return typical;
    },

    predict(platform, input) {
      return predictAll(platform, input, own, tables, model.typicalMs());
    },

    hostSpeed,

    restore(snapshot) {
      for (const [platform, host, samples] of snapshot.hostSamples) {
        let perHost = hosts.get(platform);
        if (perHost === undefined) hosts.set(platform, perHost = new Map());
        perHost.set(host, samples.slice(-HOST_SAMPLES));
      }
      for (const [platform, pkgname, observation] of snapshot.observations) {
        tableOf(platform).set(pkgname, observation);
        atLocation.set(observation.location, observation);
      }
      changed();
    },

    snapshot() {
      const observations: [string, string, ObservedDuration][] = [];
      for (const [platform, table] of tables) for (const [name, o] of table) observations.push([platform, name, o]);
      const hostSamples: [string, string, number[]][] = [];
      for (const [platform, perHost] of hosts) for (const [host, samples] of perHost) hostSamples.push([platform, host, [...samples]]);
      return { observations, hostSamples };
    },

    onLearn(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  for (const row of rows) if (row.succeeded) model.record(row.pkgname, row.location, row.durationMs);
  return model;
}

/** PKGBASE: the PKGNAME without its version (what follows the last hyphen). */
export function pkgbaseOf(pkgname: string): string {
  const at = pkgname.lastIndexOf("-");
  return at <= 0 ? pkgname : pkgname.slice(0, at);
}

/**
 * The name's relatives key: PKGBASE without digits, so py312-foo, py313-foo,
 * gcc12, gcc14, qt5-qtbase and qt6-qtbase meet their kin. A name that is all
 * digits and punctuation keeps itself.
 */
export function relativesKey(pkgname: string): string {
  const base = pkgbaseOf(pkgname);
  const key = base.replace(/[0-9]+/g, "");
  return /[A-Za-z]/.test(key) ? key : base;
}

/** The name family: the first word of a hyphenated PKGBASE without digits (py, p, php, qt, tex, R ...), "" for one word. */
export function familyOf(pkgname: string): string {
  const base = pkgbaseOf(pkgname);
  const at = base.indexOf("-");
  return at <= 0 ? "" : base.slice(0, at).replace(/[0-9]+/g, "");
}

/** The primary category: the location's directory, which every package has. */
function categoryOf(p: PackageFacts): string {
  const at = p.location.indexOf("/");
  return at < 0 ? p.categories[0] ?? "" : p.location.slice(0, at);
}

interface Relative { readonly pkgname: string; readonly ms: number }

// Packages per slice of prediction: each costs a few lookups and a row of the fit.
const PREDICTIONS_PER_SLICE = ITEMS_PER_SLICE / 4;

function* predictAll(
  platform: string,
  input: PredictionInput,
  own: (platform: string, pkgname: string) => Prediction | undefined,
  tables: ReadonlyMap<string, ReadonlyMap<string, ObservedDuration>>,
  typicalMs: number | undefined,
): Steps<Prediction[]> {
  const n = input.packages.length;
  const slice = new Counter(PREDICTIONS_PER_SLICE);
  const result: (Prediction | undefined)[] = new Array(n);
  // Only measured durations train the fit; relatives' guesses do not.
  const known: number[] = [];
  for (let i = 0; i < n; i++) {
    result[i] = own(platform, input.packages[i]!.pkgname);
    if (result[i] !== undefined) known.push(i);
    if (slice.tick()) yield;
  }

  // Relatives come from everything known, this platform first.
  const byLocation = new Map<string, Relative[]>();
  const byKey = new Map<string, Relative[]>();
  const platforms = [platform, ...[...tables.keys()].filter((p) => p !== platform)];
  for (const name of platforms) {
    const table = tables.get(name);
    if (table === undefined) continue;
    for (const [pkgname, o] of table) {
      push(byLocation, o.location, { pkgname, ms: o.normalizedMs });
      push(byKey, relativesKey(pkgname), { pkgname, ms: o.normalizedMs });
      if (slice.tick()) yield;
    }
  }
  for (let i = 0; i < n; i++) {
    if (slice.tick()) yield;
    if (result[i] !== undefined) continue;
    const p = input.packages[i]!;
    const base = pkgbaseOf(p.pkgname);
    const atLocation = byLocation.get(p.location)?.filter((r) => r.pkgname !== p.pkgname) ?? [];
    // A version bump (same PKGBASE) is the closest relative, then a variant.
    const relatives = atLocation.filter((r) => pkgbaseOf(r.pkgname) === base);
    const chosen = relatives.length > 0 ? relatives : atLocation.length > 0 ? atLocation : byKey.get(relativesKey(p.pkgname))?.filter((r) => r.pkgname !== p.pkgname) ?? [];
    if (chosen.length > 0) result[i] = { ms: median(chosen.map((r) => r.ms)), source: `relative ${chosen[0]!.pkgname}${chosen.length > 1 ? ` and ${chosen.length - 1} more` : ""}` };
  }

  if (result.some((r) => r === undefined)) {
    const features = graphFeatures(input);
    yield;
    const fit = known.length >= MIN_FIT_ROWS ? yield* fitLogLinear(input, features, known, result as Prediction[]) : undefined;
    const categoryMedians = new Map<string, number[]>();
    for (const i of known) push(categoryMedians, categoryOf(input.packages[i]!), result[i]!.ms);
    for (let i = 0; i < n; i++) {
      if (slice.tick()) yield;
      if (result[i] !== undefined) continue;
      const p = input.packages[i]!;
      const weight = p.pbulkWeight > 0 ? p.pbulkWeight / 100 : 1;
      const category = categoryOf(p);
      if (fit !== undefined) {
        result[i] = { ms: fit.predict(i) * weight, source: fit.explain(i) };
        continue;
      }
      const inCategory = categoryMedians.get(category);
      if (inCategory !== undefined && inCategory.length >= MIN_GROUP_ROWS) result[i] = { ms: median(inCategory) * weight, source: `category median ${category}` };
      else if (typicalMs !== undefined) result[i] = { ms: typicalMs * weight, source: "median" };
    }
  }
  return result.map((r) => r ?? { ms: Number.NaN, source: "nothing known" });
}

/** Per package: direct dependencies, direct dependents, longest dependency chain below (packages). */
interface GraphFeatures {
  readonly depth: Int32Array;
}

function graphFeatures(input: PredictionInput): GraphFeatures {
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

interface Fit {
  predict(i: number): number;
  explain(i: number): string;
}

const NUMERIC_NAMES = ["dependencies", "dependents", "depth", "SCAN_DEPENDS files"] as const;

/**
 * fitLogLinear fits ln(duration) = intercept + numeric terms + a term per
 * category and per name family (ridge regression, solved exactly), over the
 * packages whose duration is known. Numeric terms are ln(1 + count),
 * standardised so one penalty fits all.
 */
function* fitLogLinear(input: PredictionInput, features: GraphFeatures, known: readonly number[], knownMs: readonly Prediction[]): Steps<Fit> {
  const slice = new Counter(PREDICTIONS_PER_SLICE);
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

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

/** The median (the upper one of an even count, as history.ts always took). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[sorted.length >> 1]!;
}
