import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import {
  BuildState,
  DepGraphService,
  JobOutcome,
  JobState,
  MarkDoneRequestSchema,
  type Assignment,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { connect } from "nats";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { eventually } from "../support/eventually.js";
import { freePort, startNatsServer, type TestNatsServer } from "../support/nats-server.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const SCAN_ONE = join(ROOT, "examples", "bin", "scan-one.mjs");
const PLATFORM = "NetBSD-10.0-x86_64";
const SHA = "cd".repeat(32);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function done(a: Assignment) {
  return create(MarkDoneRequestSchema, {
    results: [{
      buildId: a.buildId, pkgname: a.package!.pkgname, leaseId: a.leaseId, outcome: JobOutcome.SUCCEEDED,
      duration: durationFromMs(1000), logRef: `logs/${a.package!.pkgname}.log`,
      binaryPackage: { fileName: `${a.package!.pkgname}.tgz`, sha256: SHA, sizeBytes: 10n },
    }],
  });
}

/** A depgraph process of its own, so it can be SIGKILLed like a crashed pod. */
class DepGraphProcess {
  private child: ChildProcess | undefined;
  exited: Promise<number | null> = Promise.resolve(null);

  constructor(private readonly port: number, private readonly natsUrl: string, private readonly bucket: string) {}

  async start(extra: string[] = []): Promise<void> {
    const child = spawn(process.execPath, [CLI, "depgraph", "--port", String(this.port), "--nats", this.natsUrl,
      "--state", "nats-kv", "--state-bucket", this.bucket, "--log-level", "warn", ...extra], { stdio: ["ignore", "ignore", "inherit"] });
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    const client = this.client();
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await client.listBuilds({});
        return;
      } catch {
        if (Date.now() > deadline) throw new Error("depgraph did not come up");
        await sleep(50);
      }
    }
  }

  client(): Client<typeof DepGraphService> {
    return createClient(DepGraphService, createPkgfarmTransport(`http://127.0.0.1:${this.port}`));
  }

  async kill(): Promise<void> {
    this.child?.kill("SIGKILL");
    await this.exited;
  }

  async stop(): Promise<void> {
    this.child?.kill("SIGTERM");
    await this.exited;
  }
}

