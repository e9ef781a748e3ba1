// npm run bench:depgraph — prints one JSON object with depgraph's figures on
// the shared pkgsrc scan. See BENCHMARKS.md for recorded runs.
import { existsSync, readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import { createPkgfarmTransport } from "../services/shared/index.js";
import { pino } from "pino";
import { DepGraphService, JobOutcome, MarkDoneRequestSchema } from "../gen/pkgfarm/v1/depgraph_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { DepGraph } from "../services/depgraph/core/depgraph.js";
import type { InvalidScanRecord } from "../services/depgraph/core/errors.js";
import { createDurationHistory, parseBuildHistoryCsv, type BuildHistoryRow } from "../services/depgraph/core/history.js";
import type { PolicyName } from "../services/depgraph/core/priority.js";
import { createScanRecordParser, type ScanRecord } from "../services/depgraph/core/scan-record.js";
import { PackageTree } from "../services/depgraph/core/tree.js";
import { readScanChunks } from "../services/depgraph/scan-file.js";
import { startDepGraphServer } from "../services/depgraph/server.js";
import { seededRandom, simulateBulkBuild } from "./simulate.js";

const DATA = new URL("../../../shared/data/pkgsrc/", import.meta.url);
const PRESOLVE = new URL("presolve.txt.gz", DATA).pathname;
const HISTORY = new URL("history-bulk-large.csv", DATA).pathname;
const PLATFORM = "NetBSD-10.0-x86_64";
const GRPC_CLIENTS = 64;
const GRPC_WINDOW_MS = 4000;

async function importShared(): Promise<{ records: ScanRecord[]; problems: InvalidScanRecord[]; tree: PackageTree; seconds: number }> {
  const started = performance.now();
  const records: ScanRecord[] = [];
  const problems: InvalidScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
  for await (const chunk of readScanChunks(PRESOLVE)) parser.push(chunk);
  parser.end();
  const tree = new PackageTree();
  problems.push(...tree.replace(records, "tree"));
  return { records, problems, tree, seconds: (performance.now() - started) / 1000 };
}

/** Compares our resolution with the DEPENDS line pbulk wrote, entry by entry in order. */
function agreement(records: readonly ScanRecord[], tree: PackageTree) {
  let compared = 0;
  let agreeing = 0;
  const disagreements: { pkgname: string; ours: string[]; pbulk: string[] }[] = [];
  for (const r of records) {
    if (r.resolvedByPbulk === undefined) continue;
    compared++;
    const ours = [...tree.get(r.pkgname)!.dependencies];
    const theirs = [...r.resolvedByPbulk];
    if (ours.length === theirs.length && ours.every((d, i) => d === theirs[i])) agreeing++;
    else disagreements.push({ pkgname: r.pkgname, ours, pbulk: theirs });
  }
  const withoutDepends = records.filter((r) => r.resolvedByPbulk === undefined);
  return {
    compared,
    agreeing,
    ratio: agreeing / compared,
    disagreements,
    // Records pbulk left without DEPENDS: did we reach the same failure on our own?
    withoutDepends: withoutDepends.map((r) => ({ pkgname: r.pkgname, pbulkFailReason: r.failReason, ourUnresolved: tree.get(r.pkgname)!.unresolved })),
  };
}

function trueDurations(tree: PackageTree, rows: readonly BuildHistoryRow[]): (pkgname: string) => number {
  // Truth is the package's own history row; every other package gets a draw,
  // even where a sibling variant has a row (the policy may guess from that).
  const known = new Map<string, number>();
  for (const row of rows) if (row.succeeded) known.set(row.pkgname, row.durationMs);
  const distribution = rows.filter((r) => r.succeeded).map((r) => r.durationMs);
  const random = seededRandom(20261125);
  const drawn = new Map<string, number>();
  let fromHistory = 0;
  for (const name of [...tree.pkgnames()].sort()) {
    const real = known.get(name);
    if (real !== undefined) fromHistory++;
    drawn.set(name, real ?? distribution[Math.floor(random() * distribution.length)]!);
  }
  process.stderr.write(`durations: ${fromHistory} packages from history rows, ${drawn.size - fromHistory} drawn (seed 20261125)\n`);
  return (pkgname) => drawn.get(pkgname)!;
}

function simulate(tree: PackageTree, rows: readonly BuildHistoryRow[]) {
  const trueMs = trueDurations(tree, rows);
  const results: Record<string, unknown>[] = [];
  let work: { buildableJobs: number; totalWorkHours: number; criticalPathHours: number } | undefined;
  const policies: PolicyName[] = ["critical-path", "pbulk-weight", "fifo"];
  for (const agents of [8, 32, 128]) {
    for (const policy of policies) {
      // Cold: the policy knows only the history CSV. Warm: it knows what a
      // first run of this same system recorded (every MarkDone duration).
      const history = createDurationHistory(rows);
      const cold = simulateBulkBuild(tree, policy, agents, trueMs, history);
      const warm = simulateBulkBuild(tree, policy, agents, trueMs, history);
      work ??= { buildableJobs: cold.jobsBuilt, totalWorkHours: round(cold.totalWorkHours), criticalPathHours: round(cold.criticalPathHours) };
      results.push({
        agents,
        policy,
        coldMakespanHours: round(cold.makespanHours),
        coldRatio: round(cold.ratio),
        warmMakespanHours: round(warm.makespanHours),
        warmRatio: round(warm.ratio),
        lowerBoundHours: round(cold.lowerBoundHours),
      });
    }
  }
  return { work, results };
}

function inCoreJobsPerSecond(tree: PackageTree): number {
  let ids = 0;
  const depgraph = new DepGraph({ now: Date.now, newId: () => String(++ids), history: createDurationHistory(), defaultPolicy: "critical-path", defaultLeaseMs: 600_000, maxLeaseMs: 600_000, maxLosses: 3, fallbackDurationMs: 60_000, tree });
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  const binaryPackage = { fileName: "x.tgz", sha256: "0".repeat(64), sizeBytes: 1 };
  const started = performance.now();
  let pairs = 0;
  for (;;) {
    const [a] = depgraph.nextReadyJobs(PLATFORM, "bench", 1, undefined);
    if (a === undefined) break;
    depgraph.markDone([{ buildId: build.id, pkgname: a.job.pkgname, leaseId: a.lease.id, succeeded: true, durationMs: 1, binaryPackage, logRef: "", failureReason: "" }]);
    pairs++;
  }
  return Math.round(pairs / ((performance.now() - started) / 1000));
}

async function grpcFigures(records: readonly ScanRecord[]) {
  const logger = pino({ level: "silent" });
  const server = await startDepGraphServer({
    host: "127.0.0.1", port: 0, packagesDir: "", scanHelper: [], scanBatch: 1, treeDir: ".", historyFile: "", importFile: "",
    defaultPolicy: "critical-path", defaultLeaseMs: 600_000, maxLeaseMs: 600_000, maxLosses: 3, keepFinishedBuilds: 20, logLevel: "silent", natsUrl: "",
      state: "memory",
      stateBucket: "pkgfarm-depgraph",
  }, logger);
  try {
    server.depgraph.tree.replace(records, "tree");
    const transports: Transport[] = Array.from({ length: GRPC_CLIENTS }, () => createPkgfarmTransport(server.url));
    // Baseline: the cheapest unary call the same server answers.
    const echoPerSecond = await forWindow(transports, async (t) => {
      await createClient(Health, t).check({ service: "" });
    });
    const client = createClient(DepGraphService, transports[0]!);
    await client.createBuild({ platform: PLATFORM });
    const wait = durationFromMs(1000);
    const pairsPerSecond = await forWindow(transports, async (t) => {
      const c = createClient(DepGraphService, t);
      const { assignments } = await c.nextReadyJob({ platform: PLATFORM, agentId: "bench", maxJobs: 1, wait });
      for (const a of assignments) {
        await c.markDone(create(MarkDoneRequestSchema, { results: [{ buildId: a.buildId, pkgname: a.package!.pkgname, leaseId: a.leaseId, outcome: JobOutcome.SUCCEEDED, binaryPackage: { fileName: "x.tgz", sha256: "0".repeat(64), sizeBytes: 1n } }] }));
      }
    });
    return { grpcJobsPerSecond: Math.round(pairsPerSecond), echoCallsPerSecond: Math.round(echoPerSecond), grpcToEchoRatio: round(pairsPerSecond / echoPerSecond) };
  } finally {
    await server.close();
  }
}

/** Runs op in a loop on every transport at once for the window; returns completed ops per second. */
async function forWindow(transports: readonly Transport[], op: (t: Transport) => Promise<void>): Promise<number> {
  // Warm up connections first, so the window measures steady state.
  await Promise.all(transports.map((t) => op(t)));
  let done = 0;
  const end = performance.now() + GRPC_WINDOW_MS;
  const started = performance.now();
  await Promise.all(transports.map(async (t) => {
    while (performance.now() < end) {
      await op(t);
      done++;
    }
  }));
  return done / ((performance.now() - started) / 1000);
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

async function main(): Promise<void> {
  if (!existsSync(PRESOLVE)) {
    process.stderr.write(`bench: ${PRESOLVE} is missing; the shared data must sit beside the project\n`);
    process.exit(2);
  }
  const imported = await importShared();
  const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
  const agree = agreement(imported.records, imported.tree);
  const rows = parseBuildHistoryCsv(readFileSync(HISTORY, "utf8"));
  const summary = imported.tree.summary();
  const simulations = simulate(imported.tree, rows);
  const inCore = inCoreJobsPerSecond(imported.tree);
  const grpc = await grpcFigures(imported.records);
  const out = {
    node: process.version,
    records: imported.records.length,
    importProblems: imported.problems.length,
    importSeconds: round(imported.seconds),
    peakRssMb,
    tree: { packages: summary.packages, edges: summary.dependencyEdges, prefailed: summary.prefailed, cycles: summary.cycles.length },
    resolveAgreement: round(agree.ratio * 100) / 100,
    resolveAgreeing: agree.agreeing,
    resolveCompared: agree.compared,
    disagreements: agree.disagreements,
    recordsWithoutDepends: agree.withoutDepends,
    simulation: simulations,
    inCoreJobsPerSecond: inCore,
    ...grpc,
  };
  process.stdout.write(JSON.stringify(out, null, 1) + "\n");
}

await main();
