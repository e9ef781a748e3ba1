// npm run bench:schedule — how well each builder's order schedules the full
// pkgsrc graph, and how well pkgfarm predicts durations it has never seen.
// Prints tables on stderr and one JSON object on stdout. See BENCHMARKS.md.
//
// Runs, each on the shared scan (../shared/data/pkgsrc/presolve.txt.gz):
//  - cold: the 1,427-odd packages with rows in history-bulk-large.csv take
//    their real durations, the others a seeded draw from that distribution;
//    the scheduler knows the CSV (as bench:depgraph).
//  - warm: the same durations, after the cold run taught pkgfarm every one.
//  - holdout: real durations only. Packages with rows keep them, the others
//    take the median; the scheduler sees the rows of a seeded half of the
//    packages with rows and must predict the other half.
// Orders: pkgfarm's critical path (the real core, with its duration model),
// pbulk's (the real core's pbulk-weight), poudriere's (ptsort priorities:
// longest chain of dependents, PRIORITY_BOOST raised to 99), dsynth's (half
// the workers by dependents × dependents' depth, half by dependencies).
import { existsSync, readFileSync } from "node:fs";
import type { InvalidScanRecord } from "../services/depgraph/core/errors.js";
import type { DurationModel, Prediction, PredictionInput } from "../services/depgraph/core/duration-model.js";
import { pkgbaseOf } from "../services/depgraph/core/package-names.js";
import { createDurationHistory, parseBuildHistoryCsv, type BuildHistoryRow } from "../services/depgraph/core/history.js";
import { createResourceBook, type ResourceBook } from "../services/depgraph/core/resource-needs.js";
import { createScanRecordParser, type ScanRecord } from "../services/depgraph/core/scan-record.js";
import { PackageTree } from "../services/depgraph/core/tree.js";
import { readScanChunks } from "../services/depgraph/scan-file.js";
import {
  buildableGraph, farmCapacity, seededRandom, simulateFarm, simulateListOrder, simulatePlacedFarm, uniformFarm,
  type ListOrder, type PlacedResult, type SimGraph, type SimHost, type SimulationResult,
} from "./simulate.js";

const DATA = new URL("../../../shared/data/pkgsrc/", import.meta.url);
const PRESOLVE = new URL("presolve.txt.gz", DATA).pathname;
const HISTORY = new URL("history-bulk-large.csv", DATA).pathname;
const DRAW_SEED = 20261125;
const HOLDOUT_SEED = 20261202;
const AGENT_COUNTS = [8, 32, 64, 128];
/** poudriere.conf's PRIORITY_BOOST_VALUE default. */
const PRIORITY_BOOST_VALUE = 99;
/** PRIORITY_BOOST for the boosted poudriere run: the PKGBASEs of this many longest builds the scheduler's history shows, as an operator would list them. */
const BOOSTED = 20;
/** The example of a mixed farm: 1 × 16 slots at speed 1, 2 × 8 at 0.7, 1 × 4 at 0.4. */
const MIXED_FARM: SimHost[] = [
  { name: "big", slots: 16, speed: 1 },
  { name: "mid-a", slots: 8, speed: 0.7 },
  { name: "mid-b", slots: 8, speed: 0.7 },
  { name: "small", slots: 4, speed: 0.4 },
];

const GiB = 2 ** 30;
/**
 * A farm where memory decides placement: two big hosts and four small ones
 * whose 12 GiB cannot take a 16 GiB build (and, at 2 GiB a build, run only
 * six of their eight slots at once). The big ones are the slower machines,
 * as big-memory servers often are, so a 16 GiB build cannot run at the
 * farm's fastest speed and the lower bound's critical path must say so.
 */
