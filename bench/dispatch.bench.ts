// npm run bench:dispatch — prints one JSON object with the dispatcher's figures
// (jobs per second through Connect, assignment latency, requeue after a killed
// agent, upload throughput) on the shared pkgsrc scan. Progress goes to stderr.
//
// Run as `node dist/bench/dispatch.bench.js --hold-agent <url> <agentId> <platform>`
// the same file is the child agent of the requeue measurement: it connects with
// one slot, reports each assignment on stdout as a JSON line and holds the job.
//
// `npm run bench:dispatch -- --processes` (or `node dist/bench/dispatch.bench.js
// --processes`) measures the throughput runs with depgraph and the dispatcher
// each in a process of its own (`pkgfarm depgraph`, `pkgfarm dispatcher`, as
// deployed) and the simulated agents in this one; the requeue and upload
// figures, which do not depend on it, are left out.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { copyFile, mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { DepGraphService, JobOutcome, type BinaryPackage } from "../gen/pkgfarm/v1/depgraph_pb.js";
import {
  ConnectRequestSchema,
  DispatcherService,
  UploadPackageRequestSchema,
  type ConnectRequest,
  type JobAssignment,
  type RunningJob,
} from "../gen/pkgfarm/v1/dispatcher_pb.js";
import { prefailReason } from "../services/depgraph/core/tree.js";
import { startDepGraphServer, type RunningDepGraph } from "../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../services/dispatcher/server.js";
import { createChannel, createPkgfarmTransport, type Channel } from "../services/shared/index.js";

const DATA = new URL("../../../shared/data/pkgsrc/", import.meta.url);
const PRESOLVE = new URL("presolve.txt.gz", DATA).pathname;
const PLATFORM = "NetBSD-10.0-x86_64";
const AGENT_COUNTS = [1, 16, 64];
const WARMUP_MS = 1500;
const WINDOW_MS = 5000;
const TINY_PACKAGE = randomBytes(64);
const TINY_SHA256 = createHash("sha256").update(TINY_PACKAGE).digest("hex");
const REQUEUE_HEARTBEAT_INTERVAL_MS = 1000;
const REQUEUE_HEARTBEAT_TIMEOUT_MS = 3000;
const UPLOAD_BYTES = 256 * 1024 * 1024;
const UPLOAD_CHUNK_BYTES = 256 * 1024;
const MB = 1e6;

const log = (text: string) => process.stderr.write(`bench: ${text}\n`);
const silent = pino({ level: "silent" });

// --- a simulated agent ------------------------------------------------------

type UploadPart = MessageInitShape<typeof UploadPackageRequestSchema>;

interface SimAgent {
  readonly id: string;
  readonly client: Client<typeof DispatcherService>;
  readonly welcomed: Promise<void>;
  readonly ended: Promise<unknown>;
  send(message: MessageInitShape<typeof ConnectRequestSchema>["message"]): void;
  /** Resolves with the next assignment matching (past ones included). */
  waitForAssign(match: (a: JobAssignment) => boolean, timeoutMs: number): Promise<{ assignment: JobAssignment; at: number }>;
  close(): void;
}

/**
 * connectSimAgent speaks DispatcherService/Connect directly with one slot.
 * onAssign gets every assignment with its receive time (performance.now()).
 */
