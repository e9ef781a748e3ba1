// A tree with one dependency cycle of 8,000 packages (issue 11, "Big
// graphs"): what a build keeps of the cycle, what one Job message and one
// page carry, and that the work comes in slices. Timings are bench/'s
// (npm run bench:big-cycle); this file checks the shapes that make them.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { JobSchema, ListJobsResponseSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { MAX_CYCLE_MEMBERS_PER_JOB, jobToWire } from "../../services/depgraph/convert.js";
import type { Build } from "../../services/depgraph/core/build.js";
import { DepGraph } from "../../services/depgraph/core/depgraph.js";
import { createScanRecordParser, type ScanRecord } from "../../services/depgraph/core/scan-record.js";
import { runSteps } from "../../services/depgraph/core/steps.js";
import { pageOf, MAX_PAGE_BYTES } from "../../services/depgraph/paging.js";
import { BIG_CYCLE_SHAPE, abovePackage, basePackage, bigGraphScan, cycleMember } from "../support/big-graph.js";
import { record, testDepGraphOptions } from "../support/records.js";

const PLATFORM = "NetBSD-10.0-x86_64";
const FOUR_MIB = 4 * 1024 * 1024;

function parse(text: string): ScanRecord[] {
  const records: ScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => assert.fail(`bad record: ${p.message}`));
  parser.push(text);
  parser.end();
  return records;
}

const records = parse(bigGraphScan());

function bigDepGraph(): DepGraph {
  const depgraph = new DepGraph(testDepGraphOptions());
  depgraph.replaceTree(records, "tree");
  return depgraph;
}

// Resolved once for the tests that only read the tree (a DepGraph each, so builds do not mix).
let sharedTree: DepGraph["tree"] | undefined;
function readOnlyDepGraph(): DepGraph {
  sharedTree ??= bigDepGraph().tree;
  return new DepGraph(testDepGraphOptions({ tree: sharedTree }));
}

function request(limitTo: string[] = []) {
  return { platform: PLATFORM, mode: "full" as const, policy: undefined, limitTo, packagesDir: "", binaryPackages: new Map() };
}

function cycleJobs(build: Build) {
  return build.jobs.filter((j) => j.state === "cycle");
}

test("the tree finds the cycle of 8,000 packages as one cycle", () => {
  const depgraph = readOnlyDepGraph();
  const cycles = depgraph.tree.cyclesFound();
  assert.equal(cycles.length, 1);
  assert.equal(cycles[0]!.length, BIG_CYCLE_SHAPE.cycle);
  assert.ok(cycles[0]!.includes(cycleMember(0)) && cycles[0]!.includes(cycleMember(BIG_CYCLE_SHAPE.cycle - 1)));
});

test("a build stores the cycle once: every cycle job refers to the tree's one members list and shares one short reason", () => {
  const depgraph = readOnlyDepGraph();
  const build = depgraph.createBuild(request());
  const jobs = cycleJobs(build);
  assert.equal(jobs.length, BIG_CYCLE_SHAPE.cycle);
  const members = depgraph.tree.cyclesFound()[0]!;
  assert.ok(jobs.every((j) => j.cycle === members), "each job holds a reference to the cycle, not a copy");
  const reason = jobs[0]!.reason;
  assert.ok(jobs.every((j) => j.reason === reason), "one reason for the whole cycle");
  assert.ok(reason.length < 200, `reason is ${reason.length} characters`);
  assert.match(reason, /^member of a dependency cycle of 8,000 packages: \S+ -> \S+ -> \S+ -> \S+ -> \S+ -> \.\.\. \(first 5\)$/);
  // What is blocked by the cycle says so briefly, naming one member.
  const blocked = build.jobs.filter((j) => j.state === "indirect-failed");
  assert.ok(blocked.length >= BIG_CYCLE_SHAPE.above / BIG_CYCLE_SHAPE.cycleUserEvery, `${blocked.length} blocked`);
  for (const job of blocked) {
    assert.ok(members.includes(job.blockedBy), `${job.pkgname} is blocked by ${job.blockedBy}`);
    assert.ok(job.reason.length < 100, job.reason);
  }
  // A second build and a limited one share the same reason string too.
  const limited = depgraph.createBuild(request([abovePackage(0)]));
  assert.ok(cycleJobs(limited).every((j) => j.cycle === members && j.reason === reason));
  assert.ok(cycleJobs(limited).length === BIG_CYCLE_SHAPE.cycle, "app0 needs a cycle member, so the whole cycle is in its closure");
});

