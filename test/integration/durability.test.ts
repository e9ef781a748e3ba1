import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { connect, type NatsConnection } from "nats";
import { pino } from "pino";
import { DepGraphService, JobState } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DepGraph } from "../../services/depgraph/core/depgraph.js";
import { openKvStateStore } from "../../services/depgraph/kv-state-store.js";
import { ensureMetaStream, metaConsumerLag, publishMetaEvent, RECORDS_SUBJECT, startMetaConsumer, type AppliedChange } from "../../services/depgraph/meta-events.js";
import { locationKey } from "../../services/depgraph/core/state-codec.js";
import { ackWhenStored, persistState } from "../../services/depgraph/state-persister.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";
import { startNatsServer, type TestNatsServer } from "../support/nats-server.js";
import { testDepGraphOptions } from "../support/records.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const silent = pino({ level: "silent" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const RECORD = `PKGNAME=durable-1.0
PKG_LOCATION=misc/durable
ALL_DEPENDS=
PKG_SKIP_REASON=
PKG_FAIL_REASON=
CATEGORIES=misc
`;

describe("durability: acks after storing, restored leases", () => {
  let events: TestNatsServer;
  let state: TestNatsServer;

  before(async () => {
    events = await startNatsServer();
    state = await startNatsServer();
  });
  after(async () => {
    await events.stop();
    await state.stop();
  });

  test("a change event is not acked while the state store is away, and is acked once its change is stored", { timeout: 60_000 }, async () => {
    // The same parts as depgraph's: the state store's NATS (here a server of
    // its own, so it can be stopped while events still flow) and the event consumer.
    const ncEvents = await connect({ servers: events.url });
    const ncState: NatsConnection = await connect({ servers: state.url, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const depgraph = new DepGraph(testDepGraphOptions({ now: Date.now }));
    const store = await openKvStateStore({ nc: ncState, logger: silent, bucket: "acks", onFenced: () => {} });
    await store.load();
    const unpersist = persistState(store, depgraph);
    await ensureMetaStream(ncEvents);
    const acked: { change: AppliedChange; at: number }[] = [];
    const consumer = startMetaConsumer({
      nc: ncEvents, depgraph, logger: silent, scanHelper: undefined, durableName: "acks",
      durable: ackWhenStored(store),
      onApplied: (change) => acked.push({ change, at: Date.now() }),
    });
    try {
      await state.kill();
      await publishMetaEvent(ncEvents, RECORDS_SUBJECT, { locations: ["misc/durable"], pbulkIndex: RECORD });
      await eventually("the change applied to the tree", async () => (depgraph.tree.get("durable-1.0") !== undefined ? true : undefined));
      assert.ok(store.backlog > 0, "the change's write waits for the store");
      // The event is delivered and not yet acked: NATS counts it as pending an ack.
      assert.equal(await metaConsumerLag(ncEvents, 2000, "acks"), 1);
      // Longer than the 2 s an RPC waits for the store, which is when an ack used to go out regardless.
      await sleep(3000);
      const restartedAt = Date.now();
      await state.restart();
      const ack = await eventually("the event acked", async () => acked[0], 20_000);
      assert.deepEqual(ack.change.locations, ["misc/durable"]);
      assert.ok(ack.at >= restartedAt, `acked ${restartedAt - ack.at} ms before the store came back`);
      assert.equal(store.backlog, 0, "the change was stored when the event was acked");
      assert.equal(await metaConsumerLag(ncEvents, 2000, "acks"), 0);
      // The stored change is what a restart reads.
      const check = await connect({ servers: state.url });
      try {
        const kv = await check.jetstream().views.kv("acks");
        const entry = await kv.get(locationKey("misc/durable"));
        assert.match(entry?.string() ?? "", /PKGNAME=durable-1\.0/);
      } finally {
        await check.close();
      }
    } finally {
      await consumer.stop();
      unpersist();
      await store.close();
      await ncEvents.drain();
      await ncState.close();
    }
  });

  test("a lease restored after a restart expires on its own deadline, with no call to arm it", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "pkgfarm-lease-restore-"));
    writeFileSync(join(dir, "scan.txt"), execFileSync(process.execPath, [join(ROOT, "examples", "bin", "scan-one.mjs"), "--all"], { encoding: "utf8" }));
    const platform = "Restore-1.0-x86_64";
    const bucket = "lease-restore";
    const first = await startTestDepGraph({ importFile: join(dir, "scan.txt"), natsUrl: events.url, state: "nats-kv", stateBucket: bucket });
    let buildId = "";
    let pkgname = "";
    try {
      const client = createClient(DepGraphService, createPkgfarmTransport(first.url));
      buildId = (await client.createBuild({ platform, limitTo: ["pkgtools/cwrappers"] })).build!.id;
      const [leased] = (await client.nextReadyJob({ platform, agentId: "gone-agent", maxJobs: 1, leaseDuration: durationFromMs(5_000) })).assignments;
      pkgname = leased!.package!.pkgname;
      await first.stateSettled();
    } finally {
      await first.close();
    }
    // Restored leases get a fresh deadline of the length their holder asked
    // for (5 s), not the default (10 min here), which would keep it leased.
    const second = await startTestDepGraph({ natsUrl: events.url, state: "nats-kv", stateBucket: bucket, defaultLeaseMs: 600_000 });
    const restoredAt = Date.now();
    try {
      const client = createClient(DepGraphService, createPkgfarmTransport(second.url));
      const job = async () => (await client.listJobs({ buildId })).jobs.find((j) => j.pkgname === pkgname)!;
      const restored = await job();
      if (Date.now() - restoredAt < 1000) assert.equal(restored.state, JobState.LEASED, "restored as leased");
      // Only reads from here on: nothing that used to arm the lease timer.
      const expired = await eventually("the restored lease to expire", async () => {
        const j = await job();
        return j.state === JobState.READY ? j : undefined;
      }, 15_000);
      assert.match(expired.reason, /expired/);
      assert.equal(expired.attempts, 1);
    } finally {
      await second.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