function connectSimAgent(url: string, id: string, onAssign?: (agent: SimAgent, a: JobAssignment, at: number) => void): SimAgent {
  const client = createClient(DispatcherService, createPkgfarmTransport(url));
  const outbox: Channel<ConnectRequest> = createChannel<ConnectRequest>();
  const assigns: { assignment: JobAssignment; at: number }[] = [];
  const waiters = new Set<() => void>();
  let heartbeat: NodeJS.Timeout | undefined;
  let onWelcome: () => void = () => {};
  const welcomed = new Promise<void>((resolve) => (onWelcome = resolve));
  const held: RunningJob[] = [];
  const send = (message: MessageInitShape<typeof ConnectRequestSchema>["message"]) => outbox.push(create(ConnectRequestSchema, { message }));
  send({ case: "hello", value: { agentId: id, host: id, platform: PLATFORM, slots: 1, version: "bench" } });
  const agent: SimAgent = {
    id,
    client,
    welcomed,
    ended: Promise.resolve(),
    send,
    waitForAssign(match, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`agent ${id}: no matching assignment within ${timeoutMs} ms`));
        }, timeoutMs);
        const check = () => {
          const found = assigns.find((x) => match(x.assignment));
          if (found === undefined) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        };
        waiters.add(check);
        check();
      });
    },
    close() {
      clearInterval(heartbeat);
      outbox.close();
    },
  };
  (agent as { ended: Promise<unknown> }).ended = (async () => {
    try {
      for await (const response of client.connect(outbox)) {
        const at = performance.now();
        switch (response.message.case) {
          case "welcome": {
            const every = Math.max(100, durationMs(response.message.value.heartbeatInterval ?? durationFromMs(5000)));
            heartbeat = setInterval(() => send({ case: "heartbeat", value: { running: [...held] } }), every);
            onWelcome();
            break;
          }
          case "assign": {
            const a = response.message.value;
            held.push(a.job!);
            assigns.push({ assignment: a, at });
            if (assigns.length > 1000) assigns.splice(0, 500);
            for (const wake of [...waiters]) wake();
            onAssign?.(agent, a, at);
            break;
          }
          case "cancel": {
            const j = response.message.value.job!;
            const i = held.findIndex((h) => h.pkgname === j.pkgname && h.buildId === j.buildId);
            if (i >= 0) held.splice(i, 1);
            break;
          }
          default:
            break;
        }
      }
      return undefined;
    } catch (e) {
      return e;
    } finally {
      clearInterval(heartbeat);
    }
  })();
  // Keep the held list right for heartbeats when the caller reports a job done.
  const originalSend = agent.send;
  agent.send = (message) => {
    if (message?.case === "finished" || message?.case === "released") {
      const j = (message.value as { job?: RunningJob }).job;
      const i = held.findIndex((h) => h.pkgname === j?.pkgname && h.buildId === j?.buildId);
      if (i >= 0) held.splice(i, 1);
    }
    originalSend(message);
  };
  return agent;
}

async function uploadTiny(agent: SimAgent, job: RunningJob): Promise<BinaryPackage> {
  async function* parts(): AsyncIterable<UploadPart> {
    yield { part: { case: "header", value: { job, agentId: agent.id, fileName: `${job.pkgname}.tgz`, sha256: TINY_SHA256, sizeBytes: BigInt(TINY_PACKAGE.length) } } };
    yield { part: { case: "chunk", value: TINY_PACKAGE } };
  }
  const response = await agent.client.uploadPackage(parts());
  return response.binaryPackage!;
}

// --- services -----------------------------------------------------------------

/** What the throughput runs need of the services, wherever they run. */
interface Endpoints {
  dispatcherUrl: string;
  client: Client<typeof DepGraphService>;
  close(): Promise<void>;
}

interface Stack extends Endpoints {
  depgraph: RunningDepGraph;
  dispatcher: RunningDispatcher;
  dataDir: string;
}