const MEMORY_FARM: SimHost[] = [
  { name: "big-a", slots: 16, speed: 0.8, memoryBytes: 64 * GiB },
  { name: "big-b", slots: 16, speed: 0.8, memoryBytes: 64 * GiB },
  { name: "small-a", slots: 8, speed: 1, memoryBytes: 12 * GiB },
  { name: "small-b", slots: 8, speed: 1, memoryBytes: 12 * GiB },
  { name: "small-c", slots: 8, speed: 1, memoryBytes: 12 * GiB },
  { name: "small-d", slots: 8, speed: 1, memoryBytes: 12 * GiB },
];
/**
 * Memory needs by share of the longest builds. The shared data has no memory
 * figure (history-bulk-large.csv has duration and disk_usage, nothing of
 * memory), and in pkgsrc the longest builds are the ones that need most
 * (llvm, rust, gcc, webkit, firefox link big objects), so: of the packages
 * in the tree with a row in history-bulk-large.csv, ranked by their real
 * duration, the top 2 % need 16 GiB, the next 8 % need 8 GiB, and every
 * other package (those without a row too) 2 GiB. A reader can recompute the
 * classes from the CSV.
 */
const MEMORY_CLASSES = [{ share: 0.02, bytes: 16 * GiB }, { share: 0.08, bytes: 8 * GiB }];
const BASE_MEMORY = 2 * GiB;
/** In the exclusion run, builds needing this much are of class HEAVY_CLASS: at most one per host at a time. */
const HEAVY_MEMORY = 16 * GiB;
const HEAVY_CLASS = "heavy";

async function importShared(): Promise<{ tree: PackageTree; problems: InvalidScanRecord[] }> {
  const records: ScanRecord[] = [];
  const problems: InvalidScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
  for await (const chunk of readScanChunks(PRESOLVE)) parser.push(chunk);
  parser.end();
  const tree = new PackageTree();
  problems.push(...tree.replace(records, "tree"));
  return { tree, problems };
}

/** The real duration of each package with a successful row (the last one, as history keeps). */
function realDurations(rows: readonly BuildHistoryRow[]): Map<string, number> {
  const known = new Map<string, number>();
  for (const row of rows) if (row.succeeded) known.set(row.pkgname, row.durationMs);
  return known;
}

function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Cold and warm truth: real rows, and seeded draws from their distribution for the rest (as bench:depgraph). */
function drawnTruth(tree: PackageTree, rows: readonly BuildHistoryRow[]): (pkgname: string) => number {
  const known = realDurations(rows);
  const distribution = rows.filter((r) => r.succeeded).map((r) => r.durationMs);
  const random = seededRandom(DRAW_SEED);
  const drawn = new Map<string, number>();
  for (const name of [...tree.pkgnames()].sort()) drawn.set(name, known.get(name) ?? distribution[Math.floor(random() * distribution.length)]!);
  return (pkgname) => drawn.get(pkgname)!;
}

interface Holdout {
  readonly trueMs: (pkgname: string) => number;
  readonly medianMs: number;
  readonly withRows: number;
  readonly visible: ReadonlySet<string>;
  readonly heldOut: readonly string[];
  /** The history the scheduler sees: the rows of the visible half only. */
  readonly visibleRows: readonly BuildHistoryRow[];
}

function holdout(tree: PackageTree, rows: readonly BuildHistoryRow[]): Holdout {
  const known = realDurations(rows);
  const medianMs = medianOf(rows.filter((r) => r.succeeded).map((r) => r.durationMs));
  const withRows = [...tree.pkgnames()].filter((name) => known.has(name)).sort();
  // Fisher–Yates with a fixed seed: the same half every run.
  const random = seededRandom(HOLDOUT_SEED);
  for (let i = withRows.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [withRows[i], withRows[j]] = [withRows[j]!, withRows[i]!];
  }
  const half = withRows.length >> 1;
  const visible = new Set(withRows.slice(0, half));
  const heldOut = withRows.slice(half);
  // Rows of packages outside the tree are left out too: a row for another
  // version at a held-out package's location would tell its duration.
  const visibleRows = rows.filter((r) => visible.has(r.pkgname));
  return { trueMs: (name) => known.get(name) ?? medianMs, medianMs, withRows: withRows.length, visible, heldOut, visibleRows };
}

