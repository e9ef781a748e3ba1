// npm run bench:events — prints one JSON object with how fast depgraph takes
// package-metadata change events on the full shared pkgsrc scan, with its
// state in JetStream KV and a whole-tree build running. See BENCHMARKS.md.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "nats";
import { pino } from "pino";
import type { DepGraphConfig } from "../services/depgraph/config.js";
import { formatScanRecord, createScanRecordParser, type ScanRecord } from "../services/depgraph/core/scan-record.js";
import { FILES_SUBJECT, RECORDS_SUBJECT, publishMetaEvent, type AppliedChange } from "../services/depgraph/meta-events.js";
import { startDepGraphServer, type RunningDepGraph } from "../services/depgraph/server.js";
import { startNatsServer } from "../test/support/nats-server.js";
import { seededRandom } from "./simulate.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PRESOLVE = join(ROOT, "..", "shared", "data", "pkgsrc", "presolve.txt.gz");
const SCAN_FROM_FILE = join(ROOT, "bench", "scan-from-file.mjs");
const PLATFORM = "NetBSD-10.0-x86_64";
const SINGLE_CHANGES = 300;
const BURST = 10_000;
const ZLIB_FILE = "devel/zlib/buildlink3.mk";
/** PBULK_WEIGHT the zlib change gives records without a zlib dependency (no other phase uses it). */
const ZLIB_WEIGHT = 4242;