describe("depgraph state in JetStream KV", () => {
  let nats: TestNatsServer;
  let dir: string;
  let scanFile: string;

  before(async () => {
    nats = await startNatsServer();
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-state-"));
    scanFile = join(dir, "scan.txt");
    writeFileSync(scanFile, execFileSync(process.execPath, [SCAN_ONE, "--tree", join(ROOT, "examples", "tree"), "--all"], { encoding: "utf8" }));
  });
  after(async () => {
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a depgraph killed mid-build resumes every build; no result is lost and none is taken twice", async () => {
    const first = new DepGraphProcess(await freePort(), nats.url, "resume");
    await first.start(["--import", scanFile]);
    let client = first.client();
    const { build } = await client.createBuild({ platform: PLATFORM });
    const leaseOne = async () => {
      const [job] = (await client.nextReadyJob({ platform: PLATFORM, agentId: "agent-1", maxJobs: 1 })).assignments;
      assert.ok(job !== undefined, "a job is ready");
      return job;
    };
    const a = await leaseOne();
    await client.markDone(done(a));
    const b = await leaseOne();
    await client.markDone(done(b));
    const c = await leaseOne();
    const before = (await client.getBuild({ buildId: build!.id })).build!;

    await first.kill();
    const second = new DepGraphProcess(first["port"], nats.url, "resume");
    await second.start();
    client = second.client();

    const restored = (await client.getBuild({ buildId: build!.id })).build!;
    assert.deepEqual(restored.jobCounts, before.jobCounts);
    assert.equal(restored.totalJobs, before.totalJobs);
    assert.equal(restored.state, BuildState.RUNNING);
    const jobs = new Map((await client.listJobs({ buildId: build!.id })).jobs.map((j) => [j.pkgname, j]));
    assert.equal(jobs.get(a.package!.pkgname)?.state, JobState.SUCCEEDED);
    assert.equal(jobs.get(c.package!.pkgname)?.state, JobState.LEASED);

    // A result reported before the crash stays reported: a retry is refused.
    await assert.rejects(client.markDone(done(a)), (e) => ConnectError.from(e).code === Code.FailedPrecondition);
    // A lease granted before the crash is still good: the agent's work is kept.
    await client.markDone(done(c));

    const finished = new Set([a, b, c].map((x) => x.package!.pkgname));
    for (;;) {
      const next = (await client.nextReadyJob({ platform: PLATFORM, agentId: "agent-2", maxJobs: 8 })).assignments;
      if (next.length === 0) break;
      for (const job of next) {
        assert.ok(!finished.has(job.package!.pkgname), `${job.package!.pkgname} handed out again after it finished`);
        finished.add(job.package!.pkgname);
        await client.markDone(done(job));
      }
    }
    const end = (await client.getBuild({ buildId: build!.id })).build!;
    assert.equal(end.state, BuildState.FINISHED);
    assert.equal(end.jobCounts["JOB_STATE_SUCCEEDED"], finished.size);
    for (const job of (await client.listJobs({ buildId: build!.id, states: [JobState.SUCCEEDED] })).jobs) {
      assert.equal(job.attempts, 1, `${job.pkgname} was leased ${job.attempts} times`);
    }
    await second.stop();
  });

  test("builds past --keep-finished-builds are forgotten, leaving no key for a restart to read", { timeout: 60_000 }, async () => {
    const bucket = "forget";
    const first = new DepGraphProcess(await freePort(), nats.url, bucket);
    await first.start(["--import", scanFile, "--keep-finished-builds", "1"]);
    let client = first.client();
    const startAndCancel = async () => {
      const { build } = await client.createBuild({ platform: PLATFORM, limitTo: ["pkgtools/cwrappers"] });
      // A leased job, so the build has job keys as well as its own.
      assert.equal((await client.nextReadyJob({ platform: PLATFORM, agentId: "agent-1", maxJobs: 1 })).assignments.length, 1);
      await client.cancelBuild({ buildId: build!.id });
      return build!.id;
    };
    const oldest = await startAndCancel();
    const kept = await startAndCancel();
    // Builds are forgotten as a new one starts.
    const { build: newest } = await client.createBuild({ platform: PLATFORM });
    const nc = await connect({ servers: nats.url });
    try {
      // Purged, not deleted: not even a delete marker is left in the stream.
      const jsm = await nc.jetstreamManager();
      const subjectsOf = async (buildId: string) => {
        const stream = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: ">" });
        const token = Buffer.from(buildId).toString("base64url");
        return Object.keys(stream.state.subjects ?? {}).filter((subject) => subject.includes(token));
      };
      await eventually("the oldest build's keys gone", async () => ((await subjectsOf(oldest)).length === 0 ? true : undefined));
      assert.ok((await subjectsOf(kept)).length >= 2, "the kept build has its build key and a job key");
      await assert.rejects(client.getBuild({ buildId: oldest }), (e) => ConnectError.from(e).code === Code.NotFound);

      await first.stop();
      const second = new DepGraphProcess(first["port"], nats.url, bucket);
      await second.start(["--keep-finished-builds", "1"]);
      client = second.client();
      assert.deepEqual((await client.listBuilds({})).builds.map((b) => b.id), [newest!.id, kept]);
      await second.stop();
    } finally {
      await nc.drain();
    }
  });

  test("a second depgraph on the same bucket takes over, and the first one stops", async () => {
    const first = new DepGraphProcess(await freePort(), nats.url, "fence");
    await first.start(["--import", scanFile]);
    const { build } = await first.client().createBuild({ platform: PLATFORM });

    const second = new DepGraphProcess(await freePort(), nats.url, "fence");
    await second.start();
    assert.equal((await second.client().getBuild({ buildId: build!.id })).build!.id, build!.id);
    // The first one notices the new writer and exits non-zero instead of writing on.
    assert.equal(await first.exited, 1);
    const leased = await second.client().nextReadyJob({ platform: PLATFORM, agentId: "agent-1", maxJobs: 1 });
    assert.equal(leased.assignments.length, 1);
    await second.stop();
  });
});
