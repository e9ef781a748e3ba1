import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { connect } from "nats";
import { pino } from "pino";
import { DepGraphService, JobOutcome, JobState } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment, RunningJob } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { FILES_SUBJECT, META_CONSUMER, META_STREAM, RECORDS_SUBJECT, publishMetaEvent } from "../../services/depgraph/meta-events.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { SMALL_SCAN, startTestDepGraph } from "../support/depgraph-server.js";
import { scrape, type Scrape } from "../support/metrics.js";
import { startNatsServer, type TestNatsServer } from "../support/nats-server.js";
import { connectRawAgent, type RawAgent } from "../support/raw-agent.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const SCAN_ONE = join(ROOT, "examples", "bin", "scan-one.mjs");
const DEPGRAPH = "pkgfarm.v1.DepGraphService";
const DISPATCHER = "pkgfarm.v1.DispatcherService";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** eventually scrapes until check holds, so a test waits for asynchronous effects without fixed sleeps. */
async function eventually(url: string, what: string, check: (s: Scrape) => boolean, timeoutMs = 10_000): Promise<Scrape> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await scrape(url);
    if (check(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The core's name of a wire job state: JOB_STATE_INDIRECT_FAILED is "indirect-failed". */
function stateLabel(state: JobState): string {
  return JobState[state].toLowerCase().replace(/_/g, "-");
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

async function upload(agent: RawAgent, agentId: string, job: RunningJob, data: Buffer): Promise<void> {
  await agent.client.uploadPackage((async function* () {
    yield { part: { case: "header" as const, value: { job, agentId, fileName: `${job.pkgname}.tgz`, sha256: sha256(data), sizeBytes: BigInt(data.length) } } };
    yield { part: { case: "chunk" as const, value: data } };
  })());
}

describe("Prometheus metrics of depgraph and the dispatcher", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;
  let depgraphMetrics: string;
  let dispatcherMetrics: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-metrics-"));
    writeFileSync(join(dir, "scan.txt"), SMALL_SCAN);
    depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt"), metricsPort: 0 });
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1",
      port: 0,
      depgraphUrl: depgraphServer.url,
      packagesRoot: join(dir, "packages"),
      logsRoot: dir,
      heartbeatIntervalMs: 300,
      heartbeatTimeoutMs: 1500,
      leaseMs: 3000,
      logLevel: "silent",
      metricsPort: 0,
    }, pino({ level: "silent" }));
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
    depgraphMetrics = depgraphServer.metricsUrl!;
    dispatcherMetrics = dispatcher.metricsUrl!;
  });
  after(async () => {
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("each service serves its own registry on GET /metrics in the text format; other requests are refused", async () => {
    for (const url of [depgraphMetrics, dispatcherMetrics]) {
      const s = await scrape(url);
      assert.match(s.contentType, /^text\/plain; version=0\.0\.4; charset=utf-8$/);
      assert.ok(s.value("process_cpu_user_seconds_total")! > 0, "process metrics are collected");
      assert.ok(s.value("nodejs_heap_size_used_bytes")! > 0);
      assert.equal((await fetch(`${url}/other`)).status, 404);
      assert.equal((await fetch(`${url}/metrics`, { method: "POST" })).status, 405);
    }
    assert.equal(depgraphServer.metricsUrl === dispatcher.metricsUrl, false);
    const s = await scrape(depgraphMetrics);
    const { packages } = await depgraph.listPackages({});
    assert.equal(s.value("pkgfarm_tree_packages"), packages.length);
    assert.equal(s.value("pkgfarm_tree_revision"), depgraphServer.depgraph.tree.revision);
    assert.equal(s.value("pkgfarm_agents_connected"), undefined, "depgraph has no dispatcher series");
  });

  test("a build through the dispatcher moves the job, agent, slot, latency, upload and RPC series", async () => {
    const platform = "Metrics-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["lang/python313"] });
    const buildId = build!.id;
    // Jobs by state match ListJobs, every state.
    const jobsMatchListJobs = async () => {
      const s = await scrape(depgraphMetrics);
      const { jobs } = await depgraph.listJobs({ buildId });
      for (const state of [JobState.PENDING, JobState.READY, JobState.LEASED, JobState.SUCCEEDED, JobState.FAILED, JobState.INDIRECT_FAILED]) {
        assert.equal(s.value("pkgfarm_jobs", { build: buildId, state: stateLabel(state) }), jobs.filter((j) => j.state === state).length, stateLabel(state));
      }
      return s;
    };
    let s = await jobsMatchListJobs();
    assert.equal(s.value("pkgfarm_jobs", { build: buildId }), 3);
    assert.equal(s.value("pkgfarm_ready_jobs", { platform }), 1);
    assert.equal(s.value("pkgfarm_builds", { state: "running" }), 1);

    // An agent with one slot takes cwrappers. (One slot: with a spare one, a
    // NextReadyJob would be out when it leaves, and the job it gives back
    // could come back to the dispatcher with no agent to take it.)
    const first = connectRawAgent(dispatcher.url, { agentId: "metered", platform, slots: 1 });
    const cwrappers = ((await first.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment).job!;
    s = await scrape(dispatcherMetrics);
    assert.equal(s.value("pkgfarm_agents_connected", { platform }), 1);
    assert.equal(s.value("pkgfarm_agent_slots", { platform }), 1);
    assert.equal(s.value("pkgfarm_jobs_running", { platform }), 1);
    assert.equal(s.value("pkgfarm_agent_slots_free", { platform }), 0);
    assert.equal(s.value("pkgfarm_jobs_assigned_total", { platform }), 1);
    assert.equal((await jobsMatchListJobs()).value("pkgfarm_jobs", { build: buildId, state: "leased" }), 1);
    first.send({ case: "accepted", value: { job: cwrappers } });
    s = await eventually(dispatcherMetrics, "the accept's latency", (x) => x.value("pkgfarm_assignment_latency_seconds_count", { platform }) === 1);
    assert.ok(s.value("pkgfarm_assignment_latency_seconds_sum", { platform })! < 5);

    // It builds cwrappers; gmake becomes ready and is assigned to it.
    const data = Buffer.from("a package of cwrappers");
    await upload(first, "metered", cwrappers, data);
    first.send({ case: "finished", value: { job: cwrappers, outcome: JobOutcome.SUCCEEDED, binaryPackage: { fileName: `${cwrappers.pkgname}.tgz`, sha256: sha256(data), sizeBytes: BigInt(data.length) } } });
    const gmake = ((await first.waitFor((m) => m.message.case === "assign" && m.message.value.job!.pkgname.startsWith("gmake-"))).message.value as JobAssignment).job!;
    s = await scrape(dispatcherMetrics);
    assert.equal(s.value("pkgfarm_package_upload_bytes_total", { platform }), data.length);
    assert.equal(s.value("pkgfarm_package_uploads_total", { platform }), 1);
    assert.equal(s.value("pkgfarm_jobs_finished_total", { platform, outcome: "succeeded" }), 1);
    assert.equal(s.value("pkgfarm_rpc_duration_seconds_count", { service: DISPATCHER, method: "UploadPackage", code: "OK" }), 1);
    await jobsMatchListJobs();

    // The agent leaves holding gmake: connected goes to 0, the job goes back.
    first.close();
    await first.ended;
    s = await eventually(dispatcherMetrics, "the agent gone", (x) => x.value("pkgfarm_agents_connected", { platform }) === 0);
    assert.equal(s.value("pkgfarm_agent_slots", { platform }), 0);
    assert.equal(s.value("pkgfarm_jobs_running", { platform }), 0);
    assert.equal(s.value("pkgfarm_jobs_given_back_total", { reason: "agent_lost" }), 1);
    // The Connect stream is recorded when it ends; it ended by the agent closing its side.
    s = await eventually(dispatcherMetrics, "the Connect stream's duration", (x) => x.value("pkgfarm_rpc_duration_seconds_count", { service: DISPATCHER, method: "Connect" }) === 1);
    assert.equal(s.value("pkgfarm_rpc_duration_seconds_count", { service: DISPATCHER, method: "Connect", code: "OK" }), 1);

    // Another agent fails gmake; python313 is blocked and the build is over.
    const second = connectRawAgent(dispatcher.url, { agentId: "metered-2", platform });
    const again = ((await second.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment).job!;
    assert.equal(again.pkgname, gmake.pkgname);
    assert.equal((await scrape(dispatcherMetrics)).value("pkgfarm_agents_connected", { platform }), 1);
    second.send({ case: "finished", value: { job: again, outcome: JobOutcome.FAILED, failureReason: "exit 1" } });
    s = await eventually(depgraphMetrics, "the build finished", (x) => x.value("pkgfarm_builds", { state: "finished" }) === 1);
    assert.equal(s.value("pkgfarm_jobs", { build: buildId }), undefined, "a finished build's series are gone");
    assert.equal(s.value("pkgfarm_builds", { state: "running" }), 0);
    assert.equal(s.value("pkgfarm_ready_jobs", { platform }), undefined);
    assert.ok(s.value("pkgfarm_rpc_duration_seconds_count", { service: DEPGRAPH, method: "NextReadyJob", code: "OK" })! >= 2);
    assert.ok(s.value("pkgfarm_rpc_duration_seconds_count", { service: DEPGRAPH, method: "MarkDone", code: "OK" })! >= 2);
    assert.equal(s.value("pkgfarm_rpc_duration_seconds_count", { service: DEPGRAPH, method: "ReturnJob", code: "OK" }), 1);
    assert.equal(s.value("pkgfarm_rpc_errors_total", { service: DEPGRAPH }), undefined, "no call failed so far");
    assert.equal((await scrape(dispatcherMetrics)).value("pkgfarm_jobs_finished_total", { platform, outcome: "failed" }), 1);
    second.close();
    await second.ended;
  });

  test("a failed call is counted by its code, for unary and streaming calls alike", async () => {
    await assert.rejects(depgraph.getBuild({ buildId: "no-such-build" }), (e: unknown) => ConnectError.from(e).code === Code.NotFound);
    await assert.rejects(depgraph.createBuild({ platform: "no such/platform" }), (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument);
    await assert.rejects(async () => {
      for await (const _ of depgraph.watchJobs({ buildId: "no-such-build" })) void _;
    }, (e: unknown) => ConnectError.from(e).code === Code.NotFound);
    const s = await scrape(depgraphMetrics);
    assert.equal(s.value("pkgfarm_rpc_errors_total", { service: DEPGRAPH, method: "GetBuild", code: "NotFound" }), 1);
    assert.equal(s.value("pkgfarm_rpc_errors_total", { service: DEPGRAPH, method: "CreateBuild", code: "InvalidArgument" }), 1);
    assert.equal(s.value("pkgfarm_rpc_errors_total", { service: DEPGRAPH, method: "WatchJobs", code: "NotFound" }), 1);
    assert.equal(s.value("pkgfarm_rpc_duration_seconds_count", { service: DEPGRAPH, method: "GetBuild", code: "NotFound" }), 1);
    assert.equal(s.value("pkgfarm_rpc_errors_total", { code: "OK" }), undefined, "OK is not an error");
  });
});

describe("depgraph's NATS lag metric", () => {
  let nats: TestNatsServer;
  let treeDir: string;
  let gate: string;
  let server: RunningDepGraph;

  before(async () => {
    nats = await startNatsServer();
    treeDir = mkdtempSync(join(tmpdir(), "pkgfarm-lag-"));
    cpSync(join(ROOT, "examples", "tree"), treeDir, { recursive: true });
    gate = join(treeDir, "gate");
    writeFileSync(join(treeDir, "scan.txt"), execFileSync(process.execPath, [SCAN_ONE, "--tree", treeDir, "--all"], { encoding: "utf8" }));
    // A scan helper that waits for the gate file: while it waits, the consumer
    // is stuck on one event and the events behind it pile up.
    const helper = ["/bin/sh", "-c", `while [ ! -e '${gate}' ]; do sleep 0.02; done; exec "$0" "$@"`, process.execPath, SCAN_ONE];
    server = await startTestDepGraph({ importFile: join(treeDir, "scan.txt"), natsUrl: nats.url, scanHelper: helper, treeDir, metricsPort: 0 });
  });
  after(async () => {
    writeFileSync(gate, "");
    await server.close();
    await nats.stop();
    rmSync(treeDir, { recursive: true, force: true });
  });

  test("the durable consumer's backlog shows as lag and returns to 0 once it has caught up", async () => {
    const url = server.metricsUrl!;
    const lag = (s: Scrape) => s.value("pkgfarm_nats_consumer_lag", { stream: META_STREAM, consumer: META_CONSUMER });
    await eventually(url, "the consumer to exist", (s) => lag(s) === 0);
    // When each extra package reached the tree: only after the gate opened, if nothing is applied behind the stuck event.
    const appliedAt = new Map<string, number>();
    const offTreeChange = server.depgraph.onTreeChange((n) => n.locations.forEach((l) => appliedAt.set(l, Date.now())));
    const nc = await connect({ servers: nats.url });
    try {
      // The first event blocks in the scan helper; two more wait behind it.
      await publishMetaEvent(nc, FILES_SUBJECT, { files: ["misc/omelette/Makefile"] });
      for (const version of ["1.0", "2.0"]) {
        await publishMetaEvent(nc, RECORDS_SUBJECT, { locations: [`misc/extra${version}`], pbulkIndex: `PKGNAME=extra${version}-1\nPKG_LOCATION=misc/extra${version}\nALL_DEPENDS=\n` });
      }
    } finally {
      await nc.drain();
    }
    const revision = server.depgraph.tree.revision;
    await eventually(url, "a lag of 3", (s) => lag(s) === 3);
    assert.equal(server.depgraph.tree.revision, revision, "nothing applied behind the stuck event");
    const released = Date.now();
    writeFileSync(gate, "");
    // Caught up: the three events and the records event the rescan published.
    const s = await eventually(url, "a lag of 0", (x) => lag(x) === 0 && server.depgraph.tree.get("extra2.0-1") !== undefined);
    offTreeChange();
    for (const l of ["misc/extra1.0", "misc/extra2.0"]) assert.ok(appliedAt.get(l)! >= released, `${l} was applied only once the stuck event was through`);
    assert.ok(s.value("pkgfarm_tree_revision")! > revision);
    assert.equal(s.value("pkgfarm_job_events_buffered"), 0);
  });

  test("job events published are counted; with NATS gone the lag is absent, not stale", async () => {
    const url = server.metricsUrl!;
    const client = createClient(DepGraphService, createPkgfarmTransport(server.url));
    const before = (await scrape(url)).value("pkgfarm_job_events_published_total")!;
    const { build } = await client.createBuild({ platform: "Lag-1.0-x86_64", limitTo: ["pkgtools/cwrappers"] });
    await client.nextReadyJob({ platform: "Lag-1.0-x86_64", agentId: "watcher" });
    const after = (await scrape(url)).value("pkgfarm_job_events_published_total")!;
    assert.ok(after > before, `published ${before} -> ${after}`);
    assert.equal((await scrape(url)).value("pkgfarm_job_events_failed_total"), 0);
    await client.cancelBuild({ buildId: build!.id });
    await nats.kill();
    try {
      const s = await scrape(url);
      assert.equal(s.value("pkgfarm_nats_consumer_lag"), undefined);
      assert.ok(s.value("pkgfarm_tree_packages")! > 0, "the rest of the scrape is there");
    } finally {
      await nats.restart();
    }
    // Back as a number, not necessarily 0: acks from just before a SIGKILL
    // may be lost with it, and those events count as unacked until JetStream
    // redelivers them after the consumer's ack wait.
    await eventually(url, "the lag back after NATS returns", (s) => s.value("pkgfarm_nats_consumer_lag") !== undefined, 20_000);
  });
});
