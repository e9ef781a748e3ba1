// node dist/bench/tree.bench.js — prints one JSON object: how long PackageTree
// takes to apply location changes on the shared pkgsrc scan, against a full import.
import { buildScanDependsIndex, locationsToRescan } from "../services/depgraph/core/changed-files.js";
import { createScanRecordParser, type ScanRecord } from "../services/depgraph/core/scan-record.js";
import { PackageTree } from "../services/depgraph/core/tree.js";
import { readScanChunks } from "../services/depgraph/scan-file.js";
import { seededRandom } from "./simulate.js";

const PRESOLVE = new URL("../../../shared/data/pkgsrc/presolve.txt.gz", import.meta.url).pathname;
const SINGLE_CHANGES = 200;
const FULL_IMPORTS = 3;

async function readRecords(): Promise<ScanRecord[]> {
  const records: ScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => { throw p; });
  for await (const chunk of readScanChunks(PRESOLVE)) parser.push(chunk);
  parser.end();
  return records;
}

function timed<T>(run: () => T): { ms: number; result: T } {
  const started = performance.now();
  const result = run();
  return { ms: performance.now() - started, result };
}

function percentiles(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
  return { samples: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: round(sorted[sorted.length - 1]!) };
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/** A change that touches the record but not what it depends on, as most rescans are. */
const touched = (r: ScanRecord): ScanRecord => ({ ...r, maintainer: `${r.maintainer}.` });
/** A newer version of the package, which every pattern still matching it now picks. */
const bumped = (r: ScanRecord): ScanRecord => ({ ...r, pkgname: `${r.pkgname}.9999` });

const records = await readRecords();
const byLocation = new Map<string, ScanRecord[]>();
for (const r of records) byLocation.set(r.location, [...(byLocation.get(r.location) ?? []), r]);

const imports: number[] = [];
let tree = new PackageTree();
for (let i = 0; i < FULL_IMPORTS; i++) {
  tree = new PackageTree();
  imports.push(timed(() => tree.applyTree(records)).ms);
}

// The first update after an import builds the indexes an import does without.
const firstUpdate = timed(() => tree.applyLocations(byLocation.get("devel/gmake")!.map(touched), []));
tree.applyLocations(byLocation.get("devel/gmake")!, []);

const random = seededRandom(20260401);
const locations = [...byLocation.keys()];
const picks = Array.from({ length: SINGLE_CHANGES }, () => locations[Math.floor(random() * locations.length)]!);

const single = { touched: [] as number[], repeated: [] as number[], bumped: [] as number[], restored: [] as number[] };
let bumpedChanged = 0;
for (const location of picks) {
  const original = byLocation.get(location)!;
  const change = original.map(touched);
  single.touched.push(timed(() => tree.applyLocations(change, [])).ms);
  single.repeated.push(timed(() => tree.applyLocations(change, [])).ms);
  const bump = timed(() => tree.applyLocations(original.map(bumped), []));
  single.bumped.push(bump.ms);
  bumpedChanged += bump.result.change.changed.length;
  single.restored.push(timed(() => tree.applyLocations(original, [])).ms);
}

const index = buildScanDependsIndex(records);
const zlibLocations = locationsToRescan(["devel/zlib/buildlink3.mk"], new Set(locations), index).locations;
const zlibRecords = zlibLocations.flatMap((l) => byLocation.get(l)!);
const zlibApply = timed(() => tree.applyLocations(zlibRecords.map(touched), []));
const zlibRepeat = timed(() => tree.applyLocations(zlibRecords.map(touched), []));
const zlibRestore = timed(() => tree.applyLocations(zlibRecords, []));
// What a zlib ABI bump would send: every includer asks for a newer zlib (still satisfied).
const includes = (r: ScanRecord) => r.scanDepends.includes("../../devel/zlib/buildlink3.mk");
const asking = zlibRecords.map((r) => includes(r)
  ? { ...r, dependencies: [...r.dependencies.filter((d) => !d.pattern.startsWith("zlib>=")), { pattern: "zlib>=1.3.1", location: "devel/zlib" }] }
  : r);
const zlibAbi = timed(() => tree.applyLocations(asking, []));
const zlibAbiRestore = timed(() => tree.applyLocations(zlibRecords, []));
const zlib = byLocation.get("devel/zlib")!;
const zlibBump = timed(() => tree.applyLocations(zlib.map(bumped), []));

process.stdout.write(JSON.stringify({
  records: records.length,
  locations: locations.length,
  fullImportMs: imports.map(round),
  firstUpdateAfterImportMs: round(firstUpdate.ms),
  singleLocation: {
    touched: percentiles(single.touched),
    repeatedNoOp: percentiles(single.repeated),
    versionBumped: { ...percentiles(single.bumped), meanChangedPackages: round(bumpedChanged / SINGLE_CHANGES) },
    restored: percentiles(single.restored),
  },
  zlibBuildlink3: {
    locations: zlibLocations.length,
    records: zlibRecords.length,
    touchedMs: round(zlibApply.ms),
    changed: zlibApply.result.change.changed.length,
    repeatedNoOpMs: round(zlibRepeat.ms),
    restoredMs: round(zlibRestore.ms),
    newDependencyPatternMs: round(zlibAbi.ms),
    newDependencyPatternChanged: zlibAbi.result.change.changed.length,
    newDependencyPatternRestoredMs: round(zlibAbiRestore.ms),
    zlibVersionBumpedMs: round(zlibBump.ms),
    zlibVersionBumpChanged: zlibBump.result.change.changed.length,
  },
}, null, 2) + "\n");
