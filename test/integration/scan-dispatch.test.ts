import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import {
  AssignmentSchema,
  DepGraphService,
  file_pkgfarm_v1_depgraph,
  JobOutcome,
  ScanScope,
  ScanState,
  type Assignment,
  type JobResult,
  type NextReadyJobRequest,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment, Refusal } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport, startGrpcService, type GrpcServiceServer } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";
import { scrape } from "../support/metrics.js";
import { connectRawAgent, type RawAgent } from "../support/raw-agent.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
const assignments = (agent: RawAgent) => agent.received.filter((m) => m.message.case === "assign").map((m) => m.message.value as JobAssignment);
const nthAssignment = async (agent: RawAgent, n: number) => {
  await agent.waitFor(() => assignments(agent).length >= n);
  return assignments(agent)[n - 1]!;
};
const dispatcherConfig = (depgraphUrl: string, dir: string) => ({
  host: "127.0.0.1", port: 0, depgraphUrl, packagesRoot: join(dir, "packages"), logsRoot: dir,
  heartbeatIntervalMs: 300, heartbeatTimeoutMs: 5000, leaseMs: 3000, logLevel: "silent", metricsPort: 0,
});

const COW = `PKGNAME=cow-1.0
PKG_LOCATION=misc/cow
ALL_DEPENDS=
PKG_SKIP_REASON=
PKG_FAIL_REASON=
CATEGORIES=misc
`;

describe("scan jobs through the dispatcher, against depgraph", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-scan-dispatch-"));
    depgraphServer = await startTestDepGraph();
    dispatcher = await startDispatcherServer(dispatcherConfig(depgraphServer.url, dir), pino({ level: "silent" }));
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
  });
  after(async () => {
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a scan job goes only to an agent that scans, its output reaches the platform's tree, and metrics count it as a scan", async () => {
    const platform = "Scan-1.0-x86_64";
    // Connected first and with the most free slots: a build would go to it, a scan must not.
    const builder = connectRawAgent(dispatcher.url, { agentId: "no-scans", platform, slots: 4 });
    await builder.waitFor((m) => m.message.case === "welcome");
    const scanner = connectRawAgent(dispatcher.url, { agentId: "scanner", platform, scans: true });
    await scanner.waitFor((m) => m.message.case === "welcome");
    const { scan } = await depgraph.startScan({ platform, scope: ScanScope.LOCATIONS, locations: ["misc/cow"] });
    const assigned = await nthAssignment(scanner, 1);
    assert.ok(assigned.scan !== undefined, "the assignment carries the scan task");
    assert.equal(assigned.job!.buildId, scan!.id);
    assert.equal(assigned.job!.pkgname, assigned.scan.jobName);
    assert.equal(assigned.location, "");
    assert.deepEqual(assigned.scan.locations.map((l) => l.location), ["misc/cow"]);
    assert.equal(assigned.platform, platform);
    assert.equal(dispatcher.registry.get("no-scans")!.jobs.size, 0);
    assert.equal(dispatcher.registry.get("scanner")!.jobs.get(`${scan!.id}\u0000${assigned.scan.jobName}`)?.kind, "scan");
    const job = assigned.job!;
    scanner.send({ case: "accepted", value: { job } });
    scanner.send({ case: "log", value: { job, data: Buffer.from("bmake pbulk-index in misc/cow\n"), phase: "scan" } });
    scanner.send({ case: "finished", value: { job, outcome: JobOutcome.SUCCEEDED, duration: durationFromMs(40),
      scanOutput: { locations: [{ location: "misc/cow", pbulkIndex: COW, duration: durationFromMs(40) }] } } });
    const done = await eventually("the scan to finish", async () => {
      const s = (await depgraph.getScan({ scanId: scan!.id })).scan!;
      return s.state !== ScanState.RUNNING ? s : undefined;
    }, 10_000);
    assert.equal(done.state, ScanState.FINISHED);
    assert.equal(done.records, 1);
    const { package: cow } = await depgraph.getPackage({ pkgname: "cow-1.0", platform });
    assert.equal(cow!.location, "misc/cow");
    // The scan job's log, whole and for its phase.
    let whole = "";
    for await (const piece of scanner.client.readLog({ buildId: scan!.id, pkgname: job.pkgname })) whole += Buffer.from(piece.data).toString();
    assert.match(whole, /scan job .* \(1 location\(s\)\) attempt 1 on agent scanner[\s\S]*bmake pbulk-index in misc\/cow/);
    const m = await scrape(dispatcher.metricsUrl!);
    assert.equal(m.value("pkgfarm_jobs_assigned_total", { platform, kind: "scan" }), 1);
    assert.equal(m.value("pkgfarm_jobs_finished_total", { platform, kind: "scan", outcome: "succeeded" }), 1);
    builder.close();
    scanner.close();
    await Promise.all([builder.ended, scanner.ended]);
  });

  test("with no agent that scans, scan jobs stay in depgraph; the first one that connects gets them", async () => {
    const platform = "NoScanner-1.0-x86_64";
    const builder = connectRawAgent(dispatcher.url, { agentId: "builds-only", platform });
    await builder.waitFor((m) => m.message.case === "welcome");
    const { scan } = await depgraph.startScan({ platform, scope: ScanScope.LOCATIONS, locations: ["misc/cow"] });
    // The builder's free slot is being pulled for, without include_scan_jobs: the scan job waits.
    const scanner = connectRawAgent(dispatcher.url, { agentId: "late-scanner", platform, scans: true });
    const assigned = await nthAssignment(scanner, 1);
    assert.equal(assigned.job!.buildId, scan!.id);
    assert.deepEqual(assignments(builder), []);
    assert.equal(assigned.attempt, 1, "it was never handed out and given back");
    builder.close();
    scanner.close();
    await Promise.all([builder.ended, scanner.ended]);
  });
});