test("one Job message carries a bounded part of the cycle and its size, and a page stays under 4 MiB", () => {
  const depgraph = readOnlyDepGraph();
  const build = depgraph.createBuild(request());
  const job = cycleJobs(build)[0]!;
  const wire = jobToWire(build, job);
  assert.equal(wire.cycle.length, MAX_CYCLE_MEMBERS_PER_JOB);
  assert.equal(wire.cycleSize, BIG_CYCLE_SHAPE.cycle);
  assert.deepEqual(wire.cycle, job.cycle.slice(0, MAX_CYCLE_MEMBERS_PER_JOB));
  const bytes = toBinary(JobSchema, wire).byteLength;
  assert.ok(bytes < 2048, `a cycle job is ${bytes} bytes`);

  // The default page and the largest one, over cycle jobs only.
  const jobs = build.sortedJobs().filter((j) => j.state === "cycle");
  for (const pageSize of [0, 10_000]) {
    const { page, next } = pageOf(jobs, { pageSize, pageToken: "" }, JobSchema, (j) => jobToWire(build, j));
    const size = toBinary(ListJobsResponseSchema, create(ListJobsResponseSchema, { jobs: page, nextPageToken: next })).byteLength;
    assert.ok(size < FOUR_MIB, `page of ${page.length} is ${size} bytes`);
    if (pageSize === 0) assert.equal(page.length, 1000);
    // 8,000 cycle jobs are more than 3 MiB: the page ends early and says where to go on.
    else assert.ok(page.length > 1000 && page.length < jobs.length && next === String(page.length), `${page.length} jobs, next ${next}`);
  }
});

test("a page ends before it passes its byte budget, and the next page goes on where it stopped", () => {
  const depgraph = new DepGraph(testDepGraphOptions());
  // Fail reasons near the bound: 40 of them are 80 KB, so a 20 KB budget holds 10.
  const specs = Array.from({ length: 40 }, (_, i) => ({ pkgname: `big${String(i).padStart(2, "0")}-1.0`, location: `misc/big${i}`, fail: "x".repeat(1990) }));
  depgraph.replaceTree(specs.map(record), "tree");
  const build = depgraph.createBuild(request());
  const seen: string[] = [];
  let token = "";
  let pages = 0;
  do {
    const { page, next } = pageOf(build.sortedJobs(), { pageSize: 0, pageToken: token }, JobSchema, (j) => jobToWire(build, j), 20_000);
    const bytes = page.reduce((n, j) => n + toBinary(JobSchema, j).byteLength + 6, 0);
    assert.ok(bytes <= 20_000, `page of ${bytes} bytes`);
    seen.push(...page.map((j) => j.pkgname));
    token = next;
    pages++;
    assert.ok(pages <= 40, "pages move on");
  } while (token !== "");
  assert.ok(pages >= 4, `${pages} pages`);
  assert.deepEqual(seen, specs.map((s) => s.pkgname));
  assert.ok(MAX_PAGE_BYTES < FOUR_MIB);
});

test("CreateBuild comes in many slices, and the build is registered only by the last", () => {
  const depgraph = readOnlyDepGraph();
  const steps = depgraph.createBuildSteps(request());
  let slices = 0;
  let step = steps.next();
  while (!step.done) {
    slices++;
    assert.equal(depgraph.listBuilds().length, 0, "nothing is visible before the last slice");
    step = steps.next();
  }
  assert.ok(slices >= 20, `${slices} slices`);
  assert.equal(depgraph.listBuilds()[0], step.value);
  assert.equal(step.value.jobs.length, records.length);
});

