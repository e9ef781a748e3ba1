import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import * as grpc from "@grpc/grpc-js";
import {
  CreateBuildRequestSchema,
  CreateBuildResponseSchema,
  DepGraphService,
  ImportMode,
  JobOutcome,
  JobState,
  MarkDoneRequestSchema,
  MarkDoneResponseSchema,
  NextReadyJobRequestSchema,
  NextReadyJobResponseSchema,
  type Assignment,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { SMALL_SCAN, startTestDepGraph } from "../support/depgraph-server.js";

const run = promisify(execFile);
const BUF = new URL("../../../node_modules/.bin/buf", import.meta.url).pathname;
const PLATFORM = "NetBSD-10.0-x86_64";
const SHA = "ab".repeat(32);

function done(a: Assignment, outcome = JobOutcome.SUCCEEDED) {
  return create(MarkDoneRequestSchema, {
    results: [{
      buildId: a.buildId, pkgname: a.package!.pkgname, leaseId: a.leaseId, outcome,
      duration: durationFromMs(1500), logRef: `logs/${a.package!.pkgname}.log`,
      binaryPackage: outcome === JobOutcome.SUCCEEDED ? { fileName: `${a.package!.pkgname}.tgz`, sha256: SHA, sizeBytes: 10n } : undefined,
      failureReason: outcome === JobOutcome.FAILED ? "build phase exited with status 2" : "",
    }],
  });
}

async function expectCode(promise: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    if (!(e instanceof ConnectError)) assert.fail(`expected ConnectError, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${Code[code]}, got ${Code[e.code]}: ${e.message}`);
    if (message) assert.match(e.rawMessage, message);
    return true;
  });
}