/** Spearman's rank correlation (ties take their mean rank). */
function spearman(x: readonly number[], y: readonly number[]): number {
  const rank = (v: readonly number[]) => {
    const order = v.map((_, i) => i).sort((a, b) => v[a]! - v[b]!);
    const r = new Float64Array(v.length);
    for (let k = 0; k < order.length;) {
      let end = k;
      while (end + 1 < order.length && v[order[end + 1]!] === v[order[k]!]) end++;
      for (let m = k; m <= end; m++) r[order[m]!] = (k + end) / 2;
      k = end + 1;
    }
    return r;
  };
  const rx = rank(x);
  const ry = rank(y);
  const mean = (x.length - 1) / 2;
  let num = 0;
  let dx = 0;
  let dy = 0;
  for (let i = 0; i < x.length; i++) {
    num += (rx[i]! - mean) * (ry[i]! - mean);
    dx += (rx[i]! - mean) ** 2;
    dy += (ry[i]! - mean) ** 2;
  }
  return num / Math.sqrt(dx * dy);
}

/**
 * What the core predicted for each package when it created a build: a
 * history that passes predict through and keeps what it answered.
 */
function watching(model: DurationModel): { history: DurationModel; last: () => { input: PredictionInput; out: Prediction[] } | undefined } {
  let last: { input: PredictionInput; out: Prediction[] } | undefined;
  const history: DurationModel = {
    ...model,
    *predict(platform, input) {
      const out = yield* model.predict(platform, input);
      last = { input, out };
      return out;
    },
  };
  return { history, last: () => last };
}

function predictionQuality(tree: PackageTree, h: Holdout) {
  const { history, last } = watching(createDurationHistory(h.visibleRows));
  // One simulated build on one slot is enough to make the core predict.
  simulateFarm(tree, "critical-path", uniformFarm(1), () => 1, history);
  const seen = last()!;
  const predictedBy = new Map<string, Prediction>();
  seen.input.packages.forEach((p, i) => predictedBy.set(p.pkgname, seen.out[i]!));
  const predicted = h.heldOut.map((name) => predictedBy.get(name)!.ms);
  const actual = h.heldOut.map((name) => h.trueMs(name));
  const byPrediction = h.heldOut.map((_, i) => i).sort((a, b) => predicted[b]! - predicted[a]!);
  const decile = Math.ceil(h.heldOut.length / 10);
  const total = actual.reduce((s, x) => s + x, 0);
  const topShare = byPrediction.slice(0, decile).reduce((s, i) => s + actual[i]!, 0) / total;
  // The best any order could do: the decile of the longest true durations.
  const bestShare = [...actual].sort((a, b) => b - a).slice(0, decile).reduce((s, x) => s + x, 0) / total;
  const sources = new Map<string, number>();
  for (const name of h.heldOut) {
    const kind = predictedBy.get(name)!.source.replace(/^relative .*/, "relative").replace(/^fit over .*/, "fit").replace(/^category median .*/, "category median");
    sources.set(kind, (sources.get(kind) ?? 0) + 1);
  }
  const examples = [...h.heldOut].sort((a, b) => h.trueMs(b) - h.trueMs(a)).slice(0, 12).map((name) => ({
    pkgname: name, trueSeconds: round(h.trueMs(name) / 1000), predictedSeconds: round(predictedBy.get(name)!.ms / 1000), source: predictedBy.get(name)!.source,
  }));
  return {
    heldOut: h.heldOut.length,
    spearman: round(spearman(predicted, actual)),
    topDecileWorkShare: round(topShare),
    bestPossibleTopDecileShare: round(bestShare),
    sources: Object.fromEntries(sources),
    longestHeldOut: examples,
  };
}

