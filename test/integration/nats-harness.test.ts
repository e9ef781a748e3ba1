import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, nanos, StringCodec, type NatsConnection } from "nats";
import { startNatsServer, type TestNatsServer } from "../support/nats-server.js";

const sc = StringCodec();
const STREAM = "PKGFARM_META";
const SUBJECT = "pkgfarm.meta.changed.tree";

let ns: TestNatsServer;
before(async () => {
  ns = await startNatsServer();
});
after(async () => {
  await ns.stop();
});

async function withConnection<T>(fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({ servers: ns.url });
  try {
    return await fn(nc);
  } finally {
    await nc.close();
  }
}

test("the server listens on its own port, not the default 4222", () => {
  assert.notEqual(ns.port, 4222);
  assert.equal(ns.url, `nats://127.0.0.1:${ns.port}`);
});

test("JetStream drops a duplicate message id, and the stream survives SIGKILL", async () => {
  await withConnection(async (nc) => {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: STREAM, subjects: ["pkgfarm.meta.changed.>"], duplicate_window: nanos(60_000) });
    const js = nc.jetstream();

    const first = await js.publish(SUBJECT, sc.encode("devel/zlib/buildlink3.mk"), { msgID: "tree-abc123" });
    assert.equal(first.duplicate, false);
    assert.equal(first.seq, 1);
    const again = await js.publish(SUBJECT, sc.encode("devel/zlib/buildlink3.mk"), { msgID: "tree-abc123" });
    assert.equal(again.duplicate, true, "same msgID within duplicate_window");
    assert.equal(again.seq, 1, "a duplicate reports the original's sequence");
    const other = await js.publish(SUBJECT, sc.encode("mk/bsd.pkg.mk"), { msgID: "tree-def456" });
    assert.equal(other.duplicate, false);
    assert.equal(other.seq, 2);

    const info = await jsm.streams.info(STREAM);
    assert.equal(info.state.messages, 2);
  });

  // The ack comes back before the file store's flusher writes the block (it
  // coalesces for a few milliseconds), so a SIGKILL right away could lose the
  // last message: that is the server's durability contract, not the harness's.
  await sleep(200);
  await ns.kill();
  await assert.rejects(connect({ servers: ns.url, reconnect: false, timeout: 500 }), "killed server refuses connections");
  await ns.restart();

  await withConnection(async (nc) => {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(STREAM);
    assert.equal(info.state.messages, 2);
    const m1 = await jsm.streams.getMessage(STREAM, { seq: 1 });
    assert.equal(sc.decode(m1.data), "devel/zlib/buildlink3.mk");
    const m2 = await jsm.streams.getMessage(STREAM, { seq: 2 });
    assert.equal(sc.decode(m2.data), "mk/bsd.pkg.mk");

    // The duplicate window is rebuilt from the stored Nats-Msg-Id headers, so a
    // publisher retrying across a server crash is still deduplicated.
    const js = nc.jetstream();
    const retry = await js.publish(SUBJECT, sc.encode("devel/zlib/buildlink3.mk"), { msgID: "tree-abc123" });
    assert.equal(retry.duplicate, true);
    assert.equal((await jsm.streams.info(STREAM)).state.messages, 2);
  });
});

test("stop() removes the store", async () => {
  const other = await startNatsServer();
  assert.ok(existsSync(other.storeDir));
  await other.stop();
  assert.ok(!existsSync(other.storeDir));
  await other.stop(); // idempotent
});
