// Placement end to end: a real depgraph (with a constraints file), a real
// dispatcher and two real agents on loopback with the command executor, one
// small (4 GiB, 2 CPUs) and one big (32 GiB, 8 CPUs), as they say in their
// hellos (--memory, --cpus).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { durationMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import { BuildState, DepGraphService, JobState, WaitKind, type Job } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { create } from "@bufbuild/protobuf";
import { ConnectRequestSchema, DispatcherService, type ConnectRequest } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createBuilderAgent, type BuilderAgent } from "../../services/builder-agent/agent.js";
import { loadAgentConfig, type AgentConfig } from "../../services/builder-agent/config.js";
import { parseConstraints } from "../../services/depgraph/core/constraints.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createChannel, createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";
import { waitForBuild } from "../support/builds.js";

const GiB = 2 ** 30;
const PLATFORM = "Place-1.0-x86_64";
const CONSTRAINTS = `
misc/big-*    memory=16G
misc/heavy-*  memory=8G exclusive=heavy
misc/huge     memory=64G
`;
const PACKAGES = ["big-a", "big-b", "heavy-a", "heavy-b", "small-a", "small-b", "small-c", "small-d", "huge"];

function scan(): string {
  return PACKAGES.map((name) => `PKGNAME=${name}-1.0\nPKG_LOCATION=misc/${name}\nALL_DEPENDS=\nPKG_SKIP_REASON=\nPKG_FAIL_REASON=\nCATEGORIES=misc\n`).join("");
}

// The build command: says its MAKE_JOBS, takes a while (heavy ones longer,
// so an overlap would show), and writes the package.
const BUILD = `
const { writeFileSync } = require("node:fs");
const name = process.env.PKGFARM_PKGNAME;
console.log("make_jobs=" + process.env.PKGFARM_MAKE_JOBS);
setTimeout(() => writeFileSync(process.env.PKGFARM_OUTPUT, "package " + name), name.startsWith("heavy") ? 800 : 150);
`;