/** poudriere's priorities (ptsort -p): one more than the highest of the packages that need it; PRIORITY_BOOST packages at least 99. */
function poudriereOrder(graph: SimGraph, boost: ReadonlySet<string>, name: string): ListOrder {
  const priority = new Float64Array(graph.pkgnames.length);
  for (const i of reverseTopological(graph)) {
    let p = boost.has(pkgbaseOf(graph.pkgnames[i]!)) ? PRIORITY_BOOST_VALUE : 0;
    for (const up of graph.dependents[i]!) p = Math.max(p, priority[up]! + 1);
    priority[i] = p;
  }
  return { name, queues: [priority], queueFor: () => 0 };
}

/**
 * dsynth's order (build.c startbuild): workers with index up to half take
 * the ready job with most direct dependents × depth of its dependents'
 * chain (depi_count × depi_depth); the others the one with most direct
 * dependencies (idep_count), to start big packages early.
 */
function dsynthOrder(graph: SimGraph): ListOrder {
  const n = graph.pkgnames.length;
  const depiDepth = new Float64Array(n);
  for (const i of reverseTopological(graph)) {
    let best = 0;
    for (const up of graph.dependents[i]!) best = Math.max(best, depiDepth[up]! + 1);
    depiDepth[i] = best;
  }
  const depi = Float64Array.from({ length: n }, (_, i) => graph.dependents[i]!.length * depiDepth[i]!);
  const idep = Float64Array.from({ length: n }, (_, i) => graph.dependencies[i]!.length);
  return { name: "dsynth", queues: [depi, idep], queueFor: (slot, total) => (slot <= Math.floor(total / 2) ? 0 : 1) };
}

/** Job indices with every job after all the jobs that need it. */
function reverseTopological(graph: SimGraph): number[] {
  const n = graph.pkgnames.length;
  const remaining = Int32Array.from(graph.dependents, (d) => d.length);
  const order: number[] = [];
  for (let i = 0; i < n; i++) if (remaining[i] === 0) order.push(i);
  for (let k = 0; k < order.length; k++) {
    for (const down of graph.dependencies[order[k]!]!) {
      remaining[down] = remaining[down]! - 1;
      if (remaining[down] === 0) order.push(down);
    }
  }
  return order;
}

/** PRIORITY_BOOST as an operator who read this history would write it: the PKGBASEs of its longest builds. */
function boostList(rows: readonly BuildHistoryRow[]): Set<string> {
  const longest = [...realDurations(rows)].sort((a, b) => b[1] - a[1]).slice(0, BOOSTED);
  return new Set(longest.map(([name]) => pkgbaseOf(name)));
}

interface Row {
  agents: number;
  farm: string;
  policy: string;
  coldRatio: number;
  warmRatio: number;
  holdoutRatio: number;
  /** The holdout durations once pkgfarm has seen every one (a second build): what knowing them all is worth. */
  holdoutWarmRatio: number;
  coldMakespanHours: number;
  warmMakespanHours: number;
  holdoutMakespanHours: number;
  coldLowerBoundHours: number;
  holdoutLowerBoundHours: number;
}