test("a change of the tree between slices starts the build over on the new tree", () => {
  const depgraph = bigDepGraph();
  const steps = depgraph.createBuildSteps(request());
  for (let i = 0; i < 5; i++) assert.equal(steps.next().done, false);
  // lib0 is rescanned with a fail reason while the build is being worked out.
  const lib0 = records.find((r) => r.pkgname === basePackage(0))!;
  depgraph.applyLocations([{ ...lib0, failReason: "broken since the rescan" }], []);
  const build = runSteps(steps);
  assert.equal(build.byPkgname.get(basePackage(0))!.state, "prefailed");
  assert.equal(build.byPkgname.get(basePackage(0))!.reason, "broken since the rescan");
});

test("priorities see through a cycle: what a cycle member needs is ranked by its other dependents, not left at zero", () => {
  const depgraph = new DepGraph(testDepGraphOptions());
  depgraph.replaceTree([
    record({ pkgname: "base-1.0", location: "devel/base" }),
    record({ pkgname: "a-1.0", location: "misc/a", deps: ["b-[0-9]* misc/b", "base-[0-9]* devel/base"] }),
    record({ pkgname: "b-1.0", location: "misc/b", deps: ["a-[0-9]* misc/a"] }),
    record({ pkgname: "app-1.0", location: "misc/app", deps: ["base-[0-9]* devel/base"] }),
  ], "tree");
  const build = depgraph.createBuild(request());
  const job = (name: string) => build.byPkgname.get(name)!;
  // 60 s expected each (no history): base's chain is itself plus app.
  assert.ok(job("base-1.0").priority > 110_000 && job("base-1.0").priority < 130_000, String(job("base-1.0").priority));
  assert.ok(job("app-1.0").priority >= 60_000, String(job("app-1.0").priority));
  assert.ok(job("a-1.0").priority < 1, "a cycle is never built, so it has no chain");
  assert.equal(job("a-1.0").state, "cycle");
});

test("a whole-tree import comes in slices, and the tree reads as before until the last one", () => {
  const depgraph = new DepGraph(testDepGraphOptions());
  depgraph.replaceTree([record({ pkgname: "old-1.0", location: "misc/old" })], "tree");
  const revision = depgraph.tree.revision;
  const notices: number[] = [];
  depgraph.onTreeChange((n) => notices.push(n.revision));
  const steps = depgraph.replaceTreeSteps(records, "tree");
  let slices = 0;
  let step = steps.next();
  while (!step.done) {
    slices++;
    assert.equal(depgraph.tree.size, 1, "the old tree is what reads see meanwhile");
    assert.ok(depgraph.tree.get("old-1.0") !== undefined);
    assert.equal(depgraph.tree.revision, revision);
    step = steps.next();
  }
  assert.ok(slices >= 10, `${slices} slices`);
  assert.deepEqual(step.value, []);
  assert.equal(depgraph.tree.size, records.length);
  assert.equal(depgraph.tree.get("old-1.0"), undefined);
  assert.equal(depgraph.tree.cyclesFound()[0]!.length, BIG_CYCLE_SHAPE.cycle);
  assert.deepEqual(notices, [revision + 1]);
  // The imported tree takes updates as one resolved in one go would.
  const app1 = depgraph.tree.get(abovePackage(1))!;
  depgraph.applyLocations([{ ...app1.record, dependencies: [{ pattern: "lib0>=1.0", location: "devel/lib0" }] }], []);
  assert.deepEqual(depgraph.tree.get(abovePackage(1))!.dependencies, [basePackage(0)]);
  assert.ok(depgraph.tree.dependentsOf(basePackage(0)).includes(abovePackage(1)));
});
