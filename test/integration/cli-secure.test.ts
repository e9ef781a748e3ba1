// The pkgfarm farm commands against a farm with TLS, an operator token and
// reads that need a token (--read-auth token); and "why is it waiting?"
// answered for each kind of wait, with a raw agent that holds its one slot.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { JobOutcome } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { eventually } from "../support/eventually.js";
import { AGENT_TOKEN, OPERATOR_TOKEN, READ_TOKEN, startCliFarm, type CliFarm } from "../support/cli-farm.js";
import { connectRawAgent, type RawAgent } from "../support/raw-agent.js";

const PLATFORM = "Raw-1.0-x86_64";
const READER = { PKGFARM_READ_TOKEN: READ_TOKEN };
const OPERATOR = { PKGFARM_OPERATOR_TOKEN: OPERATOR_TOKEN };

describe("pkgfarm farm commands with TLS and tokens", () => {
  let farm: CliFarm;
  let agent: RawAgent;
  let held: JobAssignment;
  let build: string;

  before(async () => {
    farm = await startCliFarm({ tls: true, tokens: true });
    agent = connectRawAgent(farm.dispatcher.url, { agentId: "raw1", platform: PLATFORM, slots: 1 }, { tls: { ca: farm.pki!.ca }, token: AGENT_TOKEN });
    await agent.waitFor((m) => m.message.case === "welcome");
  });
  after(async () => {
    agent?.close();
    await farm?.close();
  });

  test("reads need a token: none is UNAUTHENTICATED (exit 1), the read token reads, and changes need the operator token", async () => {
    const none = await farm.run(["build", "list"]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^pkgfarm build list: UNAUTHENTICATED: pkgfarm\.v1\.DepGraphService\/ListBuilds needs a token \(read, operator or agent\)/);
    const read = await farm.child(["build", "list"], READER);
    assert.equal(read.code, 0, read.stderr);
    assert.equal(read.stdout, "no builds\n");
    const refused = await farm.run(["build", "start", "--platform", PLATFORM, "devel/zlib"], READER);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^pkgfarm build start: UNAUTHENTICATED: pkgfarm\.v1\.DepGraphService\/CreateBuild needs the operator token; the token sent is not valid/);
    assert.match((await farm.run(["build", "list"], READER)).stdout, /^no builds\n$/, "nothing was created");

    const badFile = await farm.run(["build", "list"], { PKGFARM_READ_TOKEN: "short" });
    assert.equal(badFile.code, 2);
    assert.match(badFile.stderr, /PKGFARM_READ_TOKEN must be at least 16 characters/);
    // Without the CA the server's certificate is not trusted.
    const untrusted = await farm.run(["build", "list", "--depgraph", farm.depgraph.url], READER, false);
    assert.equal(untrusted.code, 1);
    // connect-node reports a handshake it could not verify as INTERNAL, with the TLS error.
    assert.match(untrusted.stderr, /^pkgfarm build list: (INTERNAL|UNAVAILABLE): unable to verify the first certificate/);
    const plainUrl = await farm.run(["build", "list", "--depgraph", "http://127.0.0.1:1", "--tls-ca", farm.pki!.caPath], READER, false);
    assert.equal(plainUrl.code, 2);
    assert.match(plainUrl.stderr, /--tls-ca and --tls-client-cert\/--tls-client-key need an https:\/\/ URL in --depgraph \(PKGFARM_DEPGRAPH_URL\)/);
  });

  test("build status shows what runs where and an ETA; why names the dependencies a job waits for and the chain down to what runs", async () => {
    const started = await farm.run(["build", "start", "--platform", PLATFORM, "devel/zlib"], OPERATOR);
    assert.equal(started.code, 0, started.stderr);
    build = /^build (\S+) on Raw-1\.0-x86_64: 3 jobs$/m.exec(started.stdout)![1]!;
    const assigned = await agent.waitFor((m) => m.message.case === "assign");
    held = (assigned.message.value as JobAssignment);
    assert.equal(held.job!.pkgname, "cwrappers-20220403");
    agent.send({ case: "accepted", value: { job: held.job } });

    // The acceptance tells depgraph which agent and host run it, at once.
    const status = await eventually("the running job's host", async () => {
      const r = await farm.run(["build", "status", build], READER);
      return /^cwrappers-20220403 +test +raw1 +\d+s +\S+$/m.test(r.stdout) ? r : undefined;
    });
    assert.match(status.stdout, new RegExp(`^build ${build} on ${PLATFORM}: running\\n`));
    assert.match(status.stdout, /^0\/3 jobs ended: 2 pending, 1 leased$/m);
    assert.match(status.stdout, /^ETA \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in \d+\w*\): longest chain left \d+\w*, work left \d+\w* over 1 running job$/m);
    assert.match(status.stdout, /^running \(1\):\nPKGNAME +HOST +AGENT +ELAPSED +EXPECTED\n/m);
    const json = JSON.parse((await farm.run(["build", "status", build, "--json"], READER)).stdout) as {
      running: Array<{ pkgname: string; host: string; agentId: string; startTime: string; expectedDuration: string }>; estimate: { parallelism: number; remaining: string; finishTime: string };
    };
    assert.equal(json.running[0]!.host, "test");
    assert.equal(json.running[0]!.agentId, "raw1");
    assert.match(json.running[0]!.startTime, /^\d{4}-/);
    assert.equal(json.estimate.parallelism, 1);
    assert.match(json.estimate.remaining, /^\d+(\.\d+)?s$/);

    const zlib = await farm.run(["why", build, "zlib-1.3.1"], READER);
    assert.equal(zlib.code, 0, zlib.stderr);
    assert.match(zlib.stdout, /^zlib-1\.3\.1 waits for 1 dependency: cc-example-1\.0; the longest chain runs through cc-example-1\.0 → cwrappers-20220403, which is building on host test for \d+s\n/);
    assert.match(zlib.stdout, /^ {2}waiting for: cc-example-1\.0$/m);
    assert.match(zlib.stdout, /what it waits for, down to what runs:\n {4}-> cc-example-1\.0 \(devel\/cc-example\) pending\n {4}-> cwrappers-20220403 \(pkgtools\/cwrappers\) leased on host test\n/);
    const zlibJson = JSON.parse((await farm.run(["why", build, "zlib-1.3.1", "--json"], READER)).stdout) as { wait: { kind: string; dependencies: string[] } };
    assert.deepEqual(zlibJson.wait, { kind: "WAIT_KIND_DEPENDENCIES", dependencies: ["cc-example-1.0"], detail: "waits for 1 dependency: cc-example-1.0" });

    const running = await farm.child(["why", build, "cwrappers-20220403"], READER);
    assert.equal(running.code, 0, running.stderr);
    assert.match(running.stdout, /^cwrappers-20220403 is building on host test for \d+s\n/);
  });

  test("why says when every slot of the platform is busy, and when no agent of the platform is there", async () => {
    const busy = await farm.run(["build", "start", "--platform", PLATFORM, "pkgtools/cwrappers"], OPERATOR);
    const busyId = /^build (\S+) on /.exec(busy.stdout)![1]!;
    const waiting = await farm.run(["why", busyId, "cwrappers-20220403"], READER);
    assert.equal(waiting.code, 0, waiting.stderr);
    assert.match(waiting.stdout, /^cwrappers-20220403 is ready; every slot of the build hosts of platform Raw-1\.0-x86_64 is taken \(0 jobs of this build running, 0 ready before it\)\n/);
    assert.match(waiting.stdout, /^ {2}waits: agents busy: /m);

    const ghost = await farm.run(["build", "start", "--platform", "Ghost-1.0-x86_64", "pkgtools/cwrappers"], OPERATOR);
    const ghostId = /^build (\S+) on /.exec(ghost.stdout)![1]!;
    const nobody = await farm.run(["why", ghostId, "pkgtools/cwrappers", "--json"], READER);
    assert.equal(nobody.code, 0, nobody.stderr);
    const answer = JSON.parse(nobody.stdout) as { wait: { kind: string; detail: string }; summary: string };
    assert.equal(answer.wait.kind, "WAIT_KIND_NO_AGENT_FOR_PLATFORM");
    assert.equal(answer.wait.detail, "ready; no build host of platform Ghost-1.0-x86_64 asked for work in the last 120 s");
    assert.match(answer.summary, /connect an agent of that platform$/);

    // Cancelling needs the operator token; the read token is refused and nothing changes.
    const refused = await farm.run(["build", "cancel", ghostId], READER);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /UNAUTHENTICATED: pkgfarm\.v1\.DepGraphService\/CancelBuild needs the operator token/);
    assert.match((await farm.run(["build", "status", ghostId], READER)).stdout, /: running\n/);
    for (const id of [ghostId, busyId]) {
      const cancelled = await farm.run(["build", "cancel", id, "--json"], OPERATOR);
      assert.equal(cancelled.code, 0, cancelled.stderr);
      assert.equal((JSON.parse(cancelled.stdout) as { build: { state: string } }).build.state, "BUILD_STATE_CANCELLED");
    }
  });

  test("agents shows the raw agent's host and what it runs; draining needs the operator token", async () => {
    const agents = await farm.child(["agents"], READER);
    assert.equal(agents.code, 0, agents.stderr);
    assert.match(agents.stdout, /^raw1 +test +Raw-1\.0-x86_64 +active +1\/1 +\d+s ago +0 +cwrappers-20220403 \(\d+s\)$/m);
    const json = JSON.parse((await farm.run(["agents", "--json"], READER)).stdout) as { agents: Array<{ jobs: Array<{ job: { pkgname: string; leaseId?: string }; assignTime: string; accepted: boolean; kind: string }> }> };
    const [job] = json.agents[0]!.jobs;
    assert.deepEqual([job!.job.pkgname, job!.job.leaseId, job!.accepted, job!.kind], ["cwrappers-20220403", undefined, true, "build"], "no lease id: that is the holder's proof");
    assert.match(job!.assignTime, /^\d{4}-/);
    const refused = await farm.run(["agents", "drain", "raw1"], READER);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^pkgfarm agents drain: UNAUTHENTICATED: pkgfarm\.v1\.DispatcherService\/DrainAgent needs the operator token/);
    assert.match((await farm.run(["agents"], READER)).stdout, /^raw1 .* active /m, "still active");
  });

  test("log -f follows a running job's log until the job ends; jobs, report and diff of the ended build; build watch of a cancelled build exits 4", async () => {
    agent.send({ case: "log", value: { job: held.job, data: Buffer.from("first line\n"), phase: "build" } });
    await eventually("the first log line", async () => ((await farm.run(["log", build, "cwrappers-20220403"], READER)).stdout.includes("first line") ? true : undefined));
    const following = farm.run(["log", build, "cwrappers-20220403", "-f"], READER);
    agent.send({ case: "log", value: { job: held.job, data: Buffer.from("second line\n"), phase: "build" } });
    agent.send({ case: "finished", value: { job: held.job, outcome: JobOutcome.FAILED, failureReason: "exited with status 2", failedPhase: "build" } });
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /first line\nsecond line\n/);
    const phase = await farm.run(["log", build, "cwrappers-20220403", "--phase", "build"], READER);
    assert.match(phase.stdout, /first line\nsecond line\n/);

    // cwrappers failed, so its build has ended: watch answers at once with 3.
    const watched = await farm.child(["build", "watch", build], READER);
    assert.equal(watched.code, 3, watched.stdout + watched.stderr);
    assert.match(watched.stdout, /^ {2}failed: cwrappers-20220403 \(pkgtools\/cwrappers\) in build on host test after /m);

    const failedJobs = await farm.child(["jobs", build, "--state", "failed"], READER);
    assert.equal(failedJobs.code, 0, failedJobs.stderr);
    assert.match(failedJobs.stdout, /^cwrappers-20220403 +failed +pkgtools\/cwrappers +test +\S+ +build: exited with status 2$/m);
    // The dispatcher's publisher, which reads depgraph with the operator token, writes the report.
    const report = await eventually("the report", async () => {
      const r = await farm.run(["build", "report", build], READER);
      return r.code === 0 ? r : undefined;
    }, 20_000);
    assert.match(report.stdout, /^pkgsrc bulk build report\n/);
    assert.match(report.stdout, /pkgtools\/cwrappers/);
    const noToken = await farm.run(["build", "report", build]);
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /^pkgfarm build report: UNAUTHENTICATED: pkgfarm\.v1\.DispatcherService\/GetReport needs a token/);
    // The build before it on the platform is the one cancelled above (cwrappers alone): cwrappers fails now and was
    // cancelled then; the two packages it blocks were not in that build.
    const diff = await farm.run(["build", "diff", build, "--json"], READER);
    assert.equal(diff.code, 0, diff.stderr);
    const changes = JSON.parse(diff.stdout) as { newlyFailing: Array<{ pkgname: string; state: string; previousState: string }> };
    assert.deepEqual(changes.newlyFailing.map((e) => [e.pkgname, e.state, e.previousState]), [
      ["cc-example-1.0", "indirect-failed", undefined],
      ["zlib-1.3.1", "indirect-failed", undefined],
      ["cwrappers-20220403", "failed", "cancelled"],
    ]);

    const another = await farm.run(["build", "start", "--platform", "Ghost-1.0-x86_64", "devel/zlib"], OPERATOR);
    const id = /^build (\S+) on /.exec(another.stdout)![1]!;
    // Whether the cancel comes before the watch has opened its stream or after, the watch ends with 4.
    const watching = farm.child(["build", "watch", id, "--json"], READER);
    assert.equal((await farm.run(["build", "cancel", id], OPERATOR)).code, 0);
    const cancelled = await watching;
    assert.equal(cancelled.code, 4, cancelled.stdout + cancelled.stderr);
    const lines = cancelled.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const last = lines[lines.length - 1]!;
    assert.deepEqual(last["jobs"] ?? [], [], "the last line lists the failed jobs: none");
  });
});
