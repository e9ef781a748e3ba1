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
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import { BuildState, DepGraphService, JobOutcome, JobState } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import {
  ConnectResponseSchema,
  DispatcherService,
  file_pkgfarm_v1_dispatcher,
  type ConnectRequest,
  type ConnectResponse,
  type JobAssignment,
  type Refusal,
} from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createBuilderAgent } from "../../services/builder-agent/agent.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createChannel, createPkgfarmTransport, startGrpcService } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";
import { connectRawAgent, type RawAgent } from "../support/raw-agent.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const HEARTBEAT_TIMEOUT_MS = 3000;

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
const assignmentOf = async (agent: RawAgent) => (await agent.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment;
const refusalOf = (agent: RawAgent, message: string, pkgname: string) =>
  agent.waitFor((m) => m.message.case === "refused" && m.message.value.message === message && m.message.value.job?.pkgname === pkgname)
    .then((m) => m.message.value as Refusal);

describe("nothing stuck: refusals, heartbeats, uploads, who built it", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-stuck-"));
    const scan = execFileSync(process.execPath, [join(ROOT, "examples", "bin", "scan-one.mjs"), "--all"], { encoding: "utf8" });
    writeFileSync(join(dir, "scan.txt"), scan);
    depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt") });
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      // Long heartbeat timeout, so a job given back "at once" is told apart from a lost agent.
      heartbeatIntervalMs: 300, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, leaseMs: 3000, logLevel: "silent",
    }, pino({ level: "silent" }));
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
  });
  after(async () => {
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const jobState = async (buildId: string, pkgname: string) => (await depgraph.listJobs({ buildId })).jobs.find((j) => j.pkgname === pkgname)!;

  test("a refused finished reaches the agent with its code; the agent's give-back then requeues the job", async () => {
    const platform = "Refuse-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const agent = connectRawAgent(dispatcher.url, { agentId: "refused", platform });
    const { job } = await assignmentOf(agent);
    agent.send({ case: "accepted", value: { job } });
    // Success without an upload: refused, and the agent is told.
    agent.send({ case: "finished", value: { job, outcome: JobOutcome.SUCCEEDED, binaryPackage: { fileName: `${job!.pkgname}.tgz`, sha256: "ab".repeat(32), sizeBytes: 3n } } });
    const refused = await refusalOf(agent, "finished", job!.pkgname);
    assert.equal(refused.code, "FAILED_PRECONDITION");
    assert.match(refused.reason, /without a matching UploadPackage/);
    assert.equal(refused.job!.leaseId, job!.leaseId);
    // A report for a lease the agent does not hold is refused too, naming that lease.
    agent.send({ case: "finished", value: { job: { ...job!, leaseId: "forged" }, outcome: JobOutcome.FAILED } });
    const forged = await agent.waitFor((m) => m.message.case === "refused" && m.message.value.job?.leaseId === "forged");
    assert.match((forged.message.value as Refusal).reason, /does not hold job/);
    assert.equal((await jobState(build!.id, job!.pkgname)).state, JobState.LEASED);
    // What the real agent does with a refused success: give the job back.
    agent.send({ case: "released", value: { job, reason: "result refused" } });
    // Back in the queue, it comes straight back to the only agent of its platform, under a new lease.
    const again = (await agent.waitFor((m) => m.message.case === "assign" && m.message.value.attempt === 2, 5000)).message.value as JobAssignment;
    assert.notEqual(again.job!.leaseId, job!.leaseId);
    // Giving back what it no longer holds is refused in turn, and that is the end of it.
    agent.send({ case: "released", value: { job, reason: "again" } });
    assert.equal((await refusalOf(agent, "released", job!.pkgname)).code, "FAILED_PRECONDITION");
    agent.close();
    await agent.ended;
    await depgraph.cancelBuild({ buildId: build!.id });
  });

  test("a heartbeat that no longer lists an accepted job gives it back at once, the stream still open", async () => {
    const platform = "Forgot-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const agent = connectRawAgent(dispatcher.url, { agentId: "forgetful", platform });
    const { job } = await assignmentOf(agent);
    agent.send({ case: "accepted", value: { job } });
    agent.send({ case: "heartbeat", value: { running: [job!] } });
    agent.send({ case: "heartbeat", value: { running: [] } });
    const sent = Date.now();
    // Back in the queue at once, it comes straight back to the only agent of its platform, as attempt 2.
    const again = (await agent.waitFor((m) => m.message.case === "assign" && m.message.value.attempt === 2, HEARTBEAT_TIMEOUT_MS)).message.value as JobAssignment;
    const waited = Date.now() - sent;
    assert.equal(again.job!.pkgname, job!.pkgname);
    assert.notEqual(again.job!.leaseId, job!.leaseId);
    assert.ok(waited < HEARTBEAT_TIMEOUT_MS, `given back after ${waited} ms, before the heartbeat timeout`);
    // It counted as a second attempt.
    assert.equal((await jobState(build!.id, job!.pkgname)).attempts, 2);
    // The agent is still connected (it was not dropped as lost): it is in ListAgents.
    const { agents } = await agent.client.listAgents({});
    assert.ok(agents.some((a) => a.hello?.agentId === "forgetful"));
    agent.close();
    await agent.ended;
    await depgraph.cancelBuild({ buildId: build!.id });
  });

  test("a heartbeat sent before an assignment arrived does not take the assignment away", async () => {
    const platform = "InFlight-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const agent = connectRawAgent(dispatcher.url, { agentId: "inflight", platform });
    const { job } = await assignmentOf(agent);
    // As if this heartbeat had crossed the assignment on the wire.
    agent.send({ case: "heartbeat", value: { running: [] } });
    agent.send({ case: "accepted", value: { job } });
    agent.send({ case: "log", value: { job, data: Buffer.from("still mine\n") } });
    agent.send({ case: "finished", value: { job, outcome: JobOutcome.FAILED, failureReason: "exited with status 1" } });
    // Each message after the heartbeat was taken: had the job been given back, the log and result would be refused.
    const failed = await eventually("the job's result", async () => {
      const j = await jobState(build!.id, job!.pkgname);
      return j.state === JobState.FAILED ? j : undefined;
    }, 5000);
    assert.equal(failed.attempts, 1);
    assert.equal(failed.reason, "exited with status 1");
    assert.equal(agent.received.filter((m) => m.message.case === "refused").length, 0);
    agent.close();
    await agent.ended;
  });

  test("an upload refused for its size fails the job with the reason, and the agent is told to stop", async () => {
    const platform = "Huge-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const agent = connectRawAgent(dispatcher.url, { agentId: "huge", platform });
    const { job } = await assignmentOf(agent);
    agent.send({ case: "accepted", value: { job } });
    await assert.rejects(agent.client.uploadPackage((async function* () {
      yield { part: { case: "header" as const, value: { job, agentId: "huge", fileName: `${job!.pkgname}.tgz`, sha256: "ab".repeat(32), sizeBytes: 9n * 1024n ** 3n } } };
    })()), (e: unknown) => ConnectError.from(e).code === Code.ResourceExhausted);
    await agent.waitFor((m) => m.message.case === "cancel" && m.message.value.job?.pkgname === job!.pkgname);
    const ended = await eventually("the build to end", async () => {
      const b = (await depgraph.getBuild({ buildId: build!.id })).build!;
      return b.state === BuildState.FINISHED ? b : undefined;
    }, 5000);
    assert.equal(ended.jobCounts.JOB_STATE_FAILED, 1);
    const failed = await jobState(build!.id, job!.pkgname);
    assert.equal(failed.state, JobState.FAILED);
    assert.match(failed.reason, /upload refused \(RESOURCE_EXHAUSTED\).*more than the store accepts/);
    assert.equal(failed.agentId, "huge");
    // Its slot is free again: the registry holds nothing for the agent.
    assert.equal(dispatcher.registry.get("huge")!.jobs.size, 0);
    agent.close();
    await agent.ended;
  });

  test("Job.agent_id names the agent that built the job, while it runs and once it is done", async () => {
    const platform = "Who-1.0-x86_64";
    const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const agent = connectRawAgent(dispatcher.url, { agentId: "builder-7", platform });
    const { job } = await assignmentOf(agent);
    agent.send({ case: "accepted", value: { job } });
    // Leased by the dispatcher, which renews with the agent's id (every lease/3 = 1 s).
    const running = await eventually("the running job to name its agent", async () => {
      const j = await jobState(build!.id, job!.pkgname);
      return j.agentId === "builder-7" ? j : undefined;
    }, 5000);
    assert.equal(running.state, JobState.LEASED);
    const data = Buffer.from("a package");
    await agent.client.uploadPackage((async function* () {
      yield { part: { case: "header" as const, value: { job, agentId: "builder-7", fileName: `${job!.pkgname}.tgz`, sha256: sha256(data), sizeBytes: BigInt(data.length) } } };
      yield { part: { case: "chunk" as const, value: data } };
    })());
    agent.send({ case: "finished", value: { job, outcome: JobOutcome.SUCCEEDED, duration: durationFromMs(10), binaryPackage: { fileName: `${job!.pkgname}.tgz`, sha256: sha256(data), sizeBytes: BigInt(data.length) } } });
    const built = await eventually("the job to succeed", async () => {
      const j = await jobState(build!.id, job!.pkgname);
      return j.state === JobState.SUCCEEDED ? j : undefined;
    }, 5000);
    assert.equal(built.agentId, "builder-7");
    agent.close();
    await agent.ended;
  });
});

