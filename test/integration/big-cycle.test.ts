// depgraph on loopback with a tree holding one 8,000-package cycle: health
// answers while CreateBuild is being worked out, and what ListJobs sends is
// bounded. The timing targets (CreateBuild under 2 s and 300 MB, health
// within 100 ms) are measured by `npm run bench:big-cycle`.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { DepGraphService, JobState, ListJobsResponseSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { Build } from "../../services/depgraph/core/build.js";
import type { CreateBuildRequest, PendingBuild } from "../../services/depgraph/core/depgraph.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { BIG_CYCLE_SHAPE, bigGraphScan } from "../support/big-graph.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { grpcJsHealthClient } from "../support/grpc-health.js";

const PLATFORM = "NetBSD-10.0-x86_64";
const FOUR_MIB = 4 * 1024 * 1024;

let server: RunningDepGraph;
let client: Client<typeof DepGraphService>;

before(async () => {
  server = await startTestDepGraph();
  client = createClient(DepGraphService, createPkgfarmTransport(server.url));
  const text = bigGraphScan();
  async function* chunks() {
    for (let at = 0; at < text.length; at += 1 << 20) yield { pbulkIndex: text.slice(at, at + (1 << 20)) };
  }
  const imported = await client.importScan(chunks());
  assert.equal(imported.tree?.cycles.length, 1);
  assert.equal(imported.tree?.cycles[0]?.pkgnames.length, BIG_CYCLE_SHAPE.cycle);
});

after(async () => {
  await server.close();
});

/**
 * Follows the core's CreateBuild steps from outside (the real steps, only
 * counted), so the test can tell that a health answer came while the build
 * was still being worked out and not before it started or after it ended.
 */
function watchCreateBuild(depgraph: RunningDepGraph["depgraph"]): { readonly slices: number; readonly finished: boolean } {
  const progress = { slices: 0, finished: false };
  const steps = depgraph.requestBuildSteps.bind(depgraph);
  depgraph.requestBuildSteps = function* (request: CreateBuildRequest) {
    const build: Build | PendingBuild = yield* (function* () {
      const inner = steps(request);
      for (;;) {
        const step = inner.next();
        progress.slices++;
        if (step.done) return step.value;
        yield;
      }
    })();
    progress.finished = true;
    return build;
  };
  return progress;
}

test("health answers while CreateBuild of an 8,000-package cycle is in progress, and job pages stay under 4 MiB", async () => {
  const progress = watchCreateBuild(server.depgraph);
  const health = grpcJsHealthClient(`127.0.0.1:${server.port}`);
  try {
    let created = false;
    const building = client.createBuild({ platform: PLATFORM }).finally(() => (created = true));
    const answers: { slices: number; finished: boolean; status: ServingStatus }[] = [];
    const deadline = Date.now() + 120_000;
    while (!created) {
      assert.ok(Date.now() < deadline, "CreateBuild did not finish within 120 s");
      const answer = await health.check("pkgfarm.v1.DepGraphService");
      answers.push({ slices: progress.slices, finished: progress.finished, status: answer.status });
    }
    const { build } = await building;
    assert.ok(answers.every((a) => a.status === ServingStatus.SERVING));
    const during = answers.filter((a) => a.slices > 0 && !a.finished);
    assert.ok(during.length >= 1, `health answered ${answers.length} times, none while the build was being worked out: ${JSON.stringify(answers)}`);
    assert.ok(progress.finished && progress.slices > during[during.length - 1]!.slices, "slices were still to come after the last answer counted");
    assert.equal(build?.totalJobs, BIG_CYCLE_SHAPE.cycle + BIG_CYCLE_SHAPE.base + BIG_CYCLE_SHAPE.above);
    assert.equal(build?.jobCounts.JOB_STATE_CYCLE, BIG_CYCLE_SHAPE.cycle);

    // The default page of cycle jobs, and the largest page a client can ask for.
    for (const pageSize of [0, 10_000]) {
      const page = await client.listJobs({ buildId: build!.id, states: [JobState.CYCLE], pageSize });
      const bytes = toBinary(ListJobsResponseSchema, create(ListJobsResponseSchema, page)).byteLength;
      assert.ok(bytes < FOUR_MIB, `a page of ${page.jobs.length} cycle jobs is ${bytes} bytes`);
      assert.ok(page.jobs.length >= 1000 && page.nextPageToken !== "");
      for (const job of page.jobs) {
        assert.equal(job.cycleSize, BIG_CYCLE_SHAPE.cycle);
        assert.equal(job.cycle.length, 32);
        assert.match(job.reason, /^member of a dependency cycle of 8,000 packages: /);
      }
    }
    // The whole list of cycle jobs is there, page after page.
    let token = "";
    let listed = 0;
    for (let pages = 0; pages < 100; pages++) {
      const page = await client.listJobs({ buildId: build!.id, states: [JobState.CYCLE], pageSize: 10_000, pageToken: token });
      listed += page.jobs.length;
      token = page.nextPageToken;
      if (token === "") break;
    }
    assert.equal(listed, BIG_CYCLE_SHAPE.cycle);
  } finally {
    health.close();
  }
});