function runFarm(tree: PackageTree, graph: SimGraph, rows: readonly BuildHistoryRow[], h: Holdout, hosts: readonly SimHost[], farm: string): Row[] {
  const drawn = drawnTruth(tree, rows);
  const out: Row[] = [];
  const push = (policy: string, cold: SimulationResult, warm: SimulationResult, hold: SimulationResult, holdWarm = hold) => {
    out.push({
      agents: farmCapacity(hosts).slots, farm, policy,
      coldRatio: round(cold.ratio), warmRatio: round(warm.ratio), holdoutRatio: round(hold.ratio), holdoutWarmRatio: round(holdWarm.ratio),
      coldMakespanHours: round(cold.makespanHours), warmMakespanHours: round(warm.makespanHours), holdoutMakespanHours: round(hold.makespanHours),
      coldLowerBoundHours: round(cold.lowerBoundHours), holdoutLowerBoundHours: round(hold.lowerBoundHours),
    });
  };
  // pkgfarm: cold knows the CSV; warm knows what the cold run recorded; holdout knows half.
  const model = createDurationHistory(rows);
  const cold = simulateFarm(tree, "critical-path", hosts, drawn, model);
  const warm = simulateFarm(tree, "critical-path", hosts, drawn, model);
  const holdoutModel = createDurationHistory(h.visibleRows);
  const hold = simulateFarm(tree, "critical-path", hosts, h.trueMs, holdoutModel);
  const holdWarm = simulateFarm(tree, "critical-path", hosts, h.trueMs, holdoutModel);
  push("pkgfarm critical-path", cold, warm, hold, holdWarm);
  // The others do not learn durations: warm is cold.
  const pbulkCold = simulateFarm(tree, "pbulk-weight", hosts, drawn, createDurationHistory(rows));
  push("pbulk weight", pbulkCold, pbulkCold, simulateFarm(tree, "pbulk-weight", hosts, h.trueMs, createDurationHistory(h.visibleRows)));
  const plain = poudriereOrder(graph, new Set(), "poudriere");
  const poudriereCold = simulateListOrder(graph, plain, hosts, drawn);
  push("poudriere", poudriereCold, poudriereCold, simulateListOrder(graph, plain, hosts, h.trueMs));
  const boostedCold = simulateListOrder(graph, poudriereOrder(graph, boostList(rows), "poudriere PRIORITY_BOOST"), hosts, drawn);
  push("poudriere PRIORITY_BOOST", boostedCold, boostedCold, simulateListOrder(graph, poudriereOrder(graph, boostList(h.visibleRows), "poudriere PRIORITY_BOOST"), hosts, h.trueMs));
  const dsynth = dsynthOrder(graph);
  const dsynthCold = simulateListOrder(graph, dsynth, hosts, drawn);
  push("dsynth", dsynthCold, dsynthCold, simulateListOrder(graph, dsynth, hosts, h.trueMs));
  return out;
}

function table(rows: readonly Row[]): string {
  const lines = ["| slots | policy | cold | warm | holdout | holdout, all seen | cold LB (h) | holdout LB (h) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"];
  for (const r of rows) {
    lines.push(`| ${r.agents} | ${r.policy} | ${r.coldRatio.toFixed(3)} | ${r.warmRatio.toFixed(3)} | ${r.holdoutRatio.toFixed(3)} | ${r.holdoutWarmRatio.toFixed(3)} | ${r.coldLowerBoundHours.toFixed(2)} | ${r.holdoutLowerBoundHours.toFixed(2)} |`);
  }
  return lines.join("\n");
}

function targets(rows: readonly Row[]) {
  return AGENT_COUNTS.map((agents) => {
    const ours = rows.find((r) => r.agents === agents && r.policy === "pkgfarm critical-path")!;
    const pbulk = rows.find((r) => r.agents === agents && r.policy === "pbulk weight")!;
    const allowedGap = (pbulk.holdoutRatio - 1) / 2;
    return {
      agents,
      holdoutRatio: ours.holdoutRatio,
      holdoutAtMost1_03: ours.holdoutRatio <= 1.03,
      pbulkHoldoutRatio: pbulk.holdoutRatio,
      holdoutGapAtMostHalfOfPbulks: ours.holdoutRatio - 1 <= allowedGap,
      holdoutRatioWithEveryDurationSeen: ours.holdoutWarmRatio,
      warmRatio: ours.warmRatio,
      warmAtMost1_01: ours.warmRatio <= 1.01,
    };
  });
}