/**
 * A stand-in DepGraphService: hands out scripted assignments and records
 * what the dispatcher reports, for what today's depgraph cannot take yet
 * (JOB_OUTCOME_UP_TO_DATE) and to see exactly what is relayed.
 */
async function startStandInDepGraph(): Promise<{ server: GrpcServiceServer; queue: Assignment[]; results: JobResult[]; pulls: NextReadyJobRequest[] }> {
  const queue: Assignment[] = [];
  const results: JobResult[] = [];
  const pulls: NextReadyJobRequest[] = [];
  const server = await startGrpcService({
    service: DepGraphService,
    files: [file_pkgfarm_v1_depgraph],
    host: "127.0.0.1",
    port: 0,
    register: (router) => router.service(DepGraphService, {
      async nextReadyJob(request, ctx) {
        pulls.push(request);
        const deadline = Date.now() + 2000;
        while (queue.length === 0 && Date.now() < deadline && !ctx.signal.aborted) await new Promise((r) => setTimeout(r, 20));
        return { assignments: queue.splice(0, request.maxJobs || 1) };
      },
      markDone(request) {
        results.push(...request.results);
        return { newlyReady: 0, newlyBlocked: 0 };
      },
      renewLease(request) {
        return { renewed: request.leases, lost: [] };
      },
      returnJob() {
        return { requeued: 0, failed: 0 };
      },
    }),
  });
  return { server, queue, results, pulls };
}

