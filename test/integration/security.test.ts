import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { BuildState, DepGraphService, ImportMode, JobState } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { AgentState, DispatcherService, type ConnectRequest, type JobAssignment } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createChannel, createPkgfarmTransport, MAX_CONCURRENT_STREAMS, type ClientSecurity } from "../../services/shared/index.js";
import { createTestPki, type TestPki } from "../support/certs.js";
import { SMALL_SCAN, startTestDepGraph } from "../support/depgraph-server.js";
import { connectRawAgent, type RawAgent } from "../support/raw-agent.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const BUF = join(ROOT, "node_modules", ".bin", "buf");
const run = promisify(execFile);

const OPERATOR = "operator-0123456789abcdef0123456789";
const SHARED_AGENT = "shared-agent-0123456789abcdef01234";
const ALPHA = "alpha-agent-0123456789abcdef012345";
const BETA = "beta-agent-0123456789abcdef0123456";

async function expectCode(call: Promise<unknown>, code: Code, message?: RegExp): Promise<ConnectError> {
  let caught: ConnectError | undefined;
  await assert.rejects(call, (e: unknown) => {
    caught = ConnectError.from(e);
    assert.equal(Code[caught.code], Code[code], caught.message);
    if (message !== undefined) assert.match(caught.message, message);
    return true;
  });
  return caught!;
}

/**
 * Opens a TLS connection, sends the HTTP/2 preface, and reports what came
 * back before the connection closed: a server that accepted the client
 * answers with its SETTINGS frame; one that refused it sends no HTTP/2 byte.
 */
function http2BytesOverTls(port: number, options: tls.ConnectionOptions): Promise<{ bytes: number; error?: string }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let error: string | undefined;
    const socket = tls.connect({ host: "127.0.0.1", port, ALPNProtocols: ["h2"], ...options });
    socket.once("secureConnect", () => socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    socket.on("data", (data: Buffer) => {
      bytes += data.length;
      socket.destroy();
    });
    socket.once("error", (e) => (error = e.message));
    socket.once("close", () => resolve({ bytes, ...(error !== undefined && { error }) }));
  });
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

