// npm run bench:big-cycle — prints one JSON object: what a tree with one
// dependency cycle of 8,000 packages (issue 11, "Big graphs") costs depgraph.
// Targets: CreateBuild under 2 s and under 300 MB more heap; a health check
// answered within 100 ms while CreateBuild runs; NextReadyJob + MarkDone as
// cheap at the top of a deep chain as at its bottom. See BENCHMARKS.md.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { loadavg } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { DepGraphService, JobOutcome, MarkDoneRequestSchema, NextReadyJobResponseSchema, type Assignment } from "../gen/pkgfarm/v1/depgraph_pb.js";
import { DepGraph } from "../services/depgraph/core/depgraph.js";
import { createDurationHistory } from "../services/depgraph/core/history.js";
import { createScanRecordParser, type ScanRecord } from "../services/depgraph/core/scan-record.js";
import { runSliced } from "../services/depgraph/slices.js";
import { createPkgfarmTransport } from "../services/shared/index.js";
import { BIG_CYCLE_SHAPE, bigGraphScan } from "../test/support/big-graph.js";
import { grpcJsHealthClient } from "../test/support/grpc-health.js";

const PLATFORM = "NetBSD-10.0-x86_64";
const CHAIN = Number(process.env.BENCH_CHAIN ?? 1_000);
const SAMPLES = 50;

/** Progress goes to stderr, so stdout stays one JSON object. */
function phase(what: string): void {
  process.stderr.write(`[${new Date().toISOString()}] ${what}\n`);
}

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) throw new Error("run with node --expose-gc (npm run bench:big-cycle does)");
  collect();
  collect();
}

const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
const ms = (t: number) => Math.round(t * 10) / 10;

function parse(text: string): ScanRecord[] {
  const records: ScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => {
    throw new Error(p.message);
  });
  parser.push(text);
  parser.end();
  return records;
}

function newDepGraph(): DepGraph {
  return new DepGraph({
    now: Date.now, newId: () => crypto.randomUUID(), history: createDurationHistory(), defaultPolicy: "critical-path",
    defaultLeaseMs: 60_000, maxLeaseMs: 3_600_000, maxLosses: 3, fallbackDurationMs: 60_000,
  });
}

const buildRequest = { platform: PLATFORM, mode: "full" as const, policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() };

/** In process: CreateBuild's time and heap, at once and in slices. */
async function inCore(text: string) {
  const records = parse(text);
  const depgraph = newDepGraph();
  let t = performance.now();
  depgraph.replaceTree(records, "tree");
  const importMs = performance.now() - t;
  const out: Record<string, unknown> = { packages: records.length, cycle: depgraph.tree.cyclesFound().map((c) => c.length), importMs: ms(importMs) };
  for (const policy of ["critical-path", "pbulk-weight"] as const) {
    gc();
    const before = process.memoryUsage().heapUsed;
    t = performance.now();
    const build = depgraph.createBuild({ ...buildRequest, policy });
    const took = performance.now() - t;
    const right = process.memoryUsage().heapUsed;
    gc();
    const after = process.memoryUsage().heapUsed;
    out[policy] = { createBuildMs: ms(took), heapMoreRightAfterMb: mb(right - before), heapMoreRetainedMb: mb(after - before), jobs: build.jobs.length, cycleJobs: build.countOf("cycle") };
  }
  // In slices, as the service runs it: the longest single slice bounds how
  // long anything else waits.
  // CPU time as well as wall time: on a loaded machine a step's wall time
  // is mostly time spent waiting for a core.
  const longestSteps = (steps: Generator<unknown, unknown, void>) => {
    let longest = 0;
    let longestCpu = 0;
    let slices = 0;
    const started = performance.now();
    for (;;) {
      const s = performance.now();
      const cpu = process.cpuUsage();
      const step = steps.next();
      const used = process.cpuUsage(cpu);
      longest = Math.max(longest, performance.now() - s);
      longestCpu = Math.max(longestCpu, (used.user + used.system) / 1000);
      slices++;
      if (step.done) break;
    }
    return { totalMs: ms(performance.now() - started), steps: slices, longestStepMs: ms(longest), longestStepCpuMs: ms(longestCpu) };
  };
  out.slicedImport = longestSteps(depgraph.replaceTreeSteps(records, "tree"));
  out.slicedCreateBuild = longestSteps(depgraph.createBuildSteps(buildRequest));
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  t = performance.now();
  await runSliced(depgraph.createBuildSteps(buildRequest));
  loop.disable();
  out.runSliced = { totalMs: ms(performance.now() - t), eventLoopDelayMaxMs: ms(loop.max / 1e6) };
  return out;
}

