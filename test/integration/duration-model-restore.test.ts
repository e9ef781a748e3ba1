import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { DepGraphService, JobOutcome, MarkDoneRequestSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { startNatsServer, type TestNatsServer } from "../support/nats-server.js";

const PLATFORM = "Speed-1.0-x86_64";

const SCAN = ["a", "b", "c"].map((name) => `PKGNAME=${name}-1.0
PKG_LOCATION=misc/${name}
ALL_DEPENDS=
PKG_SKIP_REASON=
PKG_FAIL_REASON=
CATEGORIES=misc
`).join("");

/** Builds the listed locations, every job reported by host, each taking durationMs. */
async function buildOn(client: Client<typeof DepGraphService>, locations: string[], host: string, ms: number): Promise<void> {
  await client.createBuild({ platform: PLATFORM, limitTo: locations });
  const { assignments } = await client.nextReadyJob({ platform: PLATFORM, agentId: "dispatcher", maxJobs: locations.length });
  assert.equal(assignments.length, locations.length);
  await client.markDone(create(MarkDoneRequestSchema, {
    results: assignments.map((a) => ({
      buildId: a.buildId, pkgname: a.package!.pkgname, leaseId: a.leaseId, agentId: host, outcome: JobOutcome.SUCCEEDED, duration: durationFromMs(ms),
      binaryPackage: { fileName: `${a.package!.pkgname}.tgz`, sha256: "ab".repeat(32), sizeBytes: 1n },
    })),
  }));
}

describe("duration model in JetStream KV", () => {
  let nats: TestNatsServer;
  let dir: string;

  before(async () => {
    nats = await startNatsServer();
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-durations-"));
    writeFileSync(join(dir, "scan.txt"), SCAN);
  });
  after(async () => {
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a restarted depgraph keeps the host speeds it learnt: a slow host's new build counts at reference speed", { timeout: 60_000 }, async () => {
    const bucket = "durations";
    const first = await startTestDepGraph({ importFile: join(dir, "scan.txt"), natsUrl: nats.url, state: "nats-kv", stateBucket: bucket });
    try {
      const client = createClient(DepGraphService, createPkgfarmTransport(first.url));
      await buildOn(client, ["misc/a", "misc/b"], "fast", 1000);
      // The same packages, four times as long: "slow" runs at a quarter of "fast".
      await buildOn(client, ["misc/a", "misc/b"], "slow", 4000);
      await first.stateSettled();
    } finally {
      await first.close();
    }
    const second = await startTestDepGraph({ natsUrl: nats.url, state: "nats-kv", stateBucket: bucket });
    try {
      const client = createClient(DepGraphService, createPkgfarmTransport(second.url));
      const expected = async (pkgname: string) => {
        const { package: pkg } = await client.getPackage({ pkgname, platform: PLATFORM });
        return pkg?.expectedDuration === undefined ? undefined : durationMs(pkg.expectedDuration);
      };
      assert.equal(await expected("a-1.0"), 1000);
      // Only a restored speed turns the slow host's 4 s into 1 s.
      await buildOn(client, ["misc/c"], "slow", 4000);
      assert.equal(await expected("c-1.0"), 1000);
    } finally {
      await second.close();
    }
  });
});