/** Each package's memory need (MEMORY_CLASSES), and how many packages with a row fall in each class. */
function memoryNeeds(tree: PackageTree, rows: readonly BuildHistoryRow[]): { needOf: (pkgname: string) => number; classes: { bytes: number; packages: number; examples: string[] }[] } {
  const known = realDurations(rows);
  const ranked = [...tree.pkgnames()].filter((name) => known.has(name)).sort((a, b) => known.get(b)! - known.get(a)! || (a < b ? -1 : 1));
  const need = new Map<string, number>();
  const classes: { bytes: number; packages: number; examples: string[] }[] = [];
  let from = 0;
  for (const c of MEMORY_CLASSES) {
    const to = Math.min(ranked.length, from + Math.ceil(c.share * ranked.length));
    for (const name of ranked.slice(from, to)) need.set(name, c.bytes);
    classes.push({ bytes: c.bytes, packages: to - from, examples: ranked.slice(from, Math.min(to, from + 6)) });
    from = to;
  }
  classes.push({ bytes: BASE_MEMORY, packages: tree.size - from, examples: [] });
  return { needOf: (name) => need.get(name) ?? BASE_MEMORY, classes };
}

/**
 * A ResourceBook that has learnt every package's need, as depgraph learns
 * it from the peak memory each MarkDone reports: the memory-limited runs
 * assume an earlier build measured them (or the operator's constraints name
 * them), in the cold run as in the warm one. What changes between the runs
 * is only what is known of durations.
 */
function learntResources(tree: PackageTree, needOf: (pkgname: string) => number, exclusiveOf?: (pkgname: string) => string): ResourceBook {
  const book = createResourceBook();
  // A need of 0 is not recorded (ResourceBook.record keeps measured peaks only): no needs.
  for (const name of tree.pkgnames()) book.record(name, tree.get(name)!.record.location, { memoryBytes: needOf(name), diskBytes: 0 }, true);
  if (exclusiveOf === undefined) return book;
  // The exclusion class is the operator's word (constraints exclusive=CLASS),
  // never learnt; a constraints rule per package would cost a glob match per
  // rule at every look-up, so the class is laid over the learnt needs here.
  return {
    ...book,
    needsOf(pkgname, location) {
      const learnt = book.needsOf(pkgname, location);
      const exclusive = exclusiveOf(pkgname);
      return exclusive === "" ? learnt : { needs: { ...learnt.needs, exclusive }, origin: `${learnt.origin}; exclusive: the bench's class for 16 GiB builds` };
    },
  };
}

interface MemoryRow {
  policy: string;
  run: "cold" | "warm" | "holdout";
  ratio: number;
  makespanHours: number;
  lowerBoundHours: number;
  bindingTerm: string;
  criticalPathHours: number;
  /** The bound's term for the jobs of the largest need (those only the big hosts can run), and that need. */
  largestNeedGiB: number;
  largestNeedBoundHours: number;
  /** The exclusion classes' terms of the bound, if the run had any. */
  classBoundHours: Readonly<Record<string, number>>;
  misplaced: number;
  startedOn: Readonly<Record<string, number>>;
  peakMemoryUsedGiB: Readonly<Record<string, number>>;
}

function memoryRow(run: MemoryRow["run"], policy: string, r: PlacedResult): MemoryRow {
  const biggest = r.lowerBound.byNeed[r.lowerBound.byNeed.length - 1]!;
  return {
    policy, run,
    ratio: round(r.ratio),
    makespanHours: round(r.makespanHours),
    lowerBoundHours: round(r.lowerBoundHours),
    bindingTerm: r.lowerBound.bindingTerm,
    criticalPathHours: round(r.lowerBound.criticalPathMs / 3_600_000),
    largestNeedGiB: biggest.needBytes / GiB,
    largestNeedBoundHours: round(biggest.boundMs / 3_600_000),
    classBoundHours: Object.fromEntries(r.lowerBound.byClass.map((t) => [t.exclusive, round(t.boundMs / 3_600_000)])),
    misplaced: r.misplaced,
    startedOn: r.startedOn,
    peakMemoryUsedGiB: Object.fromEntries(Object.entries(r.peakMemoryUsed).map(([k, v]) => [k, round(v / GiB)])),
  };
}

