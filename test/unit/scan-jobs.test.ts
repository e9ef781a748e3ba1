import assert from "node:assert/strict";
import { test } from "node:test";
import { Build } from "../../services/depgraph/core/build.js";
import { DepGraph, type ScanAssignment } from "../../services/depgraph/core/depgraph.js";
import { InvalidRequest } from "../../services/depgraph/core/errors.js";
import type { ScannedLocation } from "../../services/depgraph/core/scan-run.js";
import { fakeClock, record, testDepGraphOptions, type RecordSpec } from "../support/records.js";

const NETBSD = "NetBSD-10.0-x86_64";
const LINUX = "Linux-6.1.0-x86_64";

// What each location's scan prints on NetBSD: app needs lib, lib needs a tool.
const SCANS: Record<string, RecordSpec[]> = {
  "misc/app": [{ pkgname: "app-1.0", location: "misc/app", deps: ["lib>=1 devel/lib"] }],
  "devel/lib": [{ pkgname: "lib-2.0", location: "devel/lib", deps: ["tool-[0-9]* devel/tool"] }],
  "devel/tool": [{ pkgname: "tool-3.0", location: "devel/tool" }],
  "misc/other": [{ pkgname: "other-1.0", location: "misc/other" }],
};

function answer(a: ScanAssignment, scans = SCANS): ScannedLocation[] {
  return a.job.locations.map((location) => {
    const specs = scans[location];
    return specs === undefined
      ? { location, records: [], reused: false, error: `bmake: no such location ${location}` }
      : { location, records: specs.map(record), reused: false, error: "" };
  });
}

function finish(depgraph: DepGraph, a: ScanAssignment, locations: ScannedLocation[], enumerated?: string[]) {
  depgraph.finishScanJob({ buildId: a.scan.id, pkgname: a.job.name, leaseId: a.lease.id, failure: "", locations, enumerated, problems: [] });
}

test("a limited build on a platform without a tree scans its list round after round, then starts with the closure", () => {
  const depgraph = new DepGraph(testDepGraphOptions());
  const pending = depgraph.requestBuild({ platform: NETBSD, mode: "full", policy: undefined, limitTo: ["misc/app"], packagesDir: "", binaryPackages: new Map() });
  assert.ok(!(pending instanceof Build), "the build waits for its scan");
  const scan = depgraph.getScan(pending.scanId);
  assert.equal(scan.options.scope, "closure");

  const rounds: string[][] = [];
  for (let guard = 0; scan.state === "running"; guard++) {
    assert.ok(guard < 10, "the closure ends");
    const jobs = depgraph.nextScanJobs(NETBSD, "agent-1", 10, undefined);
    assert.ok(jobs.length > 0, "a running scan has work");
    rounds.push(jobs.flatMap((j) => j.job.locations));
    for (const a of jobs) finish(depgraph, a, answer(a));
  }
  assert.deepEqual(rounds, [["misc/app"], ["devel/lib"], ["devel/tool"]]);
  assert.equal(scan.state, "finished");
  assert.equal(scan.rounds, 3);
  assert.equal(scan.locationsScanned, 3);

  const build = depgraph.getBuildOrPending(pending.options.id);
  assert.ok(build instanceof Build, "the build started when the scan ended");
  assert.equal(depgraph.buildScan(build.id), scan.id, "the build keeps naming the scan that closed its list");
  assert.deepEqual(build.jobs.map((j) => j.pkgname).sort(), ["app-1.0", "lib-2.0", "tool-3.0"]);
  assert.equal(build.countOf("ready"), 1);
  assert.deepEqual(depgraph.platforms(), [NETBSD]);
  assert.equal(depgraph.treeOf(NETBSD).size, 3);
  assert.equal(depgraph.tree.size, 0, "the shared tree is untouched");
});

test("a scan job whose agent is lost is scanned again by another, and fails after too many losses", () => {
  const clock = fakeClock();
  const depgraph = new DepGraph(testDepGraphOptions({ now: clock.now, maxLosses: 2 }));
  const scan = depgraph.startScan({ platform: NETBSD, scope: "locations", locations: ["misc/app", "misc/other"], reuse: false, locationsPerJob: 1 });
  const [first, second] = depgraph.nextScanJobs(NETBSD, "agent-1", 2, undefined);
  assert.ok(first !== undefined && second !== undefined);
  finish(depgraph, second, answer(second));

  depgraph.returnJobs([{ buildId: scan.id, pkgname: first.job.name, leaseId: first.lease.id }], true, "agent-1 went away");
  const [again] = depgraph.nextScanJobs(NETBSD, "agent-2", 1, undefined);
  assert.ok(again !== undefined);
  assert.deepEqual(again.job.locations, first.job.locations, "the lost locations go out again");
  assert.equal(again.job.attempts, 2);
  assert.throws(() => finish(depgraph, first, answer(first)), /lease/, "the lost lease cannot report");

  clock.advance(60_001);
  assert.equal(depgraph.expireLeases(), 1);
  assert.equal(scan.state, "finished", "the second loss gives the job up");
  assert.equal(scan.locationsFailed, 1);
  assert.match(scan.problems[0]!.problem, /given up after 2 lost leases/);
  assert.deepEqual(depgraph.treeOf(NETBSD).pkgnames().next().value, "other-1.0");
});