describe("security: tokens, TLS and limits on real servers", () => {
  let dir: string;
  let pki: TestPki;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let trusted: ClientSecurity;
  let operator: Client<typeof DepGraphService>;
  let anonymous: Client<typeof DepGraphService>;
  let dispatcherAnonymous: Client<typeof DispatcherService>;
  const agents: RawAgent[] = [];

  const agent = (agentId: string, platform: string, token?: string) => {
    const a = connectRawAgent(dispatcher.url, { agentId, platform }, { ...trusted, ...(token && { token }) });
    agents.push(a);
    return a;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-security-"));
    pki = createTestPki(dir);
    writeFileSync(join(dir, "scan.txt"), SMALL_SCAN);
    const serverTls = { cert: pki.server.cert, key: pki.server.key };
    depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt"), tls: serverTls, healthPort: 0, operatorToken: OPERATOR });
    trusted = { tls: { ca: pki.ca } };
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1",
      port: 0,
      depgraphUrl: depgraphServer.url,
      packagesRoot: join(dir, "packages"),
      logsRoot: dir,
      heartbeatIntervalMs: 500,
      heartbeatTimeoutMs: 5000,
      leaseMs: 60_000,
      logLevel: "silent",
      tls: serverTls,
      healthPort: 0,
      depgraphTls: { ca: pki.ca },
      operatorToken: OPERATOR,
      agentToken: SHARED_AGENT,
      agentTokens: new Map([["alpha", ALPHA], ["beta", BETA]]),
    }, pino({ level: "silent" }));
    operator = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url, { ...trusted, token: OPERATOR }));
    anonymous = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url, trusted));
    dispatcherAnonymous = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url, trusted));
  });
  after(async () => {
    for (const a of agents) a.close();
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the ports speak TLS, and health answers in plaintext on its own port only", async () => {
    assert.match(depgraphServer.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(dispatcher.url, /^https:\/\//);
    for (const port of [depgraphServer.healthPort!, dispatcher.healthPort!]) {
      const plain = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
      assert.equal((await createClient(Health, plain).check({ service: "" })).status, ServingStatus.SERVING);
      // Nothing but health there: no service, no reflection.
      await expectCode(createClient(DepGraphService, plain).listBuilds({}), Code.Unimplemented);
    }
    const plain = createGrpcTransport({ baseUrl: `http://127.0.0.1:${depgraphServer.healthPort}` });
    assert.equal((await createClient(Health, plain).check({ service: "pkgfarm.v1.DepGraphService" })).status, ServingStatus.SERVING);
  });

  test("a plaintext client on a TLS port fails cleanly and the server keeps answering", async () => {
    // The server drops the connection at the first bytes, which are no TLS
    // ClientHello; connect-node reports the lost stream as CANCELED.
    const plaintext = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url.replace("https:", "http:")));
    await expectCode(plaintext.listBuilds({}, { timeoutMs: 5000 }), Code.Canceled, /stream closed/);
    // A client that does not trust the server's CA is refused by its own side.
    const untrusting = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
    await expectCode(untrusting.listBuilds({}, { timeoutMs: 5000 }), Code.Internal, /unable to verify the first certificate/);
    assert.equal((await anonymous.listPackages({})).packages.length > 0, true);
  });

  test("depgraph's state-changing RPCs need the operator token; reads, reflection and health stay open", async () => {
    const wrong = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url, { ...trusted, token: "not-the-operator-token-at-all" }));
    const agentToken = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url, { ...trusted, token: SHARED_AGENT }));
    const buildsBefore = (await anonymous.listBuilds({})).builds.length;
    const packagesBefore = (await anonymous.listPackages({ pageSize: 1000 })).packages.map((p) => p.pkgname).sort();

    await expectCode(anonymous.createBuild({ platform: "Sec-1.0-x86_64" }), Code.Unauthenticated, /authorization: Bearer/);
    await expectCode(wrong.createBuild({ platform: "Sec-1.0-x86_64" }), Code.Unauthenticated, /not valid/);
    await expectCode(agentToken.createBuild({ platform: "Sec-1.0-x86_64" }), Code.Unauthenticated);
    await expectCode(anonymous.importScan((async function* () {
      yield { pbulkIndex: "PKGNAME=intruder-1.0\nPKG_LOCATION=misc/intruder\n", mode: ImportMode.REPLACE_TREE };
    })()), Code.Unauthenticated);
    await expectCode(anonymous.scanLocations({ locations: ["devel/gmake"] }), Code.Unauthenticated);
    await expectCode(anonymous.nextReadyJob({ platform: "Sec-1.0-x86_64", agentId: "thief", maxJobs: 1 }), Code.Unauthenticated);
    await expectCode(anonymous.markDone({ results: [] }), Code.Unauthenticated);
    await expectCode(anonymous.renewLease({ leases: [] }), Code.Unauthenticated);
    await expectCode(anonymous.returnJob({ leases: [] }), Code.Unauthenticated);
    // Nothing changed.
    assert.equal((await anonymous.listBuilds({})).builds.length, buildsBefore);
    assert.deepEqual((await anonymous.listPackages({ pageSize: 1000 })).packages.map((p) => p.pkgname).sort(), packagesBefore);

    const { build } = await operator.createBuild({ platform: "Sec-1.0-x86_64", limitTo: ["devel/gmake"] });
    assert.equal((await anonymous.listBuilds({})).builds.length, buildsBefore + 1);
    await expectCode(anonymous.cancelBuild({ buildId: build!.id }), Code.Unauthenticated);
    assert.equal((await anonymous.getBuild({ buildId: build!.id })).build!.state, BuildState.RUNNING);
    await operator.cancelBuild({ buildId: build!.id });
    assert.equal((await anonymous.getBuild({ buildId: build!.id })).build!.state, BuildState.CANCELLED);
    assert.equal((await createClient(Health, createPkgfarmTransport(depgraphServer.url, trusted)).check({ service: "" })).status, ServingStatus.SERVING);
  });

  test("the dispatcher refuses agents without a valid token, and a per-agent token speaks only for its agent", async () => {
    const platform = "Agents-1.0-x86_64";
    for (const [token, code] of [[undefined, Code.Unauthenticated], ["wrong-agent-token-0123456789abcdef", Code.Unauthenticated], [OPERATOR, Code.Unauthenticated]] as const) {
      const refused = agent("intruder", platform, token);
      assert.equal(ConnectError.from(await refused.ended).code, code);
      assert.deepEqual(refused.received, []);
    }
    const impostor = agent("beta", platform, ALPHA);
    const denied = ConnectError.from(await impostor.ended);
    assert.equal(denied.code, Code.PermissionDenied);
    assert.match(denied.message, /belongs to agent "alpha"/);
    assert.deepEqual((await dispatcherAnonymous.listAgents({})).agents, []);

    // The shared token may name any agent; a per-agent one its own.
    const shared = agent("shared-1", platform, SHARED_AGENT);
    const alpha = agent("alpha", platform, ALPHA);
    await shared.waitFor((m) => m.message.case === "welcome");
    await alpha.waitFor((m) => m.message.case === "welcome");
    assert.deepEqual((await dispatcherAnonymous.listAgents({})).agents.map((a) => a.hello!.agentId), ["alpha", "shared-1"]);

    // Downloads and uploads need an agent token too.
    await expectCode((async () => {
      for await (const _ of dispatcherAnonymous.downloadPackage({ platform, fileName: "gmake-4.4.1.tgz" })) break;
    })(), Code.Unauthenticated);
    await expectCode(dispatcherAnonymous.uploadPackage((async function* () {
      yield { part: { case: "header" as const, value: { agentId: "alpha", fileName: "x.tgz" } } };
    })()), Code.Unauthenticated);

    // DrainAgent is the operator's: without the token the agent stays active.
    await expectCode(dispatcherAnonymous.drainAgent({ agentId: "alpha" }), Code.Unauthenticated);
    const alphaClientDrain = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url, { ...trusted, token: ALPHA }));
    await expectCode(alphaClientDrain.drainAgent({ agentId: "shared-1" }), Code.Unauthenticated);
    assert.deepEqual((await dispatcherAnonymous.listAgents({})).agents.map((a) => a.state), [AgentState.ACTIVE, AgentState.ACTIVE]);
    const dispatcherOperator = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url, { ...trusted, token: OPERATOR }));
    assert.equal((await dispatcherOperator.drainAgent({ agentId: "alpha" })).agent!.state, AgentState.DRAINING);
    await alpha.waitFor((m) => m.message.case === "drain");
    shared.close();
    alpha.close();
    await Promise.all([shared.ended, alpha.ended]);
  });

  test("an agent cannot report on, upload for, renew or give back a job another agent holds", async () => {
    const platform = "Theft-1.0-x86_64";
    const { build } = await operator.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] });
    const holder = agent("alpha", platform, ALPHA);
    const job = ((await holder.waitFor((m) => m.message.case === "assign")).message.value as JobAssignment).job!;
    const thief = agent("beta", platform, BETA);
    const sharedThief = agent("gamma", platform, SHARED_AGENT);
    await thief.waitFor((m) => m.message.case === "welcome");
    await sharedThief.waitFor((m) => m.message.case === "welcome");

    // ListAgents shows who holds what, but not the lease id that proves it.
    const listed = (await dispatcherAnonymous.listAgents({})).agents.find((a) => a.hello!.agentId === "alpha")!;
    assert.deepEqual(listed.running.map((j) => [j.pkgname, j.leaseId]), [[job.pkgname, ""]]);

    const data = Buffer.from("stolen package");
    const upload = (client: Client<typeof DispatcherService>, agentId: string, leaseId: string) => client.uploadPackage((async function* () {
      yield { part: { case: "header" as const, value: { job: { buildId: job.buildId, pkgname: job.pkgname, leaseId }, agentId, fileName: `${job.pkgname}.tgz`, sha256: sha256(data), sizeBytes: BigInt(data.length) } } };
      yield { part: { case: "chunk" as const, value: data } };
    })());
    // Per-agent token, naming the holder: not its name to use.
    await expectCode(upload(thief.client, "alpha", job.leaseId), Code.PermissionDenied);
    // Its own name, the holder's job: it does not hold it.
    await expectCode(upload(thief.client, "beta", job.leaseId), Code.FailedPrecondition);
    // The shared token may name alpha, but without the lease id, which only alpha was sent, it holds nothing.
    await expectCode(upload(sharedThief.client, "alpha", ""), Code.FailedPrecondition);
    await expectCode(upload(sharedThief.client, "alpha", "guessed-lease"), Code.FailedPrecondition);
    // Reports, give-backs and log lines about the job on the thief's own stream are refused too.
    const stolen = { buildId: job.buildId, pkgname: job.pkgname, leaseId: job.leaseId };
    thief.send({ case: "finished", value: { job: stolen, outcome: 2, failureReason: "sabotage" } });
    thief.send({ case: "released", value: { job: stolen, reason: "sabotage" } });
    thief.send({ case: "log", value: { job: stolen, data: Buffer.from("forged log line\n") } });
    // Heartbeats name what an agent runs; naming another's job only cancels it on the liar.
    thief.send({ case: "heartbeat", value: { running: [stolen] } });
    await thief.waitFor((m) => m.message.case === "cancel");

    // Nothing changed: the job is still alpha's, leased, with nothing stored.
    const jobs = (await operator.listJobs({ buildId: build!.id })).jobs;
    assert.equal(jobs[0]!.state, JobState.LEASED);
    const alphaNow = (await dispatcherAnonymous.listAgents({})).agents.find((a) => a.hello!.agentId === "alpha")!;
    assert.deepEqual(alphaNow.running.map((j) => j.pkgname), [job.pkgname]);
    assert.equal(holder.received.filter((m) => m.message.case === "cancel").length, 0);
    // The holder itself can finish it.
    await upload(holder.client, "alpha", job.leaseId);
    holder.send({ case: "finished", value: { job: stolen, outcome: 1, binaryPackage: { fileName: `${job.pkgname}.tgz`, sha256: sha256(data) } } });
    for (const deadline = Date.now() + 10_000; ;) {
      assert.ok(Date.now() < deadline, "the holder's report was taken within 10 s");
      const state = (await operator.listJobs({ buildId: build!.id })).jobs[0]!.state;
      if (state !== JobState.LEASED) {
        assert.equal(state, JobState.SUCCEEDED);
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const a of [holder, thief, sharedThief]) a.close();
  });

  test("an oversized message over TLS gets RESOURCE_EXHAUSTED, changes nothing, and the server keeps answering", async () => {
    const before = (await anonymous.listPackages({ pageSize: 1000 })).packages.length;
    await expectCode(operator.importScan((async function* () {
      yield { pbulkIndex: "x".repeat(17 * 1024 * 1024), mode: ImportMode.REPLACE_TREE };
    })()), Code.ResourceExhausted);
    await expectCode(operator.createBuild({ platform: "Huge-1.0-x86_64", limitTo: ["y".repeat(17 * 1024 * 1024)] }), Code.ResourceExhausted);
    assert.equal((await anonymous.listPackages({ pageSize: 1000 })).packages.length, before);
    assert.equal((await anonymous.listBuilds({})).builds.filter((b) => b.platform === "Huge-1.0-x86_64").length, 0);
  });

  test("each HTTP/2 connection is limited to MAX_CONCURRENT_STREAMS streams, announced in SETTINGS", async () => {
    const session = http2.connect(depgraphServer.url, { ca: pki.ca });
    try {
      const settings = await new Promise<http2.Settings>((resolve, reject) => {
        session.once("remoteSettings", resolve);
        session.once("error", reject);
      });
      assert.equal(settings.maxConcurrentStreams, MAX_CONCURRENT_STREAMS);
    } finally {
      session.close();
    }
  });

  test("buf curl calls depgraph over TLS with the operator token, by reflection, as the README shows", async () => {
    const curl = (...args: string[]) => run(BUF, ["curl", "--protocol", "grpc", "--cacert", pki.caPath, ...args]);
    const listed = await curl("--list-services", depgraphServer.url);
    assert.ok(listed.stdout.split("\n").includes("pkgfarm.v1.DepGraphService"), listed.stdout);
    const auth = `authorization: Bearer ${OPERATOR}`;
    const created = await curl("-H", auth, "--data", JSON.stringify({ platform: "Curl-1.0-x86_64", limitTo: ["devel/gmake"] }),
      `${depgraphServer.url}/pkgfarm.v1.DepGraphService/CreateBuild`);
    const build = JSON.parse(created.stdout).build;
    assert.equal(build.totalJobs, 2);
    const refused = await curl("--data", JSON.stringify({ buildId: build.id }), `${depgraphServer.url}/pkgfarm.v1.DepGraphService/CancelBuild`)
      .then(() => assert.fail("CancelBuild without the token succeeded"), (e: { stderr: string }) => e.stderr);
    assert.match(refused, /unauthenticated/i);
    assert.equal((await anonymous.getBuild({ buildId: build.id })).build!.state, BuildState.RUNNING);
    await curl("-H", auth, "--data", JSON.stringify({ buildId: build.id }), `${depgraphServer.url}/pkgfarm.v1.DepGraphService/CancelBuild`);
    assert.equal((await anonymous.getBuild({ buildId: build.id })).build!.state, BuildState.CANCELLED);
  });
});