function runMemoryFarm(tree: PackageTree, rows: readonly BuildHistoryRow[], h: Holdout, needOf: (pkgname: string) => number) {
  const drawn = drawnTruth(tree, rows);
  const out: MemoryRow[] = [];
  let lowerBound: PlacedResult["lowerBound"] | undefined;
  for (const policy of ["critical-path", "pbulk-weight"] as const) {
    const label = policy === "critical-path" ? "pkgfarm critical-path" : "pbulk weight";
    const model = createDurationHistory(rows);
    const cold = simulatePlacedFarm(tree, policy, MEMORY_FARM, drawn, model, needOf, learntResources(tree, needOf));
    lowerBound ??= cold.lowerBound;
    out.push(memoryRow("cold", label, cold));
    // pbulk's weight does not learn durations: its warm run is its cold one.
    if (policy === "critical-path") out.push(memoryRow("warm", label, simulatePlacedFarm(tree, policy, MEMORY_FARM, drawn, model, needOf, learntResources(tree, needOf))));
    else out.push(memoryRow("warm", label, cold));
    out.push(memoryRow("holdout", label, simulatePlacedFarm(tree, policy, MEMORY_FARM, h.trueMs, createDurationHistory(h.visibleRows), needOf, learntResources(tree, needOf))));
  }
  // A control: the same farm and durations with no memory needs, so every
  // slot of every host takes any job; what memory costs is the difference.
  const none = () => 0;
  const model = createDurationHistory(rows);
  const label = "pkgfarm critical-path, no memory needs";
  out.push(memoryRow("cold", label, simulatePlacedFarm(tree, "critical-path", MEMORY_FARM, drawn, model, none, learntResources(tree, none))));
  out.push(memoryRow("warm", label, simulatePlacedFarm(tree, "critical-path", MEMORY_FARM, drawn, model, none, learntResources(tree, none))));
  out.push(memoryRow("holdout", label, simulatePlacedFarm(tree, "critical-path", MEMORY_FARM, h.trueMs, createDurationHistory(h.visibleRows), none, learntResources(tree, none))));
  // The exclusion rule on top of memory: at most one 16 GiB build per host at a time.
  const heavy = (name: string) => (needOf(name) >= HEAVY_MEMORY ? HEAVY_CLASS : "");
  const exclusive = `pkgfarm critical-path, ${HEAVY_MEMORY / GiB} GiB builds exclusive=${HEAVY_CLASS}`;
  const exclusiveModel = createDurationHistory(rows);
  out.push(memoryRow("cold", exclusive, simulatePlacedFarm(tree, "critical-path", MEMORY_FARM, drawn, exclusiveModel, needOf, learntResources(tree, needOf, heavy), heavy)));
  out.push(memoryRow("warm", exclusive, simulatePlacedFarm(tree, "critical-path", MEMORY_FARM, drawn, exclusiveModel, needOf, learntResources(tree, needOf, heavy), heavy)));
  out.push(memoryRow("holdout", exclusive, simulatePlacedFarm(tree, "critical-path", MEMORY_FARM, h.trueMs, createDurationHistory(h.visibleRows), needOf, learntResources(tree, needOf, heavy), heavy)));
  return { rows: out, coldLowerBound: lowerBound! };
}