/** Health checks, one after another, until stop() is called; their latencies. */
function probe(address: string) {
  const health = grpcJsHealthClient(address);
  const latencies: number[] = [];
  let stopped = false;
  const running = (async () => {
    while (!stopped) {
      const t = performance.now();
      await health.check("pkgfarm.v1.DepGraphService", 30_000);
      latencies.push(performance.now() - t);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await running;
      health.close();
      const sorted = [...latencies].sort((a, b) => a - b);
      return { checks: sorted.length, maxMs: ms(sorted[sorted.length - 1] ?? NaN), p50Ms: ms(sorted[Math.floor(sorted.length / 2)] ?? NaN), p99Ms: ms(sorted[Math.floor(sorted.length * 0.99)] ?? NaN) };
    },
  };
}

/** A free loopback port, for a server in another process. */
async function freePort(): Promise<number> {
  const probeServer = createServer();
  await new Promise<void>((resolve) => probeServer.listen(0, "127.0.0.1", resolve));
  const port = (probeServer.address() as { port: number }).port;
  await new Promise((resolve) => probeServer.close(resolve));
  return port;
}

/**
 * depgraph in a process of its own (pkgfarm depgraph), as in production, so
 * the health prober and the clients of this process do not share its event
 * loop.
 */
async function startDepGraphProcess(): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const port = await freePort();
  // BENCH_DEPGRAPH_NODE_FLAGS (e.g. "--trace-gc") go to depgraph's node; its stdout then goes to stderr.
  const flags = (process.env.BENCH_DEPGRAPH_NODE_FLAGS ?? "").split(" ").filter((f) => f !== "");
  const child = spawn(process.execPath, [...flags, new URL("../services/cli/main.js", import.meta.url).pathname, "depgraph", "--host", "127.0.0.1", "--port", String(port), "--log-level", "warn"],
    { stdio: ["ignore", flags.length > 0 ? 2 : "ignore", "inherit"] });
  const health = grpcJsHealthClient(`127.0.0.1:${port}`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await health.check("", 1000);
      break;
    } catch (e) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`depgraph did not start: ${String(e)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  health.close();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async close() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

async function overGrpc(text: string) {
  const server = await startDepGraphProcess();
  const client = createClient(DepGraphService, createPkgfarmTransport(server.url));
  try {
    async function* chunks() {
      for (let at = 0; at < text.length; at += 1 << 20) yield { pbulkIndex: text.slice(at, at + (1 << 20)) };
    }
    let health = probe(`127.0.0.1:${server.port}`);
    let t = performance.now();
    await client.importScan(chunks());
    const importMs = performance.now() - t;
    const healthDuringImport = await health.stop();
    // The same probe with nothing running: what the machine's load alone costs a check.
    health = probe(`127.0.0.1:${server.port}`);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const healthIdle = await health.stop();
    const builds = [];
    for (let i = 0; i < 3; i++) {
      health = probe(`127.0.0.1:${server.port}`);
      // Let the probe's first check through, so it is on the wire when CreateBuild starts.
      await new Promise((resolve) => setTimeout(resolve, 50));
      t = performance.now();
      const { build } = await client.createBuild({ platform: PLATFORM });
      const took = performance.now() - t;
      builds.push({ createBuildMs: ms(took), jobs: build?.totalJobs, health: await health.stop() });
    }
    const page = await client.listJobs({ buildId: (await client.listBuilds({})).builds[0]!.id, states: [8], pageSize: 10_000 });
    return { importMs: ms(importMs), healthDuringImport, healthIdle, builds, cycleJobsInLargestPage: page.jobs.length };
  } finally {
    await server.close();
  }
}

/** A chain of CHAIN packages: the job at the top needs every one below it. */
function chainScan(): string {
  const lines: string[] = [];
  for (let i = 0; i < CHAIN; i++) {
    lines.push(`PKGNAME=chain${i}-1.0`, `PKG_LOCATION=devel/chain${i}`, `ALL_DEPENDS=${i === 0 ? "" : `chain${i - 1}>=1.0:../../devel/chain${i - 1}`}`);
  }
  return lines.join("\n") + "\n";
}

function done(client: Client<typeof DepGraphService>, a: Assignment) {
  const name = a.package!.pkgname;
  return client.markDone(create(MarkDoneRequestSchema, {
    results: [{
      buildId: a.buildId, pkgname: name, leaseId: a.leaseId, outcome: JobOutcome.SUCCEEDED, duration: durationFromMs(1000),
      binaryPackage: { fileName: `${name}.tgz`, sha256: "ab".repeat(32), sizeBytes: 1000n },
    }],
  }));
}

/**
 * NextReadyJob + MarkDone pairs over gRPC at the bottom and at the top of the
 * chain: with the closure in every assignment (what the dispatcher asks for
 * today), and with the dependency manifest kept by the caller instead
 * (omit_dependency_packages; the time to fetch the new manifest entries is
 * counted in with NextReadyJob).
 */
async function deepChain(mode: "closure" | "manifest") {
  const server = await startDepGraphProcess();
  const client = createClient(DepGraphService, createPkgfarmTransport(server.url));
  try {
    await client.importScan((async function* () {
      yield { pbulkIndex: chainScan() };
    })());
    const { build } = await client.createBuild({ platform: PLATFORM, policy: 3 });
    let manifestEntries = 0;
    const samples: { at: number; nextMs: number; doneMs: number; dependencyPackages: number; answerBytes: number }[] = [];
    for (let i = 0; i < CHAIN; i++) {
      let t = performance.now();
      const answer = await client.nextReadyJob({ platform: PLATFORM, agentId: "bench", omitDependencyPackages: mode === "manifest" });
      const a = answer.assignments[0]!;
      while (manifestEntries < a.manifestSize) {
        manifestEntries += (await client.getDependencyManifest({ buildId: build!.id, offset: manifestEntries })).entries.length;
      }
      const nextMs = performance.now() - t;
      t = performance.now();
      await done(client, a);
      const doneMs = performance.now() - t;
      if (i < SAMPLES || i >= CHAIN - SAMPLES) {
        samples.push({ at: i, nextMs, doneMs, dependencyPackages: a.dependencyPackages.length, answerBytes: toBinary(NextReadyJobResponseSchema, answer).byteLength });
      }
    }
    const summary = (part: typeof samples) => {
      const median = (xs: number[]) => ms([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);
      const last = part[part.length - 1]!;
      return { nextReadyJobMedianMs: median(part.map((s) => s.nextMs)), markDoneMedianMs: median(part.map((s) => s.doneMs)), dependencyPackages: last.dependencyPackages, answerBytes: last.answerBytes };
    };
    return { chain: CHAIN, mode, bottom: summary(samples.slice(0, SAMPLES)), top: summary(samples.slice(SAMPLES)) };
  } finally {
    await server.close();
  }
}

if (process.env.BENCH_ONLY === "grpc") {
  process.stdout.write(JSON.stringify(await overGrpc(bigGraphScan()), null, 1) + "\n");
  process.exit(0);
}
if (process.env.BENCH_ONLY === "chain") {
  process.stdout.write(JSON.stringify([await deepChain("closure"), await deepChain("manifest")], null, 1) + "\n");
  process.exit(0);
}
const text = bigGraphScan();
phase(`synthetic tree: ${BIG_CYCLE_SHAPE.cycle} in the cycle, ${BIG_CYCLE_SHAPE.base} below, ${BIG_CYCLE_SHAPE.above} above`);
phase("in process");
const loadBefore = loadavg().map((l) => Math.round(l * 10) / 10);
phase(`load average ${loadBefore.join(" ")}`);
const core = await inCore(text);
phase("over gRPC on loopback");
const grpc = await overGrpc(text);
phase("deep chain");
const chain = [await deepChain("closure"), await deepChain("manifest")];
process.stdout.write(JSON.stringify({ node: process.version, loadAverage: loadavg().map((l) => Math.round(l * 10) / 10), shape: BIG_CYCLE_SHAPE, inCore: core, grpc, deepChain: chain }, null, 1) + "\n");
