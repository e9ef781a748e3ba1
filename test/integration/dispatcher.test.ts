import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import { BuildState, DepGraphService, JobOutcome, JobState } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { AgentState, type JobAssignment } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";
import { connectRawAgent } from "../support/raw-agent.js";
import { waitForBuild } from "../support/builds.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const TREE = join(ROOT, "examples", "tree");
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const BUILD_ONE = [process.execPath, join(ROOT, "examples", "bin", "build-one.mjs")];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function startAgentProcess(dispatcherUrl: string, dir: string, id: string, platform: string, buildCommand: readonly string[]): ChildProcess {
  const child = spawn(process.execPath, [CLI, "agent", "--dispatcher", dispatcherUrl, "--id", id, "--platform", platform, "--tree", TREE,
    "--build-command", JSON.stringify(buildCommand), "--work-dir", join(dir, id, "work"), "--cache-dir", join(dir, id, "cache"), "--log-level", "warn"],
  { stdio: ["ignore", "ignore", "inherit"] });
  return child;
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

describe("dispatcher and agents on loopback", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;
  const children: ChildProcess[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-dispatch-"));
    const scan = execFileSync(process.execPath, [join(ROOT, "examples", "bin", "scan-one.mjs"), "--all"], { encoding: "utf8" });
    writeFileSync(join(dir, "scan.txt"), scan);
    depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt") });
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
    }, pino({ level: "silent" }));
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
  });
  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("three agents build the example tree; one SIGKILLed mid-build loses nothing", async () => {
    const platform = "Three-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform });
    const other = connectRawAgent(dispatcher.url, { agentId: "other-platform", platform: "Other-1.0-x86_64" });
    const ids = ["a1", "a2", "a3"];
    for (const id of ids) children.push(startAgentProcess(dispatcher.url, dir, id, platform, BUILD_ONE));
    const victim = children[children.length - 2]!;
    // Kill a2 while it holds a job.
    let killedJob = "";
    const holding = Date.now() + 30_000;
    while (killedJob === "") {
      assert.ok(Date.now() < holding, "a2 held a job within 30 s");
      const { agents } = await other.client.listAgents({});
      const a2 = agents.find((a) => a.hello?.agentId === "a2");
      if (a2 !== undefined && a2.running.length > 0) {
        killedJob = a2.running[0]!.pkgname;
        victim.kill("SIGKILL");
      } else {
        await sleep(5);
      }
    }
    const finished = await waitForBuild(depgraph, build!.id, 60_000);
    assert.equal(finished.state, BuildState.FINISHED);
    const counts = finished.jobCounts;
    assert.deepEqual(
      { succeeded: counts.JOB_STATE_SUCCEEDED, failed: counts.JOB_STATE_FAILED, prefailed: counts.JOB_STATE_PREFAILED, indirect: counts.JOB_STATE_INDIRECT_FAILED, cycle: counts.JOB_STATE_CYCLE },
      { succeeded: 29, failed: 1, prefailed: 1, indirect: 4, cycle: 2 },
    );
    const jobs = (await depgraph.listJobs({ buildId: build!.id })).jobs;
    const retried = jobs.find((j) => j.pkgname === killedJob)!;
    assert.ok(retried.attempts >= 2, `${killedJob} was rebuilt after the kill (attempts ${retried.attempts})`);
    assert.notEqual(retried.agentId, "");
    // Every built package is in the platform's All/, whole.
    const all = join(dir, "packages", platform, "All");
    const files = readdirSync(all);
    assert.equal(files.filter((f) => f.endsWith(".tgz")).length, 29);
    assert.deepEqual(files.filter((f) => f.startsWith(".upload-")), []);
    for (const job of jobs.filter((j) => j.state === JobState.SUCCEEDED)) {
      assert.equal(sha256(readFileSync(join(all, `${job.pkgname}.tgz`))), job.binaryPackage!.sha256);
    }
    // The failure's log is there and says why.
    const bison = jobs.find((j) => j.pkgname.startsWith("bison-"))!;
    assert.match(readFileSync(join(dir, bison.logRef), "utf8"), /cannot find -lfl/);
    // The agent of another platform got nothing.
    assert.deepEqual(other.received.map((m) => m.message.case), ["welcome"]);
    other.close();
  });

  test("reports and uploads for jobs the agent does not hold are refused; a corrupt upload fails the job and leaves nothing", async () => {
    const platform = "Corrupt-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const agent = connectRawAgent(dispatcher.url, { agentId: "corrupter", platform });
    const assigned = (await agent.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment;
    const job = assigned.job!;
    const data = Buffer.from("not really a package");
    const upload = (header: { pkgname: string; leaseId: string; sha: string }) => agent.client.uploadPackage((async function* () {
      yield { part: { case: "header" as const, value: { job: { buildId: job.buildId, pkgname: header.pkgname, leaseId: header.leaseId }, agentId: "corrupter", fileName: `${header.pkgname}.tgz`, sha256: header.sha, sizeBytes: BigInt(data.length) } } };
      yield { part: { case: "chunk" as const, value: data } };
    })());
    await assert.rejects(upload({ pkgname: job.pkgname, leaseId: "forged", sha: sha256(data) }), (e: unknown) => ConnectError.from(e).code === Code.FailedPrecondition);
    await assert.rejects(upload({ pkgname: "gmake-4.4.1", leaseId: job.leaseId, sha: sha256(data) }), (e: unknown) => ConnectError.from(e).code === Code.FailedPrecondition);
    // A finished report for a job it does not hold changes nothing, and the agent is told so.
    agent.send({ case: "finished", value: { job: { buildId: job.buildId, pkgname: job.pkgname, leaseId: "forged" }, outcome: JobOutcome.FAILED } });
    await agent.waitFor((m) => m.message.case === "refused" && m.message.value.job?.leaseId === "forged");
    assert.equal((await depgraph.listJobs({ buildId: build!.id })).jobs.find((j) => j.pkgname === job.pkgname)!.state, JobState.LEASED);
    // The corrupt upload: wrong digest.
    await assert.rejects(upload({ pkgname: job.pkgname, leaseId: job.leaseId, sha: "0".repeat(64) }), (e: unknown) => ConnectError.from(e).code === Code.DataLoss);
    await agent.waitFor((m) => m.message.case === "cancel");
    const all = join(dir, "packages", platform, "All");
    assert.deepEqual(existsSync(all) ? readdirSync(all) : [], []);
    const finished = await waitForBuild(depgraph, build!.id, 5000);
    const failed = (await depgraph.listJobs({ buildId: finished.id })).jobs[0]!;
    assert.equal(failed.state, JobState.FAILED);
    assert.match(failed.reason, /corrupt/);
    agent.close();
  });

  test("a drained agent finishes its job and gets no more; a lost stream gives its job back at once", async () => {
    const platform = "Drain-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["devel/gmake"] });
    const agent = connectRawAgent(dispatcher.url, { agentId: "drainee", platform });
    const first = (await agent.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment;
    const dispatcherClient = agent.client;
    const drained = await dispatcherClient.drainAgent({ agentId: "drainee" });
    assert.equal(drained.agent!.state, AgentState.DRAINING);
    await agent.waitFor((m) => m.message.case === "drain");
    await assert.rejects(dispatcherClient.drainAgent({ agentId: "nobody" }), (e: unknown) => ConnectError.from(e).code === Code.NotFound);
    // Finish the job properly: upload, then report.
    const data = Buffer.from(`package ${first.job!.pkgname}`);
    await dispatcherClient.uploadPackage((async function* () {
      yield { part: { case: "header" as const, value: { job: first.job, agentId: "drainee", fileName: `${first.job!.pkgname}.tgz`, sha256: sha256(data), sizeBytes: BigInt(data.length) } } };
      yield { part: { case: "chunk" as const, value: data } };
    })());
    agent.send({ case: "finished", value: { job: first.job, outcome: JobOutcome.SUCCEEDED, binaryPackage: { fileName: `${first.job!.pkgname}.tgz`, sha256: sha256(data), sizeBytes: BigInt(data.length) } } });
    // The next package is ready now, but the draining agent gets nothing: a
    // fresh agent, connected while the drained one still is, takes it.
    const ready = await eventually("the next package ready", async () => {
      const jobs = (await depgraph.listJobs({ buildId: build!.id, states: [JobState.READY] })).jobs.map((j) => j.pkgname);
      return jobs.length === 1 ? jobs : undefined;
    });
    const second = connectRawAgent(dispatcher.url, { agentId: "leaver", platform });
    const taken = (await second.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment;
    assert.equal(taken.job!.pkgname, ready[0]);
    assert.equal(agent.received.filter((m) => m.message.case === "assign").length, 1);
    agent.close();
    await agent.ended;
    // When the fresh agent's stream breaks, the job is ready again at once.
    assert.equal((await depgraph.listJobs({ buildId: build!.id })).jobs.find((j) => j.pkgname === ready[0])!.state, JobState.LEASED);
    const leaving = Date.now();
    second.close();
    for (;;) {
      const state = (await depgraph.listJobs({ buildId: build!.id })).jobs.find((j) => j.pkgname === ready[0])!.state;
      if (state === JobState.READY) break;
      assert.ok(Date.now() - leaving < 1000, "given back within a second of the stream ending");
      await sleep(10);
    }
    await depgraph.cancelBuild({ buildId: build!.id });
  });

  test("cancelling a build kills the build command's whole process group on the agent", async () => {
    const platform = "Cancel-1.0-x86_64";
    const pidFile = join(dir, "grandchild.pid");
    const hang = ["/bin/sh", "-c", `sleep 300 & echo $! > ${pidFile}; wait`];
    children.push(startAgentProcess(dispatcher.url, dir, "canceller", platform, hang));
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const deadline = Date.now() + 10_000;
    while (!existsSync(pidFile) || readFileSync(pidFile, "utf8").trim() === "") {
      assert.ok(Date.now() < deadline, "the build command started");
      await sleep(20);
    }
    const pid = Number(readFileSync(pidFile, "utf8"));
    assert.doesNotThrow(() => process.kill(pid, 0));
    await depgraph.cancelBuild({ buildId: build!.id });
    // The lease renewal (every lease/3 = 1 s) learns the lease is gone and cancels on the agent.
    const gone = Date.now() + 8000;
    for (;;) {
      let alive = true;
      try {
        process.kill(pid, 0);
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        if (/^\d+ \([^)]*\) Z/.test(stat)) alive = false;
      } catch {
        alive = false;
      }
      if (!alive) break;
      assert.ok(Date.now() < gone, `grandchild ${pid} still alive after cancel`);
      await sleep(50);
    }
  });

  test("a job keeps running across a dispatcher restart and is re-attached, not rebuilt", async () => {
    const platform = "Restart-1.0-x86_64";
    const config = {
      host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 300, heartbeatTimeoutMs: 1500, leaseMs: 3000, logLevel: "silent",
    };
    let first: RunningDispatcher | undefined = await startDispatcherServer(config, pino({ level: "silent" }));
    const port = first.port;
    const slow = ["/bin/sh", "-c", 'sleep 1.5; exec "$0" "$@"', ...BUILD_ONE];
    const agent = startAgentProcess(first.url, dir, "survivor", platform, slow);
    children.push(agent);
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    await eventually("the survivor holding its job", async () => (first!.registry.get("survivor")?.jobs.size === 1 ? true : undefined), 20_000);
    await first.close();
    first = undefined;
    const second = await startDispatcherServer({ ...config, port }, pino({ level: "silent" }));
    try {
      const finished = await waitForBuild(depgraph, build!.id, 20_000);
      const [job] = (await depgraph.listJobs({ buildId: finished.id })).jobs;
      assert.equal(job!.state, JobState.SUCCEEDED, job!.reason);
      assert.equal(job!.attempts, 1, "finished by the first attempt, re-attached to the new dispatcher");
    } finally {
      agent.kill("SIGKILL");
      await second.close();
    }
  });

  test("an agent that stops heartbeating is cut off and its job goes back", async () => {
    const platform = "Silent-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const silent = connectRawAgent(dispatcher.url, { agentId: "silent", platform });
    const assigned = (await silent.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment;
    const started = Date.now();
    const ended = await silent.ended;
    const waited = Date.now() - started;
    assert.equal(ConnectError.from(ended).code, Code.DeadlineExceeded);
    assert.ok(waited >= 1000 && waited < 3000, `cut off after ${waited} ms (timeout 1500 ms)`);
    const job = (await depgraph.listJobs({ buildId: build!.id })).jobs.find((j) => j.pkgname === assigned.job!.pkgname)!;
    assert.equal(job.state, JobState.READY);
    await depgraph.cancelBuild({ buildId: build!.id });
  });

  test("ReadLog returns a job's log and follows it while the job runs", async () => {
    const platform = "Log-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const agent = connectRawAgent(dispatcher.url, { agentId: "logger", platform });
    const { job } = (await agent.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment;
    agent.send({ case: "log", value: { job, data: Buffer.from("first line\n") } });
    await sleep(100);
    const follower = (async () => {
      let text = "";
      for await (const piece of agent.client.readLog({ buildId: build!.id, pkgname: job!.pkgname, follow: true })) text += Buffer.from(piece.data).toString();
      return text;
    })();
    await sleep(100);
    agent.send({ case: "log", value: { job, data: Buffer.from("second line\n") } });
    agent.send({ case: "finished", value: { job, outcome: JobOutcome.FAILED, failureReason: "exited with status 1" } });
    const text = await follower;
    assert.match(text, /attempt 1 on agent logger[\s\S]*first line\nsecond line\n/);
    let whole = "";
    for await (const piece of agent.client.readLog({ buildId: build!.id, pkgname: job!.pkgname })) whole += Buffer.from(piece.data).toString();
    assert.equal(whole, text);
    await assert.rejects(async () => {
      for await (const _ of agent.client.readLog({ buildId: build!.id, pkgname: "../../etc/passwd" })) void _;
    }, (e: unknown) => ConnectError.from(e).code === Code.InvalidArgument);
    await assert.rejects(async () => {
      for await (const _ of agent.client.readLog({ buildId: build!.id, pkgname: "nothing-1.0" })) void _;
    }, (e: unknown) => ConnectError.from(e).code === Code.NotFound);
    agent.close();
  });

  test("SIGTERM drains an agent: its job finishes, it takes no more, it exits 0", async () => {
    const platform = "Term-1.0-x86_64";
    const slow = ["/bin/sh", "-c", 'sleep 1; exec "$0" "$@"', ...BUILD_ONE];
    const agent = startAgentProcess(dispatcher.url, dir, "terminated", platform, slow);
    children.push(agent);
    const exited = new Promise<number | null>((resolve) => agent.once("exit", (code) => resolve(code)));
    const { build } = await depgraph.createBuild({ platform, limitTo: ["devel/cc-example"] });
    await eventually("the agent holding its job", async () => (dispatcher.registry.get("terminated")?.jobs.size === 1 ? true : undefined), 20_000);
    agent.kill("SIGTERM");
    assert.equal(await exited, 0);
    const jobs = (await depgraph.listJobs({ buildId: build!.id })).jobs;
    const states = Object.fromEntries(jobs.map((j) => [j.pkgname, JobState[j.state]]));
    assert.deepEqual(states, { "cwrappers-20220403": "SUCCEEDED", "cc-example-1.0": "READY" });
    await depgraph.cancelBuild({ buildId: build!.id });
  });
});