async function startStack(heartbeatIntervalMs: number, heartbeatTimeoutMs: number): Promise<Stack> {
  const depgraph = await startDepGraphServer({
    host: "127.0.0.1", port: 0, packagesDir: "", scanHelper: [], scanBatch: 1, treeDir: ".", historyFile: "", importFile: PRESOLVE,
    defaultPolicy: "critical-path", defaultLeaseMs: 600_000, maxLeaseMs: 600_000, maxLosses: 3, keepFinishedBuilds: 20, logLevel: "silent", natsUrl: "",
      state: "memory",
      stateBucket: "pkgfarm-depgraph",
  }, silent);
  const dataDir = await mkdtemp(join(tmpdir(), "pkgfarm-dispatch-bench-"));
  const dispatcher = await startDispatcherServer({
    host: "127.0.0.1", port: 0, depgraphUrl: depgraph.url, packagesRoot: join(dataDir, "packages"), logsRoot: dataDir,
    heartbeatIntervalMs, heartbeatTimeoutMs, leaseMs: 120_000, logLevel: "silent",
  }, silent);
  const client = createClient(DepGraphService, createPkgfarmTransport(depgraph.url));
  return {
    depgraph, dispatcher, dataDir, client, dispatcherUrl: dispatcher.url,
    async close() {
      await dispatcher.close().catch(() => {});
      await depgraph.close().catch(() => {});
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

const CLI = fileURLToPath(new URL("../services/cli/main.js", import.meta.url));

/** A service process: its output is kept (the tail) to explain a failure to start. */
function spawnService(args: readonly string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk: Buffer) => (output = (output + chunk.toString("utf8")).slice(-8192));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  return { child, output: () => output };
}

/** waitServing polls grpc.health.v1 on url until SERVING, failing if the process exits or timeoutMs passes. */
async function waitServing(name: string, url: string, service: { child: ChildProcess; output: () => string }, timeoutMs: number): Promise<void> {
  const health = createClient(Health, createPkgfarmTransport(url));
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (service.child.exitCode !== null || service.child.signalCode !== null) throw new Error(`${name} exited before it served:\n${service.output()}`);
    const status = await health.check({ service: "" }, { timeoutMs: 1000 }).then((r) => r.status, () => undefined);
    if (status === HealthCheckResponse_ServingStatus.SERVING) return;
    if (performance.now() > deadline) throw new Error(`${name} did not serve within ${timeoutMs} ms:\n${service.output()}`);
    await sleep(100);
  }
}

async function stopService(service: { child: ChildProcess }): Promise<void> {
  const { child } = service;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const hard = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(hard);
}

/** startProcessStack runs depgraph and the dispatcher as `pkgfarm depgraph` and `pkgfarm dispatcher` processes on free ports. */
async function startProcessStack(heartbeatIntervalMs: number, heartbeatTimeoutMs: number): Promise<Endpoints> {
  const [depgraphPort, dispatcherPort] = [await freePort(), await freePort()];
  const depgraphUrl = `http://127.0.0.1:${depgraphPort}`;
  const dispatcherUrl = `http://127.0.0.1:${dispatcherPort}`;
  const dataDir = await mkdtemp(join(tmpdir(), "pkgfarm-dispatch-bench-"));
  const depgraph = spawnService(["depgraph", "--port", String(depgraphPort), "--import", PRESOLVE, "--lease-seconds", "600", "--log-level", "warn"]);
  let dispatcher: ReturnType<typeof spawnService> | undefined;
  try {
    await waitServing("depgraph", depgraphUrl, depgraph, 120_000);
    dispatcher = spawnService(["dispatcher", "--port", String(dispatcherPort), "--depgraph", depgraphUrl, "--data-dir", dataDir,
      "--heartbeat-seconds", String(heartbeatIntervalMs / 1000), "--heartbeat-timeout-seconds", String(heartbeatTimeoutMs / 1000), "--log-level", "warn"]);
    await waitServing("dispatcher", dispatcherUrl, dispatcher, 60_000);
  } catch (e) {
    if (dispatcher !== undefined) await stopService(dispatcher);
    await stopService(depgraph);
    await rm(dataDir, { recursive: true, force: true });
    throw e;
  }
  return {
    dispatcherUrl,
    client: createClient(DepGraphService, createPkgfarmTransport(depgraphUrl)),
    async close() {
      await stopService(dispatcher!);
      await stopService(depgraph);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

// --- 1 and 2: throughput and assignment latency --------------------------------

async function throughput(agents: number, start: (intervalMs: number, timeoutMs: number) => Promise<Endpoints>) {
  const stack = await start(5000, 15_000);
  const { build } = await stack.client.createBuild({ platform: PLATFORM });
  log(`${agents} agent(s): build ${build!.id} with ${build!.totalJobs} jobs`);
  let measuring = false;
  let stopped = false;
  let finishedInWindow = 0;
  let finishedTotal = 0;
  let errors = 0;
  let firstError = "";
  const latencies: number[] = [];
  const freeSince = new Map<string, number>();
  const sims: SimAgent[] = [];
  for (let i = 0; i < agents; i++) {
    sims.push(connectSimAgent(stack.dispatcherUrl, `sim-${agents}-${i}`, (agent, a, at) => {
      const since = freeSince.get(agent.id);
      freeSince.delete(agent.id);
      if (measuring && since !== undefined) latencies.push(at - since);
      void (async () => {
        const job = a.job!;
        try {
          agent.send({ case: "accepted", value: { job } });
          const binaryPackage = await uploadTiny(agent, job);
          if (stopped) return;
          freeSince.set(agent.id, performance.now());
          agent.send({ case: "finished", value: { job, outcome: JobOutcome.SUCCEEDED, duration: durationFromMs(0), binaryPackage } });
          finishedTotal++;
          if (measuring) finishedInWindow++;
        } catch (e) {
          if (stopped) return;
          errors++;
          if (firstError === "") firstError = e instanceof Error ? e.message : String(e);
        }
      })();
    }));
  }
  await Promise.all(sims.map((s) => s.welcomed));
  await sleep(WARMUP_MS);
  measuring = true;
  const started = performance.now();
  await sleep(WINDOW_MS);
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  stopped = true;
  const final = await stack.client.getBuild({ buildId: build!.id });
  for (const s of sims) s.close();
  await stack.close();
  await Promise.all(sims.map((s) => s.ended));
  if (errors > 0) log(`${agents} agent(s): ${errors} job errors, first: ${firstError}`);
  const jobsPerSecond = finishedInWindow / seconds;
  log(`${agents} agent(s): ${finishedInWindow} jobs in ${seconds.toFixed(2)} s = ${jobsPerSecond.toFixed(1)} jobs/s; ${finishedTotal} finished overall, depgraph counts ${JSON.stringify(final.build?.jobCounts)}`);
  latencies.sort((x, y) => x - y);
  return {
    agents,
    jobsPerSecond: sig(jobsPerSecond),
    jobsInWindow: finishedInWindow,
    windowSeconds: sig(seconds),
    assignLatencyMs: { p50: sig(percentile(latencies, 0.5)), p99: sig(percentile(latencies, 0.99)), samples: latencies.length },
    succeededInDepgraph: final.build?.jobCounts["JOB_STATE_SUCCEEDED"] ?? 0,
    totalJobs: build!.totalJobs,
    jobErrors: errors,
  };
}

// --- 3 and 4: requeue after a killed agent, and a big upload -----------------------

/**
 * A buildable package with no dependencies: a build limited to it has exactly
 * one job, so an idle agent gets nothing else. (The shared scan has just one.)
 */
function leafPackage(depgraph: RunningDepGraph): string | undefined {
  for (const pkg of depgraph.depgraph.tree.values()) {
    if (pkg.dependencies.length === 0 && prefailReason(pkg) === "") return pkg.record.pkgname;
  }
  return undefined;
}

interface HoldChild {
  readonly child: ChildProcess;
  readonly held: Promise<{ pkgname: string; buildId: string }>;
}

function spawnHoldAgent(url: string, id: string): HoldChild {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--hold-agent", url, id, PLATFORM], { stdio: ["ignore", "pipe", "inherit"] });
  const held = new Promise<{ pkgname: string; buildId: string }>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      try {
        const m = JSON.parse(line) as { held?: string; buildId?: string };
        if (m.held !== undefined) resolve({ pkgname: m.held, buildId: m.buildId ?? "" });
      } catch {
        // not ours
      }
    });
    child.once("exit", (code, signal) => reject(new Error(`hold agent ${id} exited (${code ?? signal}) before holding a job`)));
  });
  held.catch(() => {});
  return { child, held };
}

