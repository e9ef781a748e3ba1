import type { BuildHistoryRow, DurationHistory } from "./history.js";
import type { ScanRecord } from "./scan-record.js";
import { Counter, ITEMS_PER_SLICE, type Steps } from "./steps.js";
import { fitLogLinear, graphFeatures, MIN_FIT_ROWS, MIN_GROUP_ROWS } from "./duration-fit.js";
import { categoryOf, pkgbaseOf, relativesKey } from "./package-names.js";

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

  // Relatives come from everything known, on any platform and unscaled:
  // a relative is a guess already, and most have no common packages to
  // compare platforms by.
  const byLocation = new Map<string, Relative[]>();
  const byKey = new Map<string, Relative[]>();
  for (const table of tables.values()) {
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