describe("placement on loopback", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;
  const agents: BuilderAgent[] = [];
  const runs: Promise<void>[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-placement-"));
    writeFileSync(join(dir, "scan.txt"), scan());
    writeFileSync(join(dir, "build.cjs"), BUILD);
    const { rules, errors } = parseConstraints(CONSTRAINTS);
    assert.deepEqual(errors, []);
    depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt"), constraints: rules });
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 300, heartbeatTimeoutMs: 3000, leaseMs: 10_000, logLevel: "silent",
    }, pino({ level: "silent" }));
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
    for (const [id, memory, cpus] of [["small", "4G", "2"], ["big", "32G", "8"]] as const) {
      const config = loadAgentConfig(["--dispatcher", dispatcher.url, "--id", id, "--platform", PLATFORM, "--slots", "2", "--memory", memory, "--cpus", cpus,
        "--label", `size=${id}`, "--build-command", JSON.stringify([process.execPath, join(dir, "build.cjs")]),
        "--work-dir", join(dir, id, "work"), "--cache-dir", join(dir, id, "cache"), "--tree", dir, "--log-level", "silent"], {});
      assert.ok(!("errors" in config), JSON.stringify(config));
      const agent = createBuilderAgent(config as AgentConfig, pino({ level: "silent" }));
      agents.push(agent);
      runs.push(agent.run());
    }
    const view = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url));
    await eventually("both agents connected", async () => ((await view.listAgents({})).agents.length === 2 ? true : undefined));
  });
  after(async () => {
    for (const agent of agents) agent.stopNow();
    await Promise.all(runs);
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("two agents of different memory get the jobs that fit them; heavy jobs never overlap; each job is told its share of the CPUs", async () => {
    const fits = PACKAGES.filter((p) => p !== "huge");
    const { build } = await depgraph.createBuild({ platform: PLATFORM, limitTo: fits.map((p) => `misc/${p}`) });
    const finished = await waitForBuild(depgraph, build!.id, 30_000);
    assert.equal(finished.state, BuildState.FINISHED);
    const jobs = (await depgraph.listJobs({ buildId: build!.id })).jobs;
    assert.equal(jobs.length, fits.length);
    const byName = new Map<string, Job>(jobs.map((j) => [j.pkgname.replace(/-1\.0$/, ""), j]));
    for (const job of jobs) assert.equal(job.state, JobState.SUCCEEDED, `${job.pkgname}: ${job.reason}`);
    // 16 and 8 GiB jobs fit only the 32 GiB agent.
    for (const name of ["big-a", "big-b", "heavy-a", "heavy-b"]) assert.equal(byName.get(name)!.agentId, "big", `${name} ran on the agent with the memory`);
    assert.ok(jobs.some((j) => j.agentId === "small"), "the small agent built some of the small jobs");
    // At most one heavy job at a time on the big agent: the second was leased after the first had run.
    const [first, second] = ["heavy-a", "heavy-b"].map((n) => byName.get(n)!).sort((a, b) => timestampMs(a.startTime!) - timestampMs(b.startTime!));
    assert.ok(timestampMs(second!.startTime!) >= timestampMs(first!.startTime!) + durationMs(first!.duration!),
      `heavy jobs overlapped: ${first!.pkgname} started ${timestampMs(first!.startTime!)} and ran ${durationMs(first!.duration!)} ms, ${second!.pkgname} started ${timestampMs(second!.startTime!)}`);
    // MAKE_JOBS: each job gets a share of its agent's CPUs (small: 2 CPUs, 2 slots).
    for (const job of jobs) {
      const log = readFileSync(join(dir, job.logRef), "utf8");
      const makeJobs = Number(/make_jobs=(\d+)/.exec(log)?.[1]);
      const cpus = job.agentId === "big" ? 8 : 2;
      assert.ok(makeJobs >= 1 && makeJobs <= cpus, `${job.pkgname} on ${job.agentId} was given MAKE_JOBS ${makeJobs} of ${cpus} CPUs`);
    }
    assert.equal(Number(/make_jobs=(\d+)/.exec(readFileSync(join(dir, byName.get("big-a")!.logRef), "utf8"))?.[1]) >= 4, true, "a job on an idle 8-CPU, 2-slot agent gets at least half");
    // What the builds used is learnt: a small package now needs the memory its build took.
    const { package: small } = await depgraph.getPackage({ pkgname: "small-a-1.0", platform: PLATFORM });
    assert.ok(Number(small!.needs!.memoryBytes) > 0, "the build's peak memory was measured and learnt");
    assert.match(small!.needs!.origin, /memory: learnt from its last build/);
    const { package: big } = await depgraph.getPackage({ pkgname: "big-a-1.0", platform: PLATFORM });
    assert.equal(Number(big!.needs!.memoryBytes), 16 * GiB, "a constraint wins over what was learnt");
  });

  test("a job that fits no agent waits and says why, while the others build", async () => {
    const { build } = await depgraph.createBuild({ platform: PLATFORM, limitTo: ["misc/huge", "misc/small-a", "misc/small-b"] });
    // Wait until everything else is built: huge was passed over, not just not reached yet.
    const jobs = await eventually("the jobs that fit are built", async () => {
      const { jobs } = await depgraph.listJobs({ buildId: build!.id });
      return jobs.filter((j) => !j.pkgname.startsWith("huge")).every((j) => j.state === JobState.SUCCEEDED) ? jobs : undefined;
    }, 30_000);
    const huge = jobs.find((j) => j.pkgname === "huge-1.0")!;
    assert.equal(huge.state, JobState.READY);
    assert.equal(huge.wait?.kind, WaitKind.NO_AGENT_WITH_RESOURCES, "ListJobs says why it waits");
    const why = await depgraph.explainJob({ buildId: build!.id, pkgname: "huge-1.0" });
    assert.equal(why.wait!.kind, WaitKind.NO_AGENT_WITH_RESOURCES);
    assert.equal(why.wait!.detail, "ready; no agent with ≥ 64 GiB memory (the most an agent has is 32 GiB)");
    assert.match(why.summary, /its needs: memory: constraints line 4 \(misc\/huge\)/);
    await depgraph.cancelBuild({ buildId: build!.id });
  });

  test("a heavy job held by the exclusion rule says so while the other runs", async () => {
    const { build } = await depgraph.createBuild({ platform: PLATFORM, limitTo: ["misc/heavy-a", "misc/heavy-b"] });
    // The moment to catch: one heavy job leased on the big agent, the other ready and held.
    const held = await eventually("a heavy job is held by the exclusion rule", async () => {
      const { jobs } = await depgraph.listJobs({ buildId: build!.id });
      const ready = jobs.find((j) => j.state === JobState.READY);
      if (ready === undefined || !jobs.some((j) => j.state === JobState.LEASED)) return undefined;
      const why = await depgraph.explainJob({ buildId: build!.id, pkgname: ready.pkgname });
      return why.wait!.kind === WaitKind.EXCLUSION ? why : undefined;
    }, 10_000);
    assert.equal(held.wait!.detail, "ready; held: at most one job of class heavy per agent, and every agent that fits runs one (big)");
    const finished = await waitForBuild(depgraph, build!.id, 15_000);
    assert.equal(finished.state, BuildState.FINISHED, "both were built in the end");
  });

  test("an agent re-attaching its running job (a restarted dispatcher) says what it was given, and the dispatcher reserves it again", async () => {
    const platform = "Reattach-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["misc/big-b"] });
    // The job as an agent holds it from before: leased under its name.
    const [leased] = (await depgraph.nextReadyJob({ platform, agentId: "reattacher" })).assignments;
    assert.ok(leased !== undefined);
    const outbox = createChannel<ConnectRequest>();
    const job = { buildId: leased.buildId, pkgname: leased.package!.pkgname, leaseId: leased.leaseId, needs: leased.needs, makeJobs: 3 };
    outbox.push(create(ConnectRequestSchema, { message: { case: "hello", value: {
      agentId: "reattacher", platform, slots: 2, cpus: 8, memoryBytes: BigInt(32 * GiB), diskBytes: BigInt(100 * GiB), running: [job], host: "test", version: "test",
    } } }));
    const view = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url));
    const stream = view.connect(outbox)[Symbol.asyncIterator]();
    const first = await stream.next();
    assert.equal(first.value?.message.case, "welcome");
    assert.deepEqual((first.value!.message.value as { kept: { pkgname: string }[] }).kept.map((k) => k.pkgname), ["big-b-1.0"]);
    const agent = (await view.listAgents({})).agents.find((a) => a.hello?.agentId === "reattacher")!;
    assert.equal(Number(agent.memoryReservedBytes), 16 * GiB, "the re-attached job's 16 GiB are reserved again");
    assert.equal(agent.cpusCommitted, 3);
    outbox.close();
    await stream.return?.();
    await depgraph.cancelBuild({ buildId: build!.id });
  });

  test("NextReadyJob with an agent list leases only what fits those agents; an unnamed agent is INVALID_ARGUMENT", async () => {
    const platform = "Direct-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["misc/huge", "misc/big-a", "misc/small-c"] });
    const agent = { agentId: "by-hand", freeSlots: 4, memoryBytes: BigInt(20 * GiB), memoryFreeBytes: BigInt(20 * GiB) };
    const { assignments } = await depgraph.nextReadyJob({ platform, agentId: "me", maxJobs: 4, agents: [agent] });
    assert.deepEqual(assignments.map((a) => a.package!.pkgname).sort(), ["big-a-1.0", "small-c-1.0"], "huge (64 GiB) is passed over");
    assert.equal(Number(assignments.find((a) => a.package!.pkgname === "big-a-1.0")!.needs!.memoryBytes), 16 * GiB, "the assignment carries the job's needs");
    await assert.rejects(depgraph.nextReadyJob({ platform, agentId: "me", agents: [{ freeSlots: 1 }] }),
      (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument && /agents\[0\]\.agent_id is required/.test(ConnectError.from(e).rawMessage));
    await depgraph.cancelBuild({ buildId: build!.id });
  });
});