describe("mutual TLS", () => {
  let dir: string;
  let pki: TestPki;
  let server: RunningDepGraph;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-mtls-"));
    pki = createTestPki(dir);
    server = await startTestDepGraph({ tls: { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca }, healthPort: 0 });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a client without a certificate, or with one from another CA, is refused; the server keeps serving", async () => {
    // The server ends the handshake with a TLS alert. Under TLS 1.3 the
    // client learns it only after sending its first request, so connect-node
    // reports INTERNAL (the alert) or CANCELED (the stream), as timing has it.
    const refusedAtConnection = (e: unknown) => [Code.Internal, Code.Canceled].includes(ConnectError.from(e).code);
    const bare = createClient(DepGraphService, createPkgfarmTransport(server.url, { tls: { ca: pki.ca } }));
    await assert.rejects(bare.listBuilds({}, { timeoutMs: 5000 }), refusedAtConnection);
    const bareRaw = await http2BytesOverTls(server.port, { ca: pki.ca });
    assert.equal(bareRaw.bytes, 0);
    assert.match(bareRaw.error ?? "", /certificate required/);
    const strangerTls = { ca: pki.ca, cert: pki.strangerClient.cert, key: pki.strangerClient.key };
    const stranger = createClient(DepGraphService, createPkgfarmTransport(server.url, { tls: strangerTls }));
    await assert.rejects(stranger.listBuilds({}, { timeoutMs: 5000 }), refusedAtConnection);
    assert.equal((await http2BytesOverTls(server.port, strangerTls)).bytes, 0);
    assert.ok((await http2BytesOverTls(server.port, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key })).bytes > 0, "an accepted client gets SETTINGS");
    const known = createClient(DepGraphService, createPkgfarmTransport(server.url, { tls: { ca: pki.ca, cert: pki.client.cert, key: pki.client.key } }));
    assert.deepEqual((await known.listBuilds({})).builds, []);
    // buf curl with the client certificate, as an operator would.
    const listed = await run(BUF, ["curl", "--protocol", "grpc", "--cacert", pki.caPath, "--cert", pki.client.certPath, "--key", pki.client.keyPath, "--list-services", server.url]);
    assert.ok(listed.stdout.includes("pkgfarm.v1.DepGraphService"));
    // The kubelet's probe has no certificate: the health port asks for none.
    const plain = createGrpcTransport({ baseUrl: `http://127.0.0.1:${server.healthPort}` });
    assert.equal((await createClient(Health, plain).check({ service: "" })).status, ServingStatus.SERVING);
  });
});