test("a whole-tree scan enumerates, scans in batches, then makes the tree what it found, keeping reused and failed locations", () => {
  const depgraph = new DepGraph(testDepGraphOptions());
  const earlier = { "misc/gone": [{ pkgname: "gone-1.0", location: "misc/gone" }], "misc/other": [{ pkgname: "other-0.9", location: "misc/other" }] };
  depgraph.startScan({ platform: NETBSD, scope: "locations", locations: ["misc/gone", "misc/other"], reuse: false, locationsPerJob: 8 });
  for (const a of depgraph.nextScanJobs(NETBSD, "agent-1", 5, undefined)) finish(depgraph, a, answer(a, earlier));
  assert.equal(depgraph.treeOf(NETBSD).size, 2);
  const scan = depgraph.startScan({ platform: NETBSD, scope: "tree", locations: [], reuse: true, locationsPerJob: 2 });
  const [enumeration] = depgraph.nextScanJobs(NETBSD, "agent-1", 5, undefined);
  assert.ok(enumeration?.job.enumerate);
  finish(depgraph, enumeration, [], ["misc/app", "devel/lib", "devel/tool", "misc/other", "misc/broken"]);
  const batches = depgraph.nextScanJobs(NETBSD, "agent-1", 5, undefined);
  assert.deepEqual(batches.map((b) => b.job.locations.length), [2, 2, 1]);
  const otherBatch = batches.find((b) => b.job.locations.includes("misc/other"))!;
  assert.ok(otherBatch.previous.has("misc/other"), "a location scanned before carries its last scan for reuse");
  assert.equal(scan.state, "running");
  for (const a of batches) {
    finish(depgraph, a, answer(a).map((l) => l.location === "misc/other" ? { location: l.location, records: [], reused: true, error: "" } : l));
  }
  assert.equal(scan.state, "finished");
  assert.equal(scan.locationsReused, 1);
  assert.equal(scan.locationsFailed, 1);
  const tree = depgraph.treeOf(NETBSD);
  assert.deepEqual([...tree.pkgnames()].sort(), ["app-1.0", "lib-2.0", "other-0.9", "tool-3.0"], "gone-1.0 is gone; the reused other-0.9 is kept");
});

test("each platform builds from its own tree; an unnamed platform is the only one, or a refusal naming them", () => {
  const depgraph = new DepGraph(testDepGraphOptions());
  depgraph.replaceTree(SCANS["devel/tool"]!.map(record), "tree", NETBSD);
  assert.equal(depgraph.resolvePlatform(""), NETBSD);
  depgraph.replaceTree([record({ pkgname: "tool-3.0", location: "devel/tool", fail: "not on Linux" })], "tree", LINUX);
  assert.throws(() => depgraph.resolvePlatform(""), (e: unknown) => e instanceof InvalidRequest && /Linux-6\.1\.0-x86_64.*NetBSD-10\.0-x86_64/.test(e.message));
  const netbsd = depgraph.createBuild({ platform: NETBSD, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  const linux = depgraph.createBuild({ platform: LINUX, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  assert.equal(netbsd.byPkgname.get("tool-3.0")!.state, "ready");
  assert.equal(linux.byPkgname.get("tool-3.0")!.state, "prefailed");
  assert.equal(depgraph.nextReadyJobs(LINUX, "a", 1, undefined).length, 0);
  assert.equal(depgraph.nextReadyJobs(NETBSD, "a", 1, undefined).length, 1);
});

test("a closure scan that cannot find a listed location still starts the build, saying what is missing", () => {
  const depgraph = new DepGraph(testDepGraphOptions());
  const pending = depgraph.requestBuild({ platform: NETBSD, mode: "full", policy: undefined, limitTo: ["misc/app", "misc/nowhere"], packagesDir: "", binaryPackages: new Map() });
  assert.ok(!(pending instanceof Build));
  for (let guard = 0; depgraph.getScan(pending.scanId).state === "running"; guard++) {
    assert.ok(guard < 10);
    for (const a of depgraph.nextScanJobs(NETBSD, "agent-1", 10, undefined)) finish(depgraph, a, answer(a));
  }
  const build = depgraph.getBuildOrPending(pending.options.id);
  assert.ok(build instanceof Build);
  assert.equal(build.jobs.length, 3);
  assert.match(depgraph.buildProblem(build.id), /misc\/nowhere/);
  assert.match(depgraph.getScan(pending.scanId).problems.map((p) => p.problem).join("\n"), /no such location misc\/nowhere/);
});

test("platform trees and when their locations were scanned survive a restart through the state store", async () => {
  const { createMemoryStateStore } = await import("../../services/depgraph/state-store.js");
  const { persistState, restoreState } = await import("../../services/depgraph/state-persister.js");
  const { createDurationHistory } = await import("../../services/depgraph/core/history.js");
  const pino = (await import("pino")).default;
  const logger = pino({ level: "silent" });
  const store = createMemoryStateStore();
  const before = new DepGraph(testDepGraphOptions());
  persistState(store, before);
  before.startScan({ platform: NETBSD, scope: "locations", locations: ["devel/tool", "misc/other"], reuse: false, locationsPerJob: 8 });
  for (const a of before.nextScanJobs(NETBSD, "agent-1", 5, undefined)) finish(before, a, answer(a));
  before.replaceTree([record({ pkgname: "tool-3.0", location: "devel/tool", fail: "not on Linux" })], "tree", LINUX);
  const scannedAt = before.lastScanned(NETBSD, "devel/tool");
  assert.ok(scannedAt !== undefined);

  const after = new DepGraph(testDepGraphOptions());
  await restoreState(store, after, createDurationHistory(), logger);
  assert.deepEqual(after.platforms(), [LINUX, NETBSD]);
  assert.deepEqual([...after.treeOf(NETBSD).pkgnames()].sort(), ["other-1.0", "tool-3.0"]);
  assert.equal(after.treeOf(LINUX).get("tool-3.0")?.record.failReason, "not on Linux");
  assert.equal(after.lastScanned(NETBSD, "devel/tool"), scannedAt);
  assert.equal(after.tree.size, 0);
});
