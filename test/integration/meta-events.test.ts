import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { connect } from "nats";
import { DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { FILES_SUBJECT, META_STREAM, RECORDS_SUBJECT, metaConsumerLag, publishMetaEvent, startMetaConsumer } from "../../services/depgraph/meta-events.js";
import { DepGraph } from "../../services/depgraph/core/depgraph.js";
import { testDepGraphOptions } from "../support/records.js";
import { pino } from "pino";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";
import { startNatsServer, type TestNatsServer } from "../support/nats-server.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const SCAN_ONE = join(ROOT, "examples", "bin", "scan-one.mjs");

const NEW_RECORD = (version: string) => `PKGNAME=newpkg-${version}
PKG_LOCATION=misc/newpkg
ALL_DEPENDS=gmake>=4:../../devel/gmake
PKG_SKIP_REASON=
PKG_FAIL_REASON=
CATEGORIES=misc
SCAN_DEPENDS=../../misc/newpkg/Makefile
`;

describe("package-metadata change events over NATS JetStream", () => {
  let nats: TestNatsServer;
  let treeDir: string;
  let server: RunningDepGraph;
  let client: Client<typeof DepGraphService>;

  before(async () => {
    nats = await startNatsServer();
    treeDir = mkdtempSync(join(tmpdir(), "pkgfarm-tree-"));
    cpSync(join(ROOT, "examples", "tree"), treeDir, { recursive: true });
    writeFileSync(join(treeDir, "scan.txt"), execFileSync(process.execPath, [SCAN_ONE, "--tree", treeDir, "--all"], { encoding: "utf8" }));
    server = await startTestDepGraph({ importFile: join(treeDir, "scan.txt"), natsUrl: nats.url, scanHelper: [process.execPath, SCAN_ONE], treeDir });
    client = createClient(DepGraphService, createPkgfarmTransport(server.url));
  });
  after(async () => {
    await server.close();
    await nats.stop();
    rmSync(treeDir, { recursive: true, force: true });
  });

  test("a consumer stopped while it is still being set up stops, and its connection can drain", { timeout: 10_000 }, async () => {
    // First in this file, so the stream holds no event that would wake it.
    const nc = await connect({ servers: nats.url });
    const depgraph = new DepGraph(testDepGraphOptions({}));
    // Stopped before its first consume() is set up: it used to wait for a
    // message that never came, so a depgraph closed right after starting kept
    // its NATS connection (and the process) alive.
    const consumer = startMetaConsumer({ nc, depgraph, logger: pino({ level: "silent" }), scanHelper: undefined, durableName: "stop-at-start" });
    await consumer.stop();
    await nc.drain();
  });

  test("a records event adds a package; publishing it again is a duplicate and changes nothing", async () => {
    const file = join(treeDir, "newpkg.txt");
    writeFileSync(file, NEW_RECORD("1.0"));
    const first = await promisify(execFile)(process.execPath, [CLI, "publish", "--nats", nats.url, "--records", file]);
    assert.match(first.stdout, /published 1 event\(s\); 0 already in the stream/);
    const pkg = await eventually("newpkg in the tree", async () => (await client.getPackage({ pkgname: "newpkg-1.0" })).package);
    assert.deepEqual([...pkg.dependencies], ["gmake-4.4.1"]);
    const revision = server.depgraph.tree.revision;
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await nc.jetstreamManager();
      const lastSeq = (await jsm.streams.info(META_STREAM)).state.last_seq;
      const again = await promisify(execFile)(process.execPath, [CLI, "publish", "--nats", nats.url, "--records", file]);
      assert.match(again.stdout, /published 0 event\(s\); 1 already in the stream/);
      // Nothing new reached the stream, and the consumer has taken all it holds.
      assert.equal((await jsm.streams.info(META_STREAM)).state.last_seq, lastSeq);
      await eventually("the consumer caught up", async () => ((await metaConsumerLag(nc, 2000)) === 0 ? true : undefined));
    } finally {
      await nc.drain();
    }
    assert.equal(server.depgraph.tree.revision, revision);
  });

  test("a changed Makefile is rescanned with the scan helper and its new requirements applied", async () => {
    const makefile = join(treeDir, "misc", "omelette", "Makefile");
    writeFileSync(makefile, readFileSync(makefile, "utf8").replace("DEPENDS+=\tegg>=1.0:../../misc/egg", "DEPENDS+=\tgmake>=4:../../devel/gmake"));
    const nc = await connect({ servers: nats.url });
    try {
      await publishMetaEvent(nc, FILES_SUBJECT, { files: ["misc/omelette/Makefile", "doc/CHANGES-2026"] });
    } finally {
      await nc.drain();
    }
    const deps = await eventually("omelette's new dependency", async () => {
      const names = (await client.getPackage({ pkgname: "omelette-1.0" })).package!.dependencies;
      return names.includes("gmake-4.4.1") ? [...names] : undefined;
    });
    assert.deepEqual(deps, ["gmake-4.4.1"]);
  });

  test("a file of a package directory the tree does not know yet is scanned as a new package", async () => {
    mkdirSync(join(treeDir, "misc", "frittata"));
    writeFileSync(join(treeDir, "misc", "frittata", "Makefile"), "DISTNAME=\tfrittata-2.0\nCATEGORIES=\tmisc\nCOMMENT=\tnew package\n\nDEPENDS+=\tgmake>=4:../../devel/gmake\n");
    const nc = await connect({ servers: nats.url });
    try {
      await publishMetaEvent(nc, FILES_SUBJECT, { files: ["misc/frittata/Makefile", "nonsense/x/y"] });
    } finally {
      await nc.drain();
    }
    const pkg = await eventually("the new package", async () => (await client.getPackage({ pkgname: "frittata-2.0" })).package);
    assert.equal(pkg.location, "misc/frittata");
    assert.deepEqual(pkg.dependencies, ["gmake-4.4.1"]);
  });

  test("a package directory deleted from the tree removes its package; one whose scan fails stays", async () => {
    // git diff --name-only of a deleted package lists its files.
    rmSync(join(treeDir, "misc", "frittata"), { recursive: true });
    // cowsay's Makefile is broken, not gone: its rescan fails and it keeps its records.
    const cowsay = join(treeDir, "misc", "cowsay", "Makefile");
    const cowsayText = readFileSync(cowsay, "utf8");
    writeFileSync(cowsay, "this is not a Makefile\n");
    const nc = await connect({ servers: nats.url });
    try {
      await publishMetaEvent(nc, FILES_SUBJECT, { files: ["misc/frittata/Makefile", "misc/cowsay/Makefile"] });
      await eventually("frittata removed", async () => ((await client.listPackages({ location: "misc/frittata" })).packages.length === 0 ? true : undefined));
      assert.equal((await client.listPackages({ location: "misc/cowsay" })).packages.length, 1);
    } finally {
      await nc.drain();
      writeFileSync(cowsay, cowsayText);
    }
  });

  test("job transitions of a build arrive on pkgfarm.build.<id>.job.<state>", async () => {
    const nc = await connect({ servers: nats.url });
    const subjects: string[] = [];
    const sub = nc.subscribe("pkgfarm.build.>", { callback: (_e, m) => subjects.push(m.subject) });
    await nc.flush();
    const { build } = await client.createBuild({ platform: "Events-1.0-x86_64", limitTo: ["pkgtools/cwrappers"] });
    await client.nextReadyJob({ platform: "Events-1.0-x86_64", agentId: "watcher" });
    await eventually("the leased event", async () => (subjects.includes(`pkgfarm.build.${build!.id}.job.leased`) ? true : undefined));
    sub.unsubscribe();
    await nc.drain();
    await client.cancelBuild({ buildId: build!.id });
  });

  test("a burst of events is applied in full and every event is acked", async () => {
    const nc = await connect({ servers: nats.url });
    try {
      const events = Array.from({ length: 300 }, (_, i) => ({ locations: ["misc/burst"], pbulkIndex: NEW_RECORD(`3.${i}`).replaceAll("newpkg", "burst") }));
      await Promise.all(events.map((e) => publishMetaEvent(nc, RECORDS_SUBJECT, e)));
      // Events are taken in stream order, so the last one's version stays.
      await eventually("the burst's last version", async () => (await client.getPackage({ pkgname: "burst-3.299" })).package);
      await eventually("no event left unacked", async () => ((await metaConsumerLag(nc, 2_000)) === 0 ? true : undefined));
      assert.equal((await client.listPackages({ location: "misc/burst" })).packages.length, 1);
    } finally {
      await nc.drain();
    }
  });

  test("with NATS down depgraph keeps serving; a change published after it returns is applied", async () => {
    await nats.kill();
    const listed = await client.listPackages({ location: "devel/gmake" });
    assert.equal(listed.packages.length, 1);
    await nats.restart();
    const file = join(treeDir, "newpkg2.txt");
    writeFileSync(file, NEW_RECORD("2.0"));
    await promisify(execFile)(process.execPath, [CLI, "publish", "--nats", nats.url, "--records", file]);
    await eventually("newpkg-2.0 after the outage", async () => (await client.getPackage({ pkgname: "newpkg-2.0" })).package, 20_000);
    await assert.rejects(client.getPackage({ pkgname: "newpkg-1.0" }), "the location's old version was replaced");
  });
});