async function requeueAndUpload(workDir: string) {
  const stack = await startStack(REQUEUE_HEARTBEAT_INTERVAL_MS, REQUEUE_HEARTBEAT_TIMEOUT_MS);
  const sims: SimAgent[] = [];
  const children: ChildProcess[] = [];
  try {
    // Three one-job builds of the same dependency-free package, one after another.
    const leaf = leafPackage(stack.depgraph);
    if (leaf === undefined) throw new Error("no buildable package without dependencies in the scan");
    const [leafKill, leafStop, leafUpload] = [leaf, leaf, leaf];
    const url = stack.dispatcher.url;

    // SIGKILL: the kernel closes the child's socket, so the dispatcher sees the stream end.
    const { build: killBuild } = await stack.client.createBuild({ platform: PLATFORM, limitTo: [leafKill] });
    log(`requeue: build ${killBuild!.id} limited to ${leafKill} (${killBuild!.totalJobs} job)`);
    const a = spawnHoldAgent(url, "held-by-child-1");
    children.push(a.child);
    const heldA = await withTimeout(a.held, 30_000, "the child agent never got the job");
    const rescuer = connectSimAgent(url, "rescuer-1");
    sims.push(rescuer);
    await rescuer.welcomed;
    await sleep(300);
    const killedAt = performance.now();
    a.child.kill("SIGKILL");
    const got = await rescuer.waitForAssign((x) => x.job!.pkgname === heldA.pkgname && x.job!.buildId === heldA.buildId, 30_000);
    const requeueAfterKillMs = got.at - killedAt;
    log(`requeue: ${heldA.pkgname} back on another agent ${requeueAfterKillMs.toFixed(1)} ms after SIGKILL`);

    // SIGSTOP: the socket stays open; only the heartbeat timeout notices.
    const { build: stopBuild } = await stack.client.createBuild({ platform: PLATFORM, limitTo: [leafStop] });
    const b = spawnHoldAgent(url, "held-by-child-2");
    children.push(b.child);
    const heldB = await withTimeout(b.held, 30_000, "the second child agent never got the job");
    if (heldB.buildId !== stopBuild!.id) log(`requeue: the stopped child holds ${heldB.pkgname} of ${heldB.buildId}, expected build ${stopBuild!.id}`);
    const rescuer2 = connectSimAgent(url, "rescuer-2");
    sims.push(rescuer2);
    await rescuer2.welcomed;
    await sleep(300);
    const stoppedAt = performance.now();
    b.child.kill("SIGSTOP");
    const got2 = await rescuer2.waitForAssign((x) => x.job!.pkgname === heldB.pkgname && x.job!.buildId === heldB.buildId, REQUEUE_HEARTBEAT_TIMEOUT_MS * 5);
    const requeueAfterStopMs = got2.at - stoppedAt;
    b.child.kill("SIGKILL");
    log(`requeue: ${heldB.pkgname} back on another agent ${requeueAfterStopMs.toFixed(1)} ms after SIGSTOP`);

    // Upload: a third idle agent takes a one-job build and uploads 256 MB for it.
    const uploader = connectSimAgent(url, "uploader");
    sims.push(uploader);
    await uploader.welcomed;
    const { build: upBuild } = await stack.client.createBuild({ platform: PLATFORM, limitTo: [leafUpload] });
    const assigned = await uploader.waitForAssign((x) => x.job!.buildId === upBuild!.id, 30_000);
    const job = assigned.assignment.job!;
    uploader.send({ case: "accepted", value: { job } });
    const source = join(workDir, "random.bin");
    await writeRandomFile(source, UPLOAD_BYTES);
    const sha256 = await sha256File(source);
    const copyTarget = join(workDir, "copy.bin");
    const copyStarted = performance.now();
    await pipeline(createReadStream(source, { highWaterMark: UPLOAD_CHUNK_BYTES }), createWriteStream(copyTarget, { highWaterMark: UPLOAD_CHUNK_BYTES }));
    const plainCopySeconds = (performance.now() - copyStarted) / 1000;
    await rm(copyTarget, { force: true });
    const copyFileStarted = performance.now();
    await copyFile(source, copyTarget);
    const copyFileSeconds = (performance.now() - copyFileStarted) / 1000;
    await rm(copyTarget, { force: true });
    async function* parts(): AsyncIterable<UploadPart> {
      yield { part: { case: "header", value: { job, agentId: uploader.id, fileName: `${job.pkgname}.tgz`, sha256, sizeBytes: BigInt(UPLOAD_BYTES) } } };
      for await (const chunk of createReadStream(source, { highWaterMark: UPLOAD_CHUNK_BYTES })) yield { part: { case: "chunk", value: chunk as Buffer } };
    }
    const uploadStarted = performance.now();
    const response = await uploader.client.uploadPackage(parts());
    const uploadSeconds = (performance.now() - uploadStarted) / 1000;
    uploader.send({ case: "finished", value: { job, outcome: JobOutcome.SUCCEEDED, duration: durationFromMs(0), binaryPackage: response.binaryPackage } });
    await rm(source, { force: true });
    const uploadMBps = UPLOAD_BYTES / MB / uploadSeconds;
    const plainCopyMBps = UPLOAD_BYTES / MB / plainCopySeconds;
    log(`upload: ${uploadMBps.toFixed(1)} MB/s; stream copy ${plainCopyMBps.toFixed(1)} MB/s; fs.copyFile ${(UPLOAD_BYTES / MB / copyFileSeconds).toFixed(1)} MB/s`);
    return {
      requeueAfterKillMs: sig(requeueAfterKillMs),
      requeueAfterStopMs: sig(requeueAfterStopMs),
      heartbeatIntervalMs: REQUEUE_HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs: REQUEUE_HEARTBEAT_TIMEOUT_MS,
      uploadBytes: UPLOAD_BYTES,
      uploadMBps: sig(uploadMBps),
      plainCopyMBps: sig(plainCopyMBps),
      uploadToPlainCopyRatio: sig(uploadMBps / plainCopyMBps),
      copyFileMBps: sig(UPLOAD_BYTES / MB / copyFileSeconds),
    };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    for (const s of sims) s.close();
    await stack.close();
    await Promise.all(sims.map((s) => s.ended));
  }
}

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  const handle = await open(path, "w");
  try {
    const block = 4 * 1024 * 1024;
    for (let written = 0; written < bytes; written += block) await handle.write(randomBytes(Math.min(block, bytes - written)));
  } finally {
    await handle.close();
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: UPLOAD_CHUNK_BYTES })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