describe("what the dispatcher forwards and relays, against a stand-in depgraph", () => {
  let dir: string;
  let standIn: Awaited<ReturnType<typeof startStandInDepGraph>>;
  let dispatcher: RunningDispatcher;
  const platform = "Relay-1.0-x86_64";

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-relay-"));
    standIn = await startStandInDepGraph();
    dispatcher = await startDispatcherServer(dispatcherConfig(standIn.server.url, dir), pino({ level: "silent" }));
  });
  after(async () => {
    await dispatcher.close();
    await standIn.server.shutdown(undefined, 1000);
    rmSync(dir, { recursive: true, force: true });
  });

  const build = (pkgname: string, extra: { dependencies?: string[]; rebuildReason?: string; incremental?: boolean } = {}) => create(AssignmentSchema, {
    buildId: "b1", leaseId: `lease-${pkgname}`, attempt: 1,
    package: { pkgname, location: `misc/${pkgname.replace(/-[^-]*$/, "")}`, scanVars: { USE_DESTDIR: "yes", BOOTSTRAP_PKG: "" } },
    ...extra,
  });
  const resultFor = (pkgname: string) => eventually(`the result of ${pkgname}`, async () => standIn.results.find((r) => r.pkgname === pkgname));

  test("an assignment carries scan_vars, dependencies, rebuild_reason and incremental; a pull asks for scan jobs only with an agent that scans", async () => {
    const agent = connectRawAgent(dispatcher.url, { agentId: "relay-1", platform });
    standIn.queue.push(build("tea-1.0", { dependencies: ["water-1.0", "leaf-2.0"], rebuildReason: "rebuilt: dependency water-1.0 was rebuilt", incremental: true }));
    const a = await nthAssignment(agent, 1);
    assert.deepEqual({ ...a.scanVars }, { USE_DESTDIR: "yes", BOOTSTRAP_PKG: "" });
    assert.deepEqual(a.dependencies, ["water-1.0", "leaf-2.0"]);
    assert.equal(a.rebuildReason, "rebuilt: dependency water-1.0 was rebuilt");
    assert.equal(a.incremental, true);
    assert.equal(a.location, "misc/tea");
    const mine = standIn.pulls.filter((p) => p.platform === platform);
    assert.ok(mine.length > 0 && mine.every((p) => !p.includeScanJobs), "no scan jobs asked for without an agent that scans");
    const scanner = connectRawAgent(dispatcher.url, { agentId: "relay-scanner", platform, scans: true });
    await eventually("a pull with include_scan_jobs", async () => (standIn.pulls.some((p) => p.platform === platform && p.includeScanJobs) ? true : undefined));
    // The failed phase and decision go to MarkDone as the agent said them.
    agent.send({ case: "finished", value: { job: a.job, outcome: JobOutcome.FAILED, failureReason: "configure failed", failedPhase: "configure", decision: "rebuilt: dependency water-1.0 was rebuilt" } });
    const r = await resultFor("tea-1.0");
    assert.deepEqual([r.outcome, r.failedPhase, r.decision, r.agentId, r.failureReason], [JobOutcome.FAILED, "configure", "rebuilt: dependency water-1.0 was rebuilt", "relay-1", "configure failed"]);
    agent.close();
    scanner.close();
    await Promise.all([agent.ended, scanner.ended]);
  });

  test("up to date is relayed with the package the dispatcher has; without one it is refused", async () => {
    const all = join(dir, "packages", platform, "All");
    mkdirSync(all, { recursive: true });
    const data = Buffer.from("the package built last time");
    writeFileSync(join(all, "jam-1.0.tgz"), data);
    const agent = connectRawAgent(dispatcher.url, { agentId: "relay-2", platform, slots: 2 });
    standIn.queue.push(build("jam-1.0", { incremental: true }), build("toast-1.0", { incremental: true }));
    const [jam, toast] = [await nthAssignment(agent, 1), await nthAssignment(agent, 2)].sort((x, y) => x.job!.pkgname.localeCompare(y.job!.pkgname));
    agent.send({ case: "finished", value: { job: jam!.job, outcome: JobOutcome.UP_TO_DATE, decision: "up to date" } });
    const r = await resultFor("jam-1.0");
    assert.equal(r.outcome, JobOutcome.UP_TO_DATE);
    assert.equal(r.decision, "up to date");
    assert.deepEqual([r.binaryPackage?.fileName, r.binaryPackage?.sha256, r.binaryPackage?.sizeBytes], ["jam-1.0.tgz", sha256(data), BigInt(data.length)]);
    agent.send({ case: "finished", value: { job: toast!.job, outcome: JobOutcome.UP_TO_DATE, decision: "up to date" } });
    const refused = (await agent.waitFor((m) => m.message.case === "refused" && m.message.value.job?.pkgname === "toast-1.0")).message.value as Refusal;
    assert.equal(refused.code, "FAILED_PRECONDITION");
    assert.match(refused.reason, /has no toast-1\.0\.tgz/);
    assert.equal(standIn.results.some((x) => x.pkgname === "toast-1.0"), false, "no result went to depgraph for it");
    assert.equal(dispatcher.registry.get("relay-2")!.jobs.size, 1, "the refused job is still held, to be given back by the agent");
    agent.close();
    await agent.ended;
  });

  test("a phase's log is read while it grows, ends when the next phase starts, and is read whole after the job", async () => {
    const agent = connectRawAgent(dispatcher.url, { agentId: "relay-3", platform });
    standIn.queue.push(build("soup-1.0"));
    const { job } = await nthAssignment(agent, 1);
    const read = async (phase: string, follow: boolean) => {
      let text = "";
      for await (const piece of agent.client.readLog({ buildId: "b1", pkgname: "soup-1.0", phase, follow })) text += Buffer.from(piece.data).toString();
      return text;
    };
    agent.send({ case: "log", value: { job, data: Buffer.from("checking for cc... cc\n"), phase: "configure" } });
    await eventually("the configure log", async () => ((await read("configure", false)).includes("checking for cc") ? true : undefined));
    const following = read("configure", true);
    agent.send({ case: "log", value: { job, data: Buffer.from("config.status: creating Makefile\n"), phase: "configure" } });
    agent.send({ case: "log", value: { job, data: Buffer.from("=== agent line without a phase\n") } });
    agent.send({ case: "log", value: { job, data: Buffer.from("cc -c soup.c\n"), phase: "build" } });
    const configure = await following;
    assert.equal(configure, "=== soup-1.0 (misc/soup) attempt 1 on agent relay-3 ===\nchecking for cc... cc\nconfig.status: creating Makefile\n");
    const buildFollower = read("build", true);
    agent.send({ case: "log", value: { job, data: Buffer.from("cc -o soup soup.o\n"), phase: "build" } });
    agent.send({ case: "finished", value: { job, outcome: JobOutcome.FAILED, failureReason: "exited 1", failedPhase: "build" } });
    assert.equal(await buildFollower, "=== soup-1.0 (misc/soup) attempt 1 on agent relay-3 ===\ncc -c soup.c\ncc -o soup soup.o\n");
    assert.equal(await read("build", false), await read("build", true));
    const whole = await read("", false);
    assert.equal(whole, "=== soup-1.0 (misc/soup) attempt 1 on agent relay-3 ===\nchecking for cc... cc\nconfig.status: creating Makefile\n=== agent line without a phase\ncc -c soup.c\ncc -o soup soup.o\n");
    await assert.rejects(read("../x", false), /phase/);
    await assert.rejects(read("install", false), /no install log/);
    agent.close();
    await agent.ended;
  });
});
