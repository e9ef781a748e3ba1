// node --expose-gc dist/bench/scan-heap.bench.js [DIST] — heap taken by the
// 29,022-record shared scan once parsed and resolved (records and tree kept),
// for the dist/ of this checkout or of another one (to compare a change with
// the code before it). Prints one JSON object; see BENCHMARKS.md.
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const root = resolve(process.argv[2] ?? new URL("..", import.meta.url).pathname);
const PRESOLVE = new URL("../../../shared/data/pkgsrc/presolve.txt.gz", import.meta.url).pathname;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with node --expose-gc");

const load = (path: string) => import(pathToFileURL(`${root}/${path}`).href);
const { createScanRecordParser } = await load("services/depgraph/core/scan-record.js");
const { PackageTree } = await load("services/depgraph/core/tree.js");
const { readScanChunks } = await load("services/depgraph/scan-file.js");

gc();
gc();
const base = process.memoryUsage().heapUsed;
const started = performance.now();
const records: { vars?: unknown }[] = [];
let problems = 0;
const parser = createScanRecordParser((r: { vars?: unknown }) => records.push(r), () => problems++);
for await (const chunk of readScanChunks(PRESOLVE)) parser.push(chunk);
parser.end();
const tree = new PackageTree();
problems += tree.replace(records, "tree").length;
const seconds = (performance.now() - started) / 1000;
gc();
gc();
const heapMib = (process.memoryUsage().heapUsed - base) / 2 ** 20;
process.stdout.write(JSON.stringify({
  dist: root,
  records: records.length,
  problems,
  heapMib: Math.round(heapMib * 10) / 10,
  parseAndResolveSeconds: Math.round(seconds * 100) / 100,
  distinctVarsObjects: new Set(records.map((r) => r.vars)).size,
  treePackages: tree.size,
}) + "\n");
