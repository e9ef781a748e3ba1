import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import type { JobState } from "../../services/depgraph/core/build.js";
import { DepGraph } from "../../services/depgraph/core/depgraph.js";
import { StaleLease } from "../../services/depgraph/core/errors.js";
import { createDurationHistory } from "../../services/depgraph/core/history.js";
import { persistState, restoreState } from "../../services/depgraph/state-persister.js";
import { createMemoryStateStore } from "../../services/depgraph/state-store.js";
import { fakeClock, record, testDepGraphOptions, type RecordSpec } from "../support/records.js";

const PLATFORM = "NetBSD-10.0-x86_64";
const BINARY = { fileName: "x.tgz", sha256: "0".repeat(64), sizeBytes: 1 };

const TREE: RecordSpec[] = [
  { pkgname: "cwrappers-20220403", location: "pkgtools/cwrappers" },
  { pkgname: "zlib-1.3.1", location: "devel/zlib", deps: ["cwrappers>=20150314 pkgtools/cwrappers"] },
  { pkgname: "libpng-1.6.44", location: "graphics/png", deps: ["zlib>=1.2.3 devel/zlib"] },
  { pkgname: "gd-2.3.3", location: "graphics/gd", deps: ["libpng>=1.6 graphics/png"] },
  { pkgname: "curl-8.11.0", location: "www/curl", deps: ["zlib>=1.2.3 devel/zlib"] },
  { pkgname: "broken-1.0", location: "misc/broken", fail: "marked broken" },
];

function setUp() {
  const clock = fakeClock();
  const depgraph = new DepGraph(testDepGraphOptions({ now: clock.now }));
  depgraph.replaceTree(TREE.map(record), "tree");
  return { depgraph, clock };
}

function stateOf(depgraph: DepGraph, buildId: string): Record<string, JobState> {
  return Object.fromEntries(depgraph.getBuild(buildId).jobs.map((j) => [j.pkgname, j.state]));
}

function leaseAndFinish(depgraph: DepGraph, pkgname: string): void {
  const [a] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  assert.equal(a?.job.pkgname, pkgname);
  depgraph.markDone([{ buildId: a.build.id, pkgname, leaseId: a.lease.id, succeeded: true, durationMs: 10, binaryPackage: BINARY, logRef: "", failureReason: "" }]);
}

const request = { platform: PLATFORM, mode: "full" as const, policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() };

test("jobs not yet started take a change: new dependencies, new packages, removed ones", () => {
  const { depgraph } = setUp();
  const build = depgraph.createBuild(request);
  leaseAndFinish(depgraph, "cwrappers-20220403");
  leaseAndFinish(depgraph, "zlib-1.3.1");
  // curl now also needs a brand-new package; gd is removed; broken is fixed.
  depgraph.applyLocations([
    record({ pkgname: "curl-8.11.0", location: "www/curl", deps: ["zlib>=1.2.3 devel/zlib", "nghttp2>=1.0 www/nghttp2"] }),
    record({ pkgname: "nghttp2-1.64.0", location: "www/nghttp2", deps: ["cwrappers>=20150314 pkgtools/cwrappers"] }),
    record({ pkgname: "broken-1.0", location: "misc/broken" }),
  ], ["graphics/gd"]);
  assert.deepEqual(stateOf(depgraph, build.id), {
    "cwrappers-20220403": "succeeded",
    "zlib-1.3.1": "succeeded",
    "libpng-1.6.44": "ready",
    "gd-2.3.3": "cancelled",
    "curl-8.11.0": "pending",
    "broken-1.0": "ready",
    "nghttp2-1.64.0": "ready",
  });
  assert.equal(build.byPkgname.get("curl-8.11.0")!.waitingOn, 1);
  leaseAndFinish(depgraph, "libpng-1.6.44");
  const order: string[] = [];
  for (let a = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined)[0]; a !== undefined; a = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined)[0]) {
    order.push(a.job.pkgname);
    depgraph.markDone([{ buildId: a.build.id, pkgname: a.job.pkgname, leaseId: a.lease.id, succeeded: true, durationMs: 10, binaryPackage: BINARY, logRef: "", failureReason: "" }]);
  }
  assert.ok(order.indexOf("nghttp2-1.64.0") < order.indexOf("curl-8.11.0"));
  assert.equal(build.state, "finished");
  assert.equal(build.countOf("succeeded"), 6);
});

