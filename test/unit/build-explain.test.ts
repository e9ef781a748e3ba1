// The ETA and the "why is it waiting?" answers of the pure core
// (core/estimate.ts, core/explain.ts), and the build events made from the
// core's notifications (build-events.ts), on scripted time.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DepGraph } from "../../services/depgraph/core/depgraph.js";
import { estimateBuild, type ExpectedMs } from "../../services/depgraph/core/estimate.js";
import { explainJob } from "../../services/depgraph/core/explain.js";
import { createDurationHistory } from "../../services/depgraph/core/history.js";
import { buildKey, decodeState, encodeBuild, encodeJob, jobKey } from "../../services/depgraph/core/state-codec.js";
import { watchBuildEvents, type BuildEvent } from "../../services/depgraph/build-events.js";
import { fakeClock, record, testDepGraphOptions, type RecordSpec } from "../support/records.js";

const P = "Unit-1.0-x86_64";
const MIN = 60_000;

// base <- mid <- top, and base <- side: a chain of three beside a short branch.
const TREE: RecordSpec[] = [
  { pkgname: "base-1.0", location: "devel/base" },
  { pkgname: "mid-1.0", location: "devel/mid", deps: ["base>=1 devel/base"] },
  { pkgname: "top-1.0", location: "devel/top", deps: ["mid>=1 devel/mid"] },
  { pkgname: "side-1.0", location: "devel/side", deps: ["base>=1 devel/base"] },
  { pkgname: "broken-1.0", location: "misc/broken", fail: "marked broken" },
  { pkgname: "needs-broken-1.0", location: "misc/needs-broken", deps: ["broken>=1 misc/broken"] },
];

function setUp(withBuild = true) {
  const clock = fakeClock();
  const history = createDurationHistory([
    { pkgname: "base-1.0", location: "devel/base", succeeded: true, durationMs: 10 * MIN },
    { pkgname: "mid-1.0", location: "devel/mid", succeeded: true, durationMs: 20 * MIN },
    { pkgname: "top-1.0", location: "devel/top", succeeded: true, durationMs: 30 * MIN },
    { pkgname: "side-1.0", location: "devel/side", succeeded: true, durationMs: 5 * MIN },
  ]);
  const depgraph = new DepGraph(testDepGraphOptions({ now: clock.now, history }));
  depgraph.tree.replace(TREE.map(record), "tree");
  const build = withBuild ? depgraph.createBuild({ platform: P, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() }) : undefined!;
  const expectedMs: ExpectedMs = (job) => depgraph.expectedDurationMs(job);
  return { clock, depgraph, build, expectedMs };
}

describe("build estimate", () => {
  test("is the longest chain left or the work left over the running jobs, whichever is longer, and counts what a running job has done", () => {
    const { clock, depgraph, build, expectedMs } = setUp();
    const before = estimateBuild(build, expectedMs, clock.now())!;
    assert.equal(before.criticalPathLeftMs, 60 * MIN, "base + mid + top");
    assert.equal(before.workLeftMs, 65 * MIN);
    assert.equal(before.parallelism, 1, "nothing runs: at least one");
    assert.equal(before.remainingMs, 65 * MIN, "one host would do all the work in turn");

    depgraph.nextReadyJobs(P, "a1", 1, undefined);
    clock.advance(4 * MIN);
    const running = estimateBuild(build, expectedMs, clock.now())!;
    assert.equal(running.criticalPathLeftMs, 56 * MIN, "base has 6 of its 10 minutes left");
    assert.equal(running.workLeftMs, 61 * MIN);

    clock.advance(20 * MIN);
    assert.equal(estimateBuild(build, expectedMs, clock.now())!.criticalPathLeftMs, 50 * MIN, "a job over its time may end any moment: none of it is left");
  });

  test("is undefined once the build has ended", () => {
    const { clock, depgraph, build, expectedMs } = setUp();
    depgraph.cancelBuild(build.id);
    assert.equal(estimateBuild(build, expectedMs, clock.now()), undefined);
  });
});