/** Progress goes to stderr, so stdout stays one JSON object. */
function phase(what: string): void {
  process.stderr.write(`[${new Date().toISOString()}] ${what}\n`);
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** waitFor resolves with the first applied change that satisfies test. */
function applied(listeners: Set<(c: AppliedChange) => void>, test: (c: AppliedChange) => boolean): Promise<AppliedChange> {
  return new Promise((resolve) => {
    const listener = (c: AppliedChange) => {
      if (!test(c)) return;
      listeners.delete(listener);
      resolve(c);
    };
    listeners.add(listener);
  });
}

/**
 * recordRanges finds each record's bytes by location, so the benchmark's scan
 * helper reads a location's records without reading the whole scan: the
 * rescan should cost what a fast helper costs, not what parsing 160 MB does.
 */
function recordRanges(scan: Buffer): Record<string, [number, number][]> {
  const ranges: Record<string, [number, number][]> = {};
  const starts: number[] = [];
  for (let at = 0; at >= 0; at = scan.indexOf("\nPKGNAME=", at + 1)) starts.push(at === 0 ? 0 : at + 1);
  starts.forEach((start, i) => {
    const end = starts[i + 1] ?? scan.length;
    const key = scan.indexOf("\nPKG_LOCATION=", start);
    if (key < 0 || key >= end) return;
    const location = scan.toString("latin1", key + 14, scan.indexOf("\n", key + 14));
    (ranges[location] ??= []).push([start, end]);
  });
  return ranges;
}

function config(natsUrl: string, workDir: string, importFile: string): DepGraphConfig {
  return {
    host: "127.0.0.1", port: 0, packagesDir: "", scanHelper: [process.execPath, SCAN_FROM_FILE], scanBatch: 2500, treeDir: workDir,
    historyFile: "", importFile, defaultPolicy: "critical-path", defaultLeaseMs: 600_000, maxLeaseMs: 86_400_000, maxLosses: 3, keepFinishedBuilds: 20,
    logLevel: "silent", natsUrl, state: "nats-kv", stateBucket: "bench", metricsPort: undefined,
  };
}

async function main(): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), "pkgfarm-bench-events-"));
  const plain = join(workDir, "presolve.txt");
  const scanText = gunzipSync(readFileSync(PRESOLVE));
  writeFileSync(plain, scanText);
  writeFileSync(`${plain}.index.json`, JSON.stringify(recordRanges(scanText)));
  process.env["PKGFARM_BENCH_SCAN"] = plain;
  const records: ScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), () => {});
  parser.push(readFileSync(plain));
  parser.end();
  const byLocation = new Map<string, ScanRecord[]>();
  for (const r of records) byLocation.set(r.location, [...(byLocation.get(r.location) ?? []), r]);
  const locations = [...byLocation.keys()];
  const random = seededRandom(42);

  const nats = await startNatsServer();
  const listeners = new Set<(c: AppliedChange) => void>();
  const hooks = { onMetaApplied: (c: AppliedChange) => { for (const l of [...listeners]) l(c); } };
  let server: RunningDepGraph | undefined;
  let nc: NatsConnection | undefined;
  try {
    phase("importing the shared scan into depgraph (state in KV)");
    let started = performance.now();
    server = await startDepGraphServer(config(nats.url, workDir, plain), benchLogger(), hooks);
    const firstStartMs = performance.now() - started;
    phase("waiting for the import to be stored");
    await server.stateSettled();
    const importPersistedMs = performance.now() - started;
    const build = server.depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
    nc = await connect({ servers: nats.url });

    // One location at a time: its records with a new PBULK_WEIGHT, published
    // and waited for until depgraph has applied it, persisted it, and acked.
    const change = (location: string, weight: number) => ({
      locations: [location],
      pbulkIndex: byLocation.get(location)!.map((r) => formatScanRecord({ ...r, pbulkWeight: weight })).join(""),
    });
    phase("single changes");
    const single: number[] = [];
    for (let i = 0; i < SINGLE_CHANGES; i++) {
      const location = locations[Math.floor(random() * locations.length)]!;
      const done = applied(listeners, (c) => c.subject === RECORDS_SUBJECT && c.locations.includes(location));
      const t0 = performance.now();
      await publishMetaEvent(nc, RECORDS_SUBJECT, change(location, 1000 + i));
      await done;
      single.push(performance.now() - t0);
    }
    single.sort((a, b) => a - b);

    // devel/zlib/buildlink3.mk changed: depgraph maps it to every location
    // whose SCAN_DEPENDS lists it, rescans them (from the shared records),
    // applies them as one tree change (inGraphMs: from then on every RPC and
    // the running build see them), stores them and republishes them as
    // records events, acks the files event (ackedMs), and then takes the
    // republished events again as no-ops (republishedEventsProcessedMs).
    phase("zlib buildlink3.mk change");
    // A real change: the tree the scan helper reads now says something new
    // for every location, so each rescanned record differs from the one in
    // the graph (the shared records alone would rescan to what depgraph
    // already has, and it skips those). Records needing zlib get the pattern
    // a bumped BUILDLINK_API_DEPENDS.zlib gives; the others, which include
    // the file without a zlib dependency, a new PBULK_WEIGHT.
    const bumped = records.map((r) => {
      const zlib = r.dependencies.some((d) => d.location === "devel/zlib");
      return zlib
        ? { ...r, dependencies: r.dependencies.map((d) => (d.location === "devel/zlib" ? { ...d, pattern: "zlib>=1.3.1" } : d)) }
        : { ...r, pbulkWeight: ZLIB_WEIGHT };
    });
    const bumpedText = Buffer.from(bumped.map(formatScanRecord).join(""), "utf8");
    writeFileSync(plain, bumpedText);
    writeFileSync(`${plain}.index.json`, JSON.stringify(recordRanges(bumpedText)));
    const beforeZlib = new Map<string, string>();
    for (const pkg of server.depgraph.tree.values()) beforeZlib.set(pkg.record.location, (beforeZlib.get(pkg.record.location) ?? "") + formatScanRecord(pkg.record));
    const zlibRevision = server.depgraph.tree.revision;
    // The republished records events are a few hundred kB each.
    const rescanned = applied(listeners, (c) => c.subject === FILES_SUBJECT);
    const seenLocations = new Set<string>();
    let zlibEvents = 0;
    const counting = (c: AppliedChange) => {
      if (c.subject !== RECORDS_SUBJECT) return;
      zlibEvents++;
      for (const l of c.locations) seenLocations.add(l);
    };
    listeners.add(counting);
    const zlibProfiler = await startProfiler(process.env.BENCH_ZLIB_PROFILE);
    // The graph has the change when one tree change takes the whole rescan;
    // the event is acked once that is stored and republished.
    let zlibInGraphMs = 0;
    const offZlibTree = server.depgraph.onTreeChange((notice) => {
      if (notice.locations.length > 1000 && zlibInGraphMs === 0) zlibInGraphMs = performance.now() - started;
    });
    started = performance.now();
    await publishMetaEvent(nc, FILES_SUBJECT, { files: [ZLIB_FILE] });
    const zlib = await rescanned;
    const zlibAppliedMs = performance.now() - started;
    offZlibTree();
    await zlibProfiler?.stop();
    while (!zlib.locations.every((l) => seenLocations.has(l))) await new Promise((r) => setTimeout(r, 1));
    listeners.delete(counting);
    const zlibMs = performance.now() - started;
    const zlibRevisionAfter = server.depgraph.tree.revision;
    const afterZlib = new Map<string, string>();
    for (const pkg of server.depgraph.tree.values()) afterZlib.set(pkg.record.location, (afterZlib.get(pkg.record.location) ?? "") + formatScanRecord(pkg.record));
    const zlibChanged = zlib.locations.filter((l) => afterZlib.get(l) !== beforeZlib.get(l)).length;

    phase("burst");
    // A burst: BURST events published as fast as JetStream takes them.
    let seen = 0;
    const burstDone = new Promise<void>((resolve) => {
      listeners.add((c) => {
        if (c.subject === RECORDS_SUBJECT && ++seen === BURST) resolve();
      });
    });
    started = performance.now();
    const publishing: Promise<unknown>[] = [];
    for (let i = 0; i < BURST; i++) {
      publishing.push(publishMetaEvent(nc, RECORDS_SUBJECT, change(locations[i % locations.length]!, 2000 + i)));
      if (publishing.length >= 256) await Promise.all(publishing.splice(0));
    }
    await Promise.all(publishing);
    const publishedMs = performance.now() - started;
    await burstDone;
    const burstMs = performance.now() - started;

    // Restart: half the build finished, some jobs leased; a new depgraph
    // reads it all back from KV and serves again.
    phase("half the build, then a restart");
    const half = Math.floor(build.jobs.length / 2);
    let finished = 0;
    const sha = "0".repeat(64);
    while (finished < half) {
      const batch = server.depgraph.nextReadyJobs(PLATFORM, "bench", 256, undefined);
      if (batch.length === 0) break;
      server.depgraph.markDone(batch.map((a) => ({ buildId: a.build.id, pkgname: a.job.pkgname, leaseId: a.lease.id, succeeded: true, durationMs: 1000, binaryPackage: { fileName: `${a.job.pkgname}.tgz`, sha256: sha, sizeBytes: 1 }, logRef: "", failureReason: "" })));
      finished += batch.length;
    }
    const leased = server.depgraph.nextReadyJobs(PLATFORM, "bench", 100, undefined).length;
    await server.stateSettled();
    const countsBefore = JSON.stringify(Object.fromEntries(["succeeded", "leased", "ready", "pending"].map((s) => [s, build.countOf(s as never)])));
    await server.close();
    server = undefined;
    const profiler = await startProfiler(process.env.BENCH_RESTART_PROFILE);
    started = performance.now();
    server = await startDepGraphServer(config(nats.url, workDir, ""), benchLogger(), hooks);
    const restartMs = performance.now() - started;
    await profiler?.stop();
    const restored = server.depgraph.getBuild(build.id);
    const countsAfter = JSON.stringify(Object.fromEntries(["succeeded", "leased", "ready", "pending"].map((s) => [s, restored.countOf(s as never)])));

    console.log(JSON.stringify({
      tree: { records: records.length, locations: locations.length, runningBuildJobs: build.jobs.length },
      startAndImportMs: round(firstStartMs),
      importPersistedToKvMs: round(importPersistedMs),
      singleChange: { events: SINGLE_CHANGES, p50Ms: round(percentile(single, 50)), p99Ms: round(percentile(single, 99)), maxMs: round(single[single.length - 1]!), targetP99Ms: 50 },
      zlibBuildlink3: { locations: zlib.locations.length, locationsChanged: zlibChanged, inGraphMs: round(zlibInGraphMs), ackedMs: round(zlibAppliedMs), recordsEvents: zlibEvents, republishedEventsProcessedMs: round(zlibMs), treeRevisionAfter: zlibRevisionAfter, treeRevisionBefore: zlibRevision, targetMs: 2000 },
      burst: { events: BURST, publishMs: round(publishedMs), appliedMs: round(burstMs), eventsPerSecond: Math.round(BURST / (burstMs / 1000)) },
      restart: { jobs: restored.jobs.length, succeeded: finished, leased, restartAndResumeMs: round(restartMs), countsMatch: countsBefore === countsAfter, targetMs: 5000 },
    }, null, 2));
  } finally {
    await nc?.drain().catch(() => {});
    await server?.close();
    await nats.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

await main();

/** The servers' own logs go to stderr when BENCH_LOG_LEVEL asks for them (e.g. info), to see where time goes. */
function benchLogger() {
  return pino({ level: process.env.BENCH_LOG_LEVEL ?? "silent" }, pino.destination(2));
}

/** startProfiler records a CPU profile into file (for Chrome DevTools or speedscope), when a file is named. */
async function startProfiler(file: string | undefined): Promise<{ stop(): Promise<void> } | undefined> {
  if (file === undefined || file === "") return undefined;
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  return {
    async stop() {
      const { profile } = await session.post("Profiler.stop");
      writeFileSync(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}