describe("depgraph over gRPC on loopback", () => {
  let server: RunningDepGraph;
  let client: Client<typeof DepGraphService>;

  before(async () => {
    server = await startTestDepGraph();
    client = createClient(DepGraphService, createPkgfarmTransport(server.url));
  });
  after(async () => {
    await server.close();
  });

  test("ImportScan streams records in chunks, reports the bad one by line, and resolves the rest", async () => {
    async function* chunks() {
      // Cut mid-line on purpose: records may span messages.
      for (let at = 0; at < SMALL_SCAN.length; at += 37) {
        yield { pbulkIndex: SMALL_SCAN.slice(at, at + 37), mode: at === 0 ? ImportMode.REPLACE_TREE : ImportMode.UNSPECIFIED };
      }
    }
    const response = await client.importScan(chunks());
    assert.equal(response.recordsImported, 6);
    assert.equal(response.tree?.packages, 6);
    const bad = response.problems.find((p) => p.location === "misc/bad");
    assert.ok(bad !== undefined, "the malformed record is reported");
    assert.equal(bad.line, 30);
    assert.match(bad.message, /ALL_DEPENDS entry "gmake>=3.81:devel\/gmake"/);
    const unresolved = response.problems.find((p) => p.pkgname === "py312-six-1.17.0");
    assert.match(unresolved!.message, /could not resolve dependency "python312>=3.12" \(from ..\/..\/lang\/python312\): no package in the tree matches it/);
    const pkg = await client.getPackage({ pkgname: "py313-six-1.17.0" });
    assert.deepEqual(pkg.package?.dependencies, ["python313-3.13.1"]);
    assert.equal(pkg.package?.multiVersion, "PYTHON_VERSION_REQD=313");
    const variants = await client.listPackages({ location: "lang/py-six" });
    assert.deepEqual(variants.packages.map((p) => p.pkgname), ["py312-six-1.17.0", "py313-six-1.17.0"]);
  });

  test("a bulk build runs to the end through NextReadyJob and MarkDone, and WatchJobs sees it", async () => {
    const build = (await client.createBuild({ platform: PLATFORM })).build!;
    const watch = new AbortController();
    const seen: string[] = [];
    const watching = (async () => {
      try {
        for await (const t of client.watchJobs({ buildId: build.id }, { signal: watch.signal })) {
          seen.push(`${t.pkgname}:${JobState[t.toState]}`);
        }
      } catch (e) {
        if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    const order: string[] = [];
    for (;;) {
      const { assignments } = await client.nextReadyJob({ platform: PLATFORM, agentId: "agent-1", maxJobs: 4 });
      if (assignments.length === 0) break;
      for (const a of assignments) {
        order.push(a.package!.pkgname);
        await client.markDone(done(a));
      }
    }
    assert.deepEqual(order, ["cwrappers-20220403", "gmake-4.4.1", "python313-3.13.1", "py313-six-1.17.0"]);
    const finished = await client.getBuild({ buildId: build.id });
    assert.equal(finished.build?.state, 2 /* FINISHED */);
    assert.equal(finished.build?.jobCounts["JOB_STATE_SUCCEEDED"], 4);
    assert.equal(finished.build?.jobCounts["JOB_STATE_PREFAILED"], 2);
    const prefailed = await client.listJobs({ buildId: build.id, states: [JobState.PREFAILED] });
    assert.deepEqual(prefailed.jobs.map((j) => [j.pkgname, j.reason]), [
      ["broken-1.0", "marked broken on NetBSD"],
      ["py312-six-1.17.0", 'could not resolve dependency "python312>=3.12"'],
    ]);
    const six = (await client.listJobs({ buildId: build.id, states: [JobState.SUCCEEDED] })).jobs.find((j) => j.pkgname === "py313-six-1.17.0")!;
    assert.equal(six.binaryPackage?.sha256, SHA);
    assert.equal(six.logRef, "logs/py313-six-1.17.0.log");
    watch.abort();
    await watching;
    assert.ok(seen.includes("gmake-4.4.1:LEASED"), seen.join(" "));
    assert.ok(seen.includes("py313-six-1.17.0:SUCCEEDED"), seen.join(" "));
  });

  test("NextReadyJob with a wait is answered as soon as a MarkDone makes a job ready", async () => {
    const { build } = await client.createBuild({ platform: "Waiting-1.0-x86_64", limitTo: ["devel/gmake"] });
    const [first] = (await client.nextReadyJob({ platform: "Waiting-1.0-x86_64", agentId: "a" })).assignments;
    assert.equal(first!.package!.pkgname, "cwrappers-20220403");
    const started = performance.now();
    const waiting = client.nextReadyJob({ platform: "Waiting-1.0-x86_64", agentId: "b", wait: durationFromMs(10_000) });
    await new Promise((r) => setTimeout(r, 100));
    await client.markDone(done(first!));
    const { assignments } = await waiting;
    assert.equal(assignments[0]?.package?.pkgname, "gmake-4.4.1");
    assert.deepEqual(assignments[0]?.dependencyPackages.map((p) => p.fileName), ["cwrappers-20220403.tgz"]);
    assert.ok(performance.now() - started < 5000, "woken by the MarkDone, not by the end of the wait");
    await client.cancelBuild({ buildId: build!.id });
  });

  test("an expired lease puts the job back, and the old lease is refused with FAILED_PRECONDITION", async () => {
    const { build } = await client.createBuild({ platform: "Expiring-1.0-x86_64", limitTo: ["pkgtools/cwrappers"] });
    const [a] = (await client.nextReadyJob({ platform: "Expiring-1.0-x86_64", agentId: "doomed", leaseDuration: durationFromMs(200) })).assignments;
    const { assignments } = await client.nextReadyJob({ platform: "Expiring-1.0-x86_64", agentId: "next", wait: durationFromMs(5000) });
    assert.equal(assignments[0]?.package?.pkgname, "cwrappers-20220403");
    assert.equal(assignments[0]?.attempt, 2);
    await expectCode(client.markDone(done(a!)), Code.FailedPrecondition, /is not held/);
    await client.markDone(done(assignments[0]!));
    assert.equal((await client.getBuild({ buildId: build!.id })).build?.state, 2);
  });

  test("bad input gets the right status and a message that says what to fix", async () => {
    await expectCode(client.getBuild({ buildId: "no-such-build" }), Code.NotFound, /no build has id/);
    await expectCode(client.createBuild({ platform: "" }), Code.InvalidArgument, /platform/);
    await expectCode(client.createBuild({ platform: PLATFORM, limitTo: ["../../etc"] }), Code.InvalidArgument, /neither a location/);
    await expectCode(client.createBuild({ platform: PLATFORM, limitTo: ["misc/absent"] }), Code.NotFound, /misc\/absent/);
    await expectCode(client.nextReadyJob({ platform: PLATFORM, agentId: "" }), Code.InvalidArgument, /agent_id/);
    await expectCode(client.markDone({ results: [] }), Code.InvalidArgument, /at least one/);
    await expectCode(client.listJobs({ buildId: "x", pageToken: "zz" }), Code.NotFound);
    await expectCode(client.getPackage({ pkgname: "nothing-1.0" }), Code.NotFound);
    // 17 MiB in one message: refused, and the server keeps serving.
    async function* huge() {
      yield { pbulkIndex: "x".repeat(17 * 1024 * 1024) };
    }
    await expectCode(client.importScan(huge()), Code.ResourceExhausted);
    assert.equal((await client.listPackages({ location: "devel/gmake" })).packages.length, 1);
  });

  test("@grpc/grpc-js, an independent gRPC implementation, drives a lease end to end", async () => {
    const grpcClient = new grpc.Client(server.url.replace("http://", ""), grpc.credentials.createInsecure());
    const call = <I extends DescMessage, O extends DescMessage>(method: string, input: I, output: O, message: MessageShape<I>) =>
      new Promise<MessageShape<O>>((resolve, reject) => {
        grpcClient.makeUnaryRequest(
          `/pkgfarm.v1.DepGraphService/${method}`,
          (m: MessageShape<I>) => Buffer.from(toBinary(input, m)),
          (b: Buffer) => fromBinary(output, b),
          message,
          (err, value) => (err ? reject(err) : resolve(value!)),
        );
      });
    try {
      const created = await call("CreateBuild", CreateBuildRequestSchema, CreateBuildResponseSchema,
        create(CreateBuildRequestSchema, { platform: "Interop-1.0-x86_64", limitTo: ["pkgtools/cwrappers"] }));
      const next = await call("NextReadyJob", NextReadyJobRequestSchema, NextReadyJobResponseSchema,
        create(NextReadyJobRequestSchema, { platform: "Interop-1.0-x86_64", agentId: "grpc-js" }));
      assert.equal(next.assignments[0]?.package?.pkgname, "cwrappers-20220403");
      const marked = await call("MarkDone", MarkDoneRequestSchema, MarkDoneResponseSchema, done(next.assignments[0]!));
      assert.equal(marked.newlyReady, 0);
      await assert.rejects(call("MarkDone", MarkDoneRequestSchema, MarkDoneResponseSchema, done(next.assignments[0]!)),
        (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION && /is not held/.test(e.details));
      assert.equal((await client.getBuild({ buildId: created.build!.id })).build?.state, 2);
    } finally {
      grpcClient.close();
    }
  });

  test("buf curl (standing in for grpcurl) lists the services by reflection and calls RPCs with JSON", async () => {
    const url = server.url;
    const listed = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", url]);
    const services = listed.stdout.trim().split("\n");
    assert.ok(services.includes("pkgfarm.v1.DepGraphService"), listed.stdout);
    assert.ok(services.includes("grpc.health.v1.Health"), listed.stdout);
    const created = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "--data", JSON.stringify({ platform: "Curl-1.0-x86_64", limitTo: ["devel/gmake"] }),
      `${url}/pkgfarm.v1.DepGraphService/CreateBuild`]);
    const build = JSON.parse(created.stdout).build;
    assert.equal(build.totalJobs, 2);
    assert.equal(build.jobCounts.JOB_STATE_READY, 1);
    const next = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "--data", JSON.stringify({ platform: "Curl-1.0-x86_64", agentId: "curl", wait: "1s" }),
      `${url}/pkgfarm.v1.DepGraphService/NextReadyJob`]);
    assert.equal(JSON.parse(next.stdout).assignments[0].package.pkgname, "cwrappers-20220403");
    const health = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--data", '{"service":"pkgfarm.v1.DepGraphService"}',
      `${url}/grpc.health.v1.Health/Check`]);
    assert.equal(JSON.parse(health.stdout).status, "SERVING");
    const stale = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge",
      "--data", JSON.stringify({ results: [{ buildId: build.id, pkgname: "cwrappers-20220403", leaseId: "forged", outcome: "JOB_OUTCOME_SUCCEEDED", binaryPackage: { fileName: "x.tgz", sha256: SHA } }] }),
      `${url}/pkgfarm.v1.DepGraphService/MarkDone`]).catch((e: { stderr: string }) => e);
    assert.match((stale as { stderr: string }).stderr, /failed_precondition/i);
  });
});