describe("explainJob", () => {
  const context = (platformServed: boolean, now: number, expectedMs: ExpectedMs) => ({ expectedMs, now, platformServed, servedWindowMs: 120_000 });

  test("a waiting job names its unbuilt dependencies and follows the slowest one down to what runs", () => {
    const { clock, depgraph, build, expectedMs } = setUp();
    const [leased] = depgraph.nextReadyJobs(P, "a1", 1, undefined);
    depgraph.renewLeases([{ buildId: build.id, pkgname: leased!.job.pkgname, leaseId: leased!.lease.id, agentId: "a1", host: "h1" }], undefined);
    clock.advance(75_000);
    const top = explainJob(build, build.byPkgname.get("top-1.0")!, context(true, clock.now(), expectedMs));
    assert.equal(top.wait.kind, "dependencies");
    assert.deepEqual(top.wait.dependencies, ["mid-1.0"]);
    assert.deepEqual(top.chain.map((j) => j.pkgname), ["mid-1.0", "base-1.0"]);
    assert.equal(top.summary, "top-1.0 waits for 1 dependency: mid-1.0; the longest chain runs through mid-1.0 → base-1.0, which is building on host h1 for 1m15s");
    const mid = explainJob(build, build.byPkgname.get("mid-1.0")!, context(true, clock.now(), expectedMs));
    assert.equal(mid.summary, "mid-1.0 waits for 1 dependency: base-1.0, and base-1.0 is building on host h1 for 1m15s");
    const base = explainJob(build, build.byPkgname.get("base-1.0")!, context(true, clock.now(), expectedMs));
    assert.equal(base.wait.kind, "none");
    assert.equal(base.summary, "base-1.0 is building on host h1 for 1m15s");
  });

  test("a ready job waits for a host of its platform, or for a free slot, with the jobs before it counted", () => {
    const { depgraph, build, expectedMs, clock } = setUp();
    const base = build.byPkgname.get("base-1.0")!;
    assert.equal(base.state, "ready");
    const nobody = explainJob(build, base, context(false, clock.now(), expectedMs));
    assert.equal(nobody.wait.kind, "no-agent-for-platform");
    assert.equal(nobody.wait.detail, `ready; no build host of platform ${P} asked for work in the last 120 s`);
    const busy = explainJob(build, base, context(true, clock.now(), expectedMs));
    assert.equal(busy.wait.kind, "agents-busy");
    assert.match(busy.wait.detail, /\(0 jobs of this build running, 0 ready before it\)$/);
    assert.equal(depgraph.platformServed(P), false, "no dispatcher asked yet");
    depgraph.notePlatformServed(P);
    assert.equal(depgraph.platformServed(P), true);
    clock.advance(120_001);
    assert.equal(depgraph.platformServed(P), false, "an asking more than 120 s ago is forgotten");
  });

  test("an indirect failure is followed down to its root cause", () => {
    const { build, expectedMs, clock } = setUp();
    const job = build.byPkgname.get("needs-broken-1.0")!;
    assert.equal(job.state, "indirect-failed");
    const why = explainJob(build, job, context(true, clock.now(), expectedMs));
    assert.deepEqual(why.chain.map((j) => j.pkgname), ["broken-1.0"]);
    assert.equal(why.summary, "needs-broken-1.0 was not built: it needs broken-1.0, which cannot be built: marked broken");
  });
});

describe("build events", () => {
  test("a build starts once and ends once, after the transition that ended it", async () => {
    const { clock, depgraph } = setUp(false);
    const events: string[] = [];
    depgraph.onTransition((t) => events.push(`${t.pkgname}:${t.to}`));
    const stop = watchBuildEvents(depgraph, clock.now, (e: BuildEvent) => events.push(`build:${e.kind}:${e.build.state}`));
    const build = depgraph.createBuild({ platform: P, mode: "full", policy: undefined, limitTo: ["devel/base"], packagesDir: "", binaryPackages: new Map() });
    const [a] = depgraph.nextReadyJobs(P, "a1", 1, undefined);
    depgraph.markDone([{ buildId: build.id, pkgname: a!.job.pkgname, leaseId: a!.lease.id, succeeded: false, durationMs: 1, binaryPackage: undefined, logRef: "", failureReason: "no" }]);
    assert.deepEqual(events, ["build:started:running", "base-1.0:leased", "base-1.0:failed"], "the end comes once the call is over");
    await Promise.resolve();
    assert.deepEqual(events.slice(3), ["build:ended:finished"]);
    depgraph.cancelBuild(build.id);
    stop();
    assert.equal(events.length, 4, "cancelling an ended build announces nothing");
  });

  test("a build whose every job is terminal from the start starts and ends at once", () => {
    const { clock, depgraph } = setUp(false);
    const events: string[] = [];
    watchBuildEvents(depgraph, clock.now, (e) => events.push(`${e.kind}:${e.build.state}`));
    depgraph.createBuild({ platform: P, mode: "full", policy: undefined, limitTo: ["misc/needs-broken"], packagesDir: "", binaryPackages: new Map() });
    assert.deepEqual(events, ["started:finished", "ended:finished"]);
  });
});

describe("host and start time across a restart", () => {
  test("a stored job keeps the host that ran it and when it started; one stored before they were kept restores without", () => {
    const { clock, depgraph, build } = setUp();
    const [a] = depgraph.nextReadyJobs(P, "dispatcher@x", 1, undefined);
    const startedAt = clock.now();
    depgraph.renewLeases([{ buildId: build.id, pkgname: a!.job.pkgname, leaseId: a!.lease.id, agentId: "a1", host: "h1" }], undefined);
    const entries: [string, string][] = [[buildKey(build.id), encodeBuild(build)]];
    for (const job of build.jobs) {
      const doc = encodeJob(job);
      if (doc !== undefined) entries.push([jobKey(build.id, job.pkgname), doc]);
    }
    const decoded = decodeState(entries);
    assert.deepEqual(decoded.problems, []);
    const later = new DepGraph(testDepGraphOptions({ now: clock.now }));
    later.tree.replace(TREE.map(record), "tree");
    const restored = later.restoreBuild(decoded.builds[0]!).byPkgname.get(a!.job.pkgname)!;
    assert.deepEqual([restored.state, restored.agentId, restored.host, restored.startedAt], ["leased", "a1", "h1", startedAt]);

    const old = JSON.parse(entries[1]![1]) as Record<string, unknown>;
    delete old["host"];
    delete old["startedAt"];
    const before = decodeState([entries[0]!, [entries[1]![0], JSON.stringify(old)]]);
    const again = new DepGraph(testDepGraphOptions({ now: clock.now }));
    again.tree.replace(TREE.map(record), "tree");
    const plain = again.restoreBuild(before.builds[0]!).byPkgname.get(a!.job.pkgname)!;
    assert.deepEqual([plain.state, plain.host, plain.startedAt], ["leased", "", undefined]);
  });
});