describe("the dispatcher's cap on agent streams", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-cap-"));
    depgraphServer = await startTestDepGraph();
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 200, heartbeatTimeoutMs: 800, leaseMs: 60_000, logLevel: "silent", maxAgents: 2,
    }, pino({ level: "silent" }));
  });
  after(async () => {
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("streams beyond --max-agents get RESOURCE_EXHAUSTED; a freed place is taken again", async () => {
    const platform = "Cap-1.0-x86_64";
    const first = connectRawAgent(dispatcher.url, { agentId: "cap-1", platform });
    const second = connectRawAgent(dispatcher.url, { agentId: "cap-2", platform });
    await first.waitFor((m) => m.message.case === "welcome");
    await second.waitFor((m) => m.message.case === "welcome");
    const third = connectRawAgent(dispatcher.url, { agentId: "cap-3", platform });
    const refused = ConnectError.from(await third.ended);
    assert.equal(refused.code, Code.ResourceExhausted);
    assert.match(refused.message, /--max-agents/);
    assert.deepEqual((await first.client.listAgents({})).agents.map((a) => a.hello!.agentId), ["cap-1", "cap-2"]);
    first.close();
    await first.ended;
    const fourth = connectRawAgent(dispatcher.url, { agentId: "cap-4", platform });
    await fourth.waitFor((m) => m.message.case === "welcome");
    second.close();
    fourth.close();
    await Promise.all([second.ended, fourth.ended]);
  });

  test("a stream that never says hello is closed with DEADLINE_EXCEEDED and gives its place back", async () => {
    // With the cap at 2: one agent connected, one silent stream.
    const holder = connectRawAgent(dispatcher.url, { agentId: "holder", platform: "Cap-1.0-x86_64" });
    await holder.waitFor((m) => m.message.case === "welcome");
    const client = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url));
    const silent = (async () => {
      for await (const _ of client.connect(createChannel<ConnectRequest>())) break;
    })();
    await expectCode(silent, Code.DeadlineExceeded, /no hello within/);
    const agent = connectRawAgent(dispatcher.url, { agentId: "after-silence", platform: "Cap-1.0-x86_64" });
    await agent.waitFor((m) => m.message.case === "welcome");
    agent.close();
    holder.close();
    await Promise.all([agent.ended, holder.ended]);
  });
});