function memoryTable(rows: readonly MemoryRow[]): string {
  const lines = ["| policy | run | makespan / LB | makespan (h) | LB (h) | binding term | critical path (h) | largest need: its work / its rate (h) | misplaced |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"];
  for (const r of rows) {
    lines.push(`| ${r.policy} | ${r.run} | ${r.ratio.toFixed(3)} | ${r.makespanHours.toFixed(2)} | ${r.lowerBoundHours.toFixed(2)} | ${r.bindingTerm} | ${r.criticalPathHours.toFixed(2)} | ≥ ${r.largestNeedGiB} GiB: ${r.largestNeedBoundHours.toFixed(2)} | ${r.misplaced} |`);
  }
  return lines.join("\n");
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

async function main(): Promise<void> {
  if (!existsSync(PRESOLVE)) {
    process.stderr.write(`bench: ${PRESOLVE} is missing; the shared data must sit beside the project\n`);
    process.exit(2);
  }
  const started = performance.now();
  const { tree } = await importShared();
  const rows = parseBuildHistoryCsv(readFileSync(HISTORY, "utf8"));
  const graph = buildableGraph(tree);
  const h = holdout(tree, rows);
  process.stderr.write(`${graph.pkgnames.length} buildable jobs; ${h.withRows} packages with history rows, ${h.visible.size} visible, ${h.heldOut.length} held out (seed ${HOLDOUT_SEED}); others take the median ${round(h.medianMs / 1000)} s\n`);
  const quality = predictionQuality(tree, h);
  process.stderr.write(`prediction on the held-out half: Spearman ${quality.spearman}, top-decile share of held-out work ${quality.topDecileWorkShare} (best possible ${quality.bestPossibleTopDecileShare})\n`);
  const uniform: Row[] = [];
  for (const agents of AGENT_COUNTS) {
    uniform.push(...runFarm(tree, graph, rows, h, uniformFarm(agents), `${agents} × 1 slot`));
    process.stderr.write(`${agents} agents done at ${round((performance.now() - started) / 1000)} s\n`);
  }
  process.stderr.write(table(uniform) + "\n");
  const mixed = runFarm(tree, graph, rows, h, MIXED_FARM, "1×16 @1, 2×8 @0.7, 1×4 @0.4");
  process.stderr.write(table(mixed) + "\n");
  const memory = memoryNeeds(tree, rows);
  const memoryRun = runMemoryFarm(tree, rows, h, memory.needOf);
  process.stderr.write(`memory-limited farm done at ${round((performance.now() - started) / 1000)} s\n${memoryTable(memoryRun.rows)}\n`);
  const misplaced = memoryRun.rows.reduce((sum, r) => sum + r.misplaced, 0);
  const out = {
    node: process.version,
    buildableJobs: graph.pkgnames.length,
    packagesWithRows: h.withRows,
    medianSeconds: round(h.medianMs / 1000),
    holdoutSeed: HOLDOUT_SEED,
    drawSeed: DRAW_SEED,
    prediction: quality,
    uniform,
    mixedFarm: { hosts: MIXED_FARM, capacity: farmCapacity(MIXED_FARM).capacity, rows: mixed },
    memoryLimited: {
      hosts: MEMORY_FARM.map((host) => ({ ...host, memoryGiB: host.memoryBytes! / GiB })),
      needs: memory.classes.map((c) => ({ memoryGiB: c.bytes / GiB, packages: c.packages, longest: c.examples })),
      coldLowerBound: {
        ...memoryRun.coldLowerBound,
        byNeed: memoryRun.coldLowerBound.byNeed.map((t) => ({ ...t, needGiB: t.needBytes / GiB, boundHours: round(t.boundMs / 3_600_000) })),
      },
      rows: memoryRun.rows,
      targets: {
        misplaced,
        noneMisplaced: misplaced === 0,
        ratios: memoryRun.rows.filter((r) => r.policy === "pkgfarm critical-path").map((r) => ({ run: r.run, ratio: r.ratio, atMost1_05: r.ratio <= 1.05 })),
        withExclusionRatios: memoryRun.rows.filter((r) => r.policy.includes("exclusive=")).map((r) => ({ run: r.run, ratio: r.ratio, atMost1_05: r.ratio <= 1.05 })),
      },
    },
    targets: targets(uniform),
    seconds: round((performance.now() - started) / 1000),
  };
  process.stdout.write(JSON.stringify(out, null, 1) + "\n");
  // The bench checks what runs: a job placed where it does not fit fails it.
  if (misplaced > 0) {
    process.stderr.write(`bench: ${misplaced} job(s) were started on a host without the memory for them\n`);
    process.exit(1);
  }
}

await main();