test("a change that breaks a package blocks its dependents not yet started, and a fix unblocks them", () => {
  const { depgraph } = setUp();
  const build = depgraph.createBuild(request);
  depgraph.applyLocations([record({ pkgname: "zlib-1.3.1", location: "devel/zlib", fail: "license not accepted" })], []);
  const s = stateOf(depgraph, build.id);
  assert.equal(s["zlib-1.3.1"], "prefailed");
  assert.equal(s["libpng-1.6.44"], "indirect-failed");
  assert.equal(s["gd-2.3.3"], "indirect-failed");
  assert.equal(build.byPkgname.get("gd-2.3.3")!.reason, "needs zlib-1.3.1, which is prefailed");
  depgraph.applyLocations([record(TREE[1]!)], []);
  assert.equal(stateOf(depgraph, build.id)["libpng-1.6.44"], "pending");
  assert.equal(stateOf(depgraph, build.id)["zlib-1.3.1"], "pending");
});

test("a leased job keeps its lease through a change; a finished one keeps its outcome", () => {
  const { depgraph } = setUp();
  const build = depgraph.createBuild(request);
  leaseAndFinish(depgraph, "cwrappers-20220403");
  const [zlib] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  depgraph.applyLocations([record({ ...TREE[1]!, deps: [] }), record({ pkgname: "cwrappers-20220404", location: "pkgtools/cwrappers" })], []);
  assert.equal(stateOf(depgraph, build.id)["zlib-1.3.1"], "leased");
  assert.equal(stateOf(depgraph, build.id)["cwrappers-20220403"], "succeeded");
  depgraph.markDone([{ buildId: build.id, pkgname: "zlib-1.3.1", leaseId: zlib!.lease.id, succeeded: true, durationMs: 10, binaryPackage: BINARY, logRef: "", failureReason: "" }]);
  assert.equal(stateOf(depgraph, build.id)["libpng-1.6.44"], "ready");
});

test("an incremental build rebuilds a changed package and what depends on it, even with binary packages newer than the change's dependencies", () => {
  const { depgraph, clock } = setUp();
  clock.advance(1000);
  const built = new Map(TREE.map((t) => [t.pkgname, { mtimeMs: clock.now() }]));
  clock.advance(1000);
  depgraph.applyLocations([record({ ...TREE[2]!, deps: ["zlib>=1.3 devel/zlib"] })], []);
  const build = depgraph.createBuild({ ...request, mode: "incremental", packagesDir: "/packages", binaryPackages: built });
  const s = stateOf(depgraph, build.id);
  assert.equal(s["zlib-1.3.1"], "up-to-date");
  assert.equal(s["curl-8.11.0"], "up-to-date");
  assert.equal(s["libpng-1.6.44"], "ready");
  assert.equal(s["gd-2.3.3"], "pending");
});

test("the store round trip: a restored depgraph has the same builds, leases and outcomes, and refuses a finished job", async () => {
  const { depgraph, clock } = setUp();
  const store = createMemoryStateStore();
  persistState(store, depgraph);
  depgraph.replaceTree(TREE.map(record), "tree");
  const build = depgraph.createBuild(request);
  const [cw] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  depgraph.markDone([{ buildId: build.id, pkgname: cw!.job.pkgname, leaseId: cw!.lease.id, succeeded: true, durationMs: 10, binaryPackage: BINARY, logRef: "log/cw", failureReason: "" }]);
  const [zlib] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  depgraph.applyLocations([record({ ...TREE[4]!, deps: [...TREE[4]!.deps!, "libpng>=1 graphics/png"] })], []);
  // A store filled by persistState only: the whole tree must be in it too.
  const fresh = createMemoryStateStore(store.entries);
  const restored = new DepGraph(testDepGraphOptions({ now: clock.now }));
  const history = createDurationHistory();
  await restoreState(fresh, restored, history, pino({ level: "silent" }));
  assert.equal(restored.tree.size, TREE.length);
  assert.deepEqual(restored.tree.get("curl-8.11.0")!.dependencies, ["zlib-1.3.1", "libpng-1.6.44"]);
  assert.deepEqual(stateOf(restored, build.id), stateOf(depgraph, build.id));
  const job = restored.getBuild(build.id).byPkgname.get("cwrappers-20220403")!;
  assert.equal(job.logRef, "log/cw");
  assert.equal(history.expectedMs("cwrappers-20220403", "pkgtools/cwrappers"), 10);
  assert.throws(() => restored.markDone([{ buildId: build.id, pkgname: cw!.job.pkgname, leaseId: cw!.lease.id, succeeded: true, durationMs: 10, binaryPackage: BINARY, logRef: "", failureReason: "" }]), StaleLease);
  restored.markDone([{ buildId: build.id, pkgname: "zlib-1.3.1", leaseId: zlib!.lease.id, succeeded: true, durationMs: 10, binaryPackage: BINARY, logRef: "", failureReason: "" }]);
  assert.equal(stateOf(restored, build.id)["libpng-1.6.44"], "ready");
});