describe("up to date against today's depgraph", () => {
  test("an up-to-date result ends the job up to date, with the package the dispatcher has stored", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pkgfarm-uptodate-"));
    writeFileSync(join(dir, "scan.txt"), execFileSync(process.execPath, [join(ROOT, "examples", "bin", "scan-one.mjs"), "--all"], { encoding: "utf8" }));
    const depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt") });
    const dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 300, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, leaseMs: 3000, logLevel: "silent",
    }, pino({ level: "silent" }));
    const depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
    try {
      const platform = "Current-1.0-x86_64";
      const data = Buffer.from("built yesterday");
      mkdirSync(join(dir, "packages", platform, "All"), { recursive: true });
      writeFileSync(join(dir, "packages", platform, "All", "cwrappers-20220403.tgz"), data);
      const { build } = await depgraph.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
      const agent = connectRawAgent(dispatcher.url, { agentId: "current", platform });
      const { job } = await assignmentOf(agent);
      agent.send({ case: "finished", value: { job, outcome: JobOutcome.UP_TO_DATE, decision: "up to date" } });
      const done = await eventually("the job to end", async () => {
        const j = (await depgraph.listJobs({ buildId: build!.id })).jobs[0]!;
        return j.state === JobState.UP_TO_DATE ? j : undefined;
      }, 5000);
      assert.equal(done.binaryPackage!.sha256, sha256(data));
      assert.equal(done.decision, "up to date");
      assert.equal(done.agentId, "current");
      agent.close();
      await agent.ended;
    } finally {
      await dispatcher.close();
      await depgraphServer.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the real agent acts on a refused result", () => {
  test("a refused success is given back (released) by the agent, and it takes new work", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pkgfarm-refused-agent-"));
    const released: ConnectRequest[] = [];
    const finished: ConnectRequest[] = [];
    let sent = 0;
    let wakeTest: (() => void) | undefined;
    const assign = (n: number): ConnectResponse => create(ConnectResponseSchema, {
      message: { case: "assign", value: { job: { buildId: "b1", pkgname: `p${n}-1.0`, leaseId: `l${n}` }, location: "misc/p", attempt: 1, platform: "P" } },
    });
    // A stand-in dispatcher: assigns two jobs one after the other, takes every
    // upload, and refuses the first result as the real one does when it has
    // no matching upload.
    const server = await startGrpcService({
      service: DispatcherService,
      files: [file_pkgfarm_v1_dispatcher],
      host: "127.0.0.1",
      port: 0,
      register: (router) => router.service(DispatcherService, {
        async *connect(requests) {
          const outbox = createChannel<ConnectResponse>();
          void (async () => {
            for await (const request of requests) {
              const m = request.message;
              if (m.case === "hello") {
                outbox.push(create(ConnectResponseSchema, { message: { case: "welcome", value: { agentId: m.value.agentId, platform: "P", heartbeatInterval: durationFromMs(200), heartbeatTimeout: durationFromMs(5000) } } }));
                outbox.push(assign(++sent));
              } else if (m.case === "finished") {
                finished.push(request);
                if (m.value.job!.pkgname === "p1-1.0") {
                  outbox.push(create(ConnectResponseSchema, { message: { case: "refused", value: { job: m.value.job, message: "finished", code: "FAILED_PRECONDITION", reason: "no matching UploadPackage" } } }));
                }
              } else if (m.case === "released") {
                released.push(request);
                outbox.push(assign(++sent));
              }
              wakeTest?.();
            }
            outbox.close();
          })();
          yield* outbox;
        },
        async uploadPackage(requests) {
          for await (const _ of requests) void _;
          return { binaryPackage: { fileName: "x.tgz", sha256: "ab".repeat(32), sizeBytes: 1n } };
        },
      }),
    });
    const agent = createBuilderAgent({
      dispatcherUrl: server.url, agentId: "real-agent", slots: 1, os: "Linux", osRelease: "6", arch: "x86_64", platform: "P", labels: {},
      treeDir: dir, buildCommand: ["/bin/sh", "-c", 'echo package > "$PKGFARM_OUTPUT"'], workDir: join(dir, "work"), cacheDir: join(dir, "cache"),
      jobTimeoutMs: 30_000, logLevel: "silent",
    }, pino({ level: "silent" }));
    const running = agent.run();
    try {
      await eventually("the second job's result", async () => (finished.some((f) => (f.message.value as { job?: { pkgname: string } }).job?.pkgname === "p2-1.0") ? true : undefined), 10_000);
      assert.equal(released.length, 1, "the refused job was given back once");
      const value = released[0]!.message.value as { job?: { pkgname: string; leaseId: string }; reason: string };
      assert.deepEqual([value.job?.pkgname, value.job?.leaseId], ["p1-1.0", "l1"]);
      assert.match(value.reason, /refused the result \(FAILED_PRECONDITION: no matching UploadPackage\)/);
    } finally {
      agent.stopNow();
      await running;
      await server.shutdown(undefined, 1000);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