// --- the child agent ------------------------------------------------------------

async function holdAgent(url: string, id: string): Promise<void> {
  connectSimAgent(url, id, (agent, a) => {
    agent.send({ case: "accepted", value: { job: a.job! } });
    process.stdout.write(JSON.stringify({ held: a.job!.pkgname, buildId: a.job!.buildId }) + "\n");
  });
  await new Promise(() => {});
}

// --- helpers ----------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Three significant digits. */
function sig(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(3));
}

async function main(): Promise<void> {
  if (!existsSync(PRESOLVE)) {
    process.stderr.write(`bench: ${PRESOLVE} is missing; the shared data must sit beside the project\n`);
    process.exit(2);
  }
  const wallStarted = performance.now();
  const processes = process.argv.includes("--processes");
  const runs = [];
  for (const agents of AGENT_COUNTS) runs.push(await throughput(agents, processes ? startProcessStack : startStack));
  let rest: Record<string, unknown> = {};
  if (!processes) {
    const workDir = await mkdtemp(join(tmpdir(), "pkgfarm-dispatch-bench-upload-"));
    try {
      rest = await requeueAndUpload(workDir);
    } catch (e) {
      log(`requeue/upload failed: ${e instanceof Error ? e.stack : String(e)}`);
      rest = { requeueError: e instanceof Error ? e.message : String(e) };
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  }
  const out = {
    mode: processes ? "processes: depgraph and dispatcher each a `pkgfarm` process; simulated agents in the bench process" : "one process",
    node: process.version,
    platform: PLATFORM,
    windowMs: WINDOW_MS,
    warmupMs: WARMUP_MS,
    jobsPerSecond: Object.fromEntries(runs.map((r) => [String(r.agents), r.jobsPerSecond])),
    assignLatencyMs: Object.fromEntries(runs.map((r) => [String(r.agents), r.assignLatencyMs])),
    runs,
    ...rest,
    wallSeconds: sig((performance.now() - wallStarted) / 1000),
    notes: [
      "Each agent count gets a fresh depgraph (shared scan imported) and dispatcher and a full build; simulated agents (1 slot each, one HTTP/2 connection each) accept, upload a 64-byte package and send finished on every assign; jobsPerSecond counts finished reports sent during the window after warm-up.",
      processes
        ? "depgraph (`pkgfarm depgraph --import`, log level warn) and the dispatcher (`pkgfarm dispatcher`, log level warn) run as processes of their own; all simulated agents share the bench process. The requeue and upload figures are not measured in this mode."
        : "depgraph, dispatcher and all simulated agents share one Node process and event loop, so figures include the agents' own CPU cost.",
      "assignLatencyMs is measured on the agent side: from sending finished for the previous job (which frees the slot) to receiving the next assign, over the window. The WatchJobs READY-timestamp method was not used: a full build starts with thousands of READY jobs, so READY-to-assign mostly measures queueing, not dispatch.",
      "requeueAfterKillMs: a child process (this file with --hold-agent) holds the only job of a one-package build; from SIGKILL to an idle in-process agent receiving that job. The kernel closes the dead child's socket, so the stream end is seen at once and the heartbeat timeout is not involved; requeueAfterStopMs is the same with SIGSTOP (socket left open), which only the heartbeat timeout catches; it can come in under heartbeatTimeoutMs because the deadline runs from the child's last heartbeat, up to one heartbeat interval before the SIGSTOP.",
      "Every tiny upload goes through the package store's commit (hash, fsync, rename), so that cost is inside jobsPerSecond and assignLatencyMs.",
      "uploadMBps: one UploadPackage of a 256 MB random file in 256 KiB chunks (SHA-256 computed before timing; the dispatcher hashes, writes and fsyncs); plainCopyMBps is a read/write stream copy of the same file with 256 KiB buffers in the same run; copyFileMBps is fs.copyFile. MB = 10^6 bytes.",
    ],
  };
  process.stdout.write(JSON.stringify(out, null, 1) + "\n");
}

if (process.argv[2] === "--hold-agent") {
  await holdAgent(process.argv[3]!, process.argv[4]!);
} else {
  await main();
  process.exit(0);
}
