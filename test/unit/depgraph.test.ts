import assert from "node:assert/strict";
import { test } from "node:test";
import type { JobState, JobTransition } from "../../services/depgraph/core/build.js";
import { DepGraph, type DepGraphOptions } from "../../services/depgraph/core/depgraph.js";
import { EmptyTree, StaleLease, UnknownBuild, UnknownPackage } from "../../services/depgraph/core/errors.js";
import { createDurationHistory } from "../../services/depgraph/core/history.js";
import { buildKey, decodeState, encodeBuild, encodeJob, jobKey } from "../../services/depgraph/core/state-codec.js";
import { fakeClock, record, sequentialIds, testDepGraphOptions, type RecordSpec } from "../support/records.js";

const PLATFORM = "NetBSD-10.0-x86_64";

// A small tree shaped like pkgsrc: a toolchain everybody needs, a
// MULTI_VERSION family, a prefailed package, and a cycle.
const TREE: RecordSpec[] = [
  { pkgname: "cwrappers-20220403", location: "pkgtools/cwrappers" },
  { pkgname: "gmake-4.4.1", location: "devel/gmake", deps: ["cwrappers>=20150314 pkgtools/cwrappers"] },
  { pkgname: "python312-3.12.8", location: "lang/python312", deps: ["gmake>=3.81 devel/gmake"] },
  { pkgname: "python313-3.13.1", location: "lang/python313", deps: ["gmake>=3.81 devel/gmake"] },
  { pkgname: "py312-six-1.17.0", location: "lang/py-six", multiVersion: "PYTHON_VERSION_REQD=312", deps: ["python312>=3.12 lang/python312"] },
  { pkgname: "py313-six-1.17.0", location: "lang/py-six", multiVersion: "PYTHON_VERSION_REQD=313", deps: ["python313>=3.13 lang/python313"] },
  { pkgname: "py313-app-2.0", location: "misc/py-app", deps: ["py313-six-[0-9]* lang/py-six", "gmake>=3.81 devel/gmake"] },
  { pkgname: "broken-1.0", location: "misc/broken", fail: "marked broken on NetBSD", deps: ["gmake>=3.81 devel/gmake"] },
  { pkgname: "needs-broken-1.0", location: "misc/needs-broken", deps: ["broken-[0-9]* misc/broken"] },
  { pkgname: "needs-needs-broken-1.0", location: "misc/nnb", deps: ["needs-broken-[0-9]* misc/needs-broken"] },
  { pkgname: "chicken-1.0", location: "misc/chicken", deps: ["egg-[0-9]* misc/egg"] },
  { pkgname: "egg-1.0", location: "misc/egg", deps: ["chicken-[0-9]* misc/chicken"] },
  { pkgname: "omelette-1.0", location: "misc/omelette", deps: ["egg-[0-9]* misc/egg"] },
  { pkgname: "lost-1.0", location: "misc/lost", deps: ["py314-six-[0-9]* lang/py-six"] },
];

function newDepGraph(overrides: Partial<DepGraphOptions> = {}) {
  const clock = fakeClock();
  const transitions: JobTransition[] = [];
  const depgraph = new DepGraph(testDepGraphOptions({ now: clock.now, ...overrides }));
  depgraph.onTransition((t) => transitions.push(t));
  depgraph.tree.replace(TREE.map(record), "tree");
  return { depgraph, clock, transitions };
}

function states(build: { jobs: readonly { pkgname: string; state: JobState }[] }): Record<string, JobState> {
  return Object.fromEntries(build.jobs.map((j) => [j.pkgname, j.state]));
}

const SUCCESS = { durationMs: 1000, logRef: "log", failureReason: "", binaryPackage: { fileName: "x.tgz", sha256: "0".repeat(64), sizeBytes: 1 } };

/** Builds everything that becomes ready, one job at a time, succeeding unless told to fail. */
function buildAll(depgraph: DepGraph, failing: ReadonlySet<string> = new Set()): string[] {
  const order: string[] = [];
  for (;;) {
    const [a] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
    if (a === undefined) return order;
    order.push(a.job.pkgname);
    const ok = !failing.has(a.job.pkgname);
    depgraph.markDone([{ buildId: a.build.id, pkgname: a.job.pkgname, leaseId: a.lease.id, ...SUCCESS, succeeded: ok, binaryPackage: ok ? SUCCESS.binaryPackage : undefined, failureReason: ok ? "" : "build failed" }]);
  }
}

test("resolution picks the MULTI_VERSION variant the pattern names, and reports what it cannot resolve", () => {
  const { depgraph } = newDepGraph();
  assert.deepEqual(depgraph.tree.get("py313-app-2.0")!.dependencies, ["py313-six-1.17.0", "gmake-4.4.1"]);
  assert.equal(depgraph.tree.get("lost-1.0")!.unresolved, 'could not resolve dependency "py314-six-[0-9]*"');
  assert.deepEqual(depgraph.tree.unresolvedDependencies().map((u) => u.pkgname), ["lost-1.0"]);
  assert.deepEqual(depgraph.tree.cyclesFound().map((c) => [...c].sort()), [["chicken-1.0", "egg-1.0"]]);
});

test("a full build ends every job in exactly one terminal state, dependencies first", () => {
  const { depgraph, transitions } = newDepGraph();
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  assert.equal(build.state, "running");
  const order = buildAll(depgraph);
  assert.equal(build.state, "finished");
  for (const job of build.jobs) {
    for (const dep of job.dependencies) {
      if (job.state === "succeeded") assert.ok(order.indexOf(build.jobs[dep]!.pkgname) < order.indexOf(job.pkgname));
    }
  }
  assert.deepEqual(states(build), {
    "cwrappers-20220403": "succeeded",
    "gmake-4.4.1": "succeeded",
    "python312-3.12.8": "succeeded",
    "python313-3.13.1": "succeeded",
    "py312-six-1.17.0": "succeeded",
    "py313-six-1.17.0": "succeeded",
    "py313-app-2.0": "succeeded",
    "broken-1.0": "prefailed",
    "needs-broken-1.0": "indirect-failed",
    "needs-needs-broken-1.0": "indirect-failed",
    "chicken-1.0": "cycle",
    "egg-1.0": "cycle",
    "omelette-1.0": "indirect-failed",
    "lost-1.0": "prefailed",
  });
  const byName = build.byPkgname;
  assert.equal(byName.get("needs-needs-broken-1.0")!.blockedBy, "broken-1.0");
  assert.equal(byName.get("omelette-1.0")!.blockedBy, "egg-1.0");
  assert.deepEqual([...byName.get("egg-1.0")!.cycle].sort(), ["chicken-1.0", "egg-1.0"]);
  assert.equal(byName.get("broken-1.0")!.reason, "marked broken on NetBSD");
  // Each job went through ready → leased → succeeded once; nothing was finished twice.
  const succeededTwice = new Set<string>();
  for (const t of transitions.filter((t) => t.to === "succeeded")) {
    assert.ok(!succeededTwice.has(t.pkgname));
    succeededTwice.add(t.pkgname);
  }
  assert.equal(succeededTwice.size, 7);
});

test("a failure makes everything that needs it indirect-failed, naming the root cause", () => {
  const { depgraph } = newDepGraph();
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: "fifo", limitTo: [], packagesDir: "", binaryPackages: new Map() });
  buildAll(depgraph, new Set(["python313-3.13.1"]));
  const s = states(build);
  assert.equal(s["python313-3.13.1"], "failed");
  assert.equal(s["py313-six-1.17.0"], "indirect-failed");
  assert.equal(s["py313-app-2.0"], "indirect-failed");
  assert.equal(build.byPkgname.get("py313-app-2.0")!.blockedBy, "python313-3.13.1");
  assert.equal(s["py312-six-1.17.0"], "succeeded");
  assert.equal(build.state, "finished");
});

test("a limited build takes the listed location's variants plus everything they need", () => {
  const { depgraph } = newDepGraph();
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: ["misc/py-app"], packagesDir: "", binaryPackages: new Map() });
  assert.deepEqual(build.jobs.map((j) => j.pkgname).sort(), ["cwrappers-20220403", "gmake-4.4.1", "py313-app-2.0", "py313-six-1.17.0", "python313-3.13.1"]);
  assert.throws(() => depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: ["misc/nothing"], packagesDir: "", binaryPackages: new Map() }), UnknownPackage);
});

test("a MarkDone with a stale or unknown lease is refused and changes nothing", () => {
  const { depgraph } = newDepGraph();
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  const [a] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  assert.equal(a!.job.pkgname, "cwrappers-20220403");
  const result = { buildId: build.id, pkgname: a!.job.pkgname, ...SUCCESS, succeeded: true };
  assert.throws(() => depgraph.markDone([{ ...result, leaseId: "not-a-lease" }]), StaleLease);
  assert.equal(a!.job.state, "leased");
  depgraph.markDone([{ ...result, leaseId: a!.lease.id }]);
  assert.equal(a!.job.state, "succeeded");
  // Finishing it again is refused: the lease ended with the first MarkDone.
  assert.throws(() => depgraph.markDone([{ ...result, leaseId: a!.lease.id }]), (e: unknown) => e instanceof StaleLease && /succeeded/.test(e.message));
  assert.throws(() => depgraph.markDone([{ ...result, buildId: "nope", leaseId: a!.lease.id }]), UnknownBuild);
});

test("a batch with one stale lease is refused whole", () => {
  const { depgraph } = newDepGraph();
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  const [a] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  depgraph.markDone([{ buildId: build.id, pkgname: a!.job.pkgname, leaseId: a!.lease.id, ...SUCCESS, succeeded: true }]);
  const [b] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  assert.throws(() => depgraph.markDone([
    { buildId: build.id, pkgname: b!.job.pkgname, leaseId: b!.lease.id, ...SUCCESS, succeeded: true },
    { buildId: build.id, pkgname: a!.job.pkgname, leaseId: a!.lease.id, ...SUCCESS, succeeded: true },
  ]), StaleLease);
  assert.equal(b!.job.state, "leased");
});

test("an expired lease puts the job back to ready; after maxLosses it fails", () => {
  const { depgraph, clock } = newDepGraph();
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: ["pkgtools/cwrappers"], packagesDir: "", binaryPackages: new Map() });
  const [first] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, 10_000);
  assert.equal(depgraph.nextLeaseDeadline(), clock.now() + 10_000);
  clock.advance(9_999);
  assert.equal(depgraph.expireLeases(), 0);
  clock.advance(1);
  assert.equal(depgraph.expireLeases(), 1);
  assert.equal(first!.job.state, "ready");
  assert.match(first!.job.reason, /held by agent-1 expired/);
  assert.throws(() => depgraph.markDone([{ buildId: build.id, pkgname: first!.job.pkgname, leaseId: first!.lease.id, ...SUCCESS, succeeded: true }]), StaleLease);

  const [second] = depgraph.nextReadyJobs(PLATFORM, "agent-2", 1, 10_000);
  assert.equal(second!.job.attempts, 2);
  // Renewal pushes the deadline; the old deadline passing does nothing.
  clock.advance(5_000);
  const renewed = depgraph.renewLeases([{ buildId: build.id, pkgname: second!.job.pkgname, leaseId: second!.lease.id }], 10_000);
  assert.equal(renewed.renewed.length, 1);
  clock.advance(6_000);
  assert.equal(depgraph.expireLeases(), 0);
  clock.advance(5_000);
  assert.equal(depgraph.expireLeases(), 1);
  assert.equal(second!.job.state, "failed");
  assert.match(second!.job.reason, /gave up after 2 lost leases/);
  assert.equal(build.state, "finished");
  assert.equal(depgraph.nextLeaseDeadline(), undefined);
});

test("a draining give-back does not count as a loss; an agent-lost one does", () => {
  const { depgraph } = newDepGraph();
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: ["pkgtools/cwrappers"], packagesDir: "", binaryPackages: new Map() });
  for (let i = 0; i < 3; i++) {
    const [a] = depgraph.nextReadyJobs(PLATFORM, `agent-${i}`, 1, undefined);
    assert.deepEqual(depgraph.returnJobs([{ buildId: build.id, pkgname: a!.job.pkgname, leaseId: a!.lease.id }], false, "draining"), { requeued: 1, failed: 0 });
  }
  const [a] = depgraph.nextReadyJobs(PLATFORM, "agent-x", 1, undefined);
  assert.deepEqual(depgraph.returnJobs([{ buildId: build.id, pkgname: a!.job.pkgname, leaseId: a!.lease.id }], true, ""), { requeued: 1, failed: 0 });
  const [b] = depgraph.nextReadyJobs(PLATFORM, "agent-y", 1, undefined);
  assert.deepEqual(depgraph.returnJobs([{ buildId: build.id, pkgname: b!.job.pkgname, leaseId: b!.lease.id }], true, ""), { requeued: 0, failed: 1 });
});

test("jobs go only to their build's platform, several per call", () => {
  const { depgraph } = newDepGraph();
  depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  assert.deepEqual(depgraph.nextReadyJobs("Linux-6.1-aarch64", "agent-arm", 8, undefined), []);
  const [a] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 8, undefined);
  depgraph.markDone([{ buildId: a!.build.id, pkgname: a!.job.pkgname, leaseId: a!.lease.id, ...SUCCESS, succeeded: true }]);
  const [b] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 8, undefined);
  depgraph.markDone([{ buildId: b!.build.id, pkgname: b!.job.pkgname, leaseId: b!.lease.id, ...SUCCESS, succeeded: true }]);
  // gmake done: both pythons are ready at once.
  assert.equal(depgraph.nextReadyJobs(PLATFORM, "agent-1", 8, undefined).length, 2);
});

test("incremental: up-to-date packages are skipped; a missing or newer dependency forces a rebuild", () => {
  const { depgraph } = newDepGraph();
  const built = new Map([
    ["cwrappers-20220403", { mtimeMs: 100 }],
    ["gmake-4.4.1", { mtimeMs: 200 }],
    ["python313-3.13.1", { mtimeMs: 150 }], // older than gmake: rebuilt against the new gmake
    ["python312-3.12.8", { mtimeMs: 300 }],
    ["py313-six-1.17.0", { mtimeMs: 400 }], // its python is rebuilt, so it is too
  ]);
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "incremental", policy: undefined, limitTo: [], packagesDir: "/packages", binaryPackages: built });
  const s = states(build);
  assert.equal(s["cwrappers-20220403"], "up-to-date");
  assert.equal(s["gmake-4.4.1"], "up-to-date");
  assert.equal(s["python312-3.12.8"], "up-to-date");
  assert.equal(s["python313-3.13.1"], "ready");
  assert.equal(s["py313-six-1.17.0"], "pending");
  assert.equal(s["py312-six-1.17.0"], "ready");
  const order = buildAll(depgraph);
  assert.deepEqual(order.sort(), ["py312-six-1.17.0", "py313-app-2.0", "py313-six-1.17.0", "python313-3.13.1"]);

  // A full build ignores what exists.
  const full = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "/packages", binaryPackages: built });
  assert.equal(full.countOf("up-to-date"), 0);
});

test("critical path starts the longest chain first; pbulk weight the most needed package", () => {
  const history = createDurationHistory();
  // A long chain (slow-a -> slow-b) and a wide but quick fan-out (lib needed by three).
  const tree: RecordSpec[] = [
    { pkgname: "slow-a-1", location: "x/slow-a" },
    { pkgname: "slow-b-1", location: "x/slow-b", deps: ["slow-a-[0-9]* x/slow-a"] },
    { pkgname: "lib-1", location: "x/lib" },
    { pkgname: "u1-1", location: "x/u1", deps: ["lib-[0-9]* x/lib"] },
    { pkgname: "u2-1", location: "x/u2", deps: ["lib-[0-9]* x/lib"] },
    { pkgname: "u3-1", location: "x/u3", deps: ["lib-[0-9]* x/lib"] },
  ];
  for (const [name, ms] of [["slow-a-1", 3_600_000], ["slow-b-1", 3_600_000], ["lib-1", 1000], ["u1-1", 1000], ["u2-1", 1000], ["u3-1", 1000]] as const) {
    history.record(name, `x/${name.slice(0, -2)}`, ms);
  }
  const first = (policy: "critical-path" | "pbulk-weight") => {
    const depgraph = new DepGraph({ now: () => 0, newId: sequentialIds(), history, defaultPolicy: policy, defaultLeaseMs: 1000, maxLeaseMs: 10_000, maxLosses: 3, fallbackDurationMs: 1000 });
    depgraph.tree.replace(tree.map(record), "tree");
    depgraph.createBuild({ platform: PLATFORM, mode: "full", policy, limitTo: [], packagesDir: "", binaryPackages: new Map() });
    return depgraph.nextReadyJobs(PLATFORM, "a", 1, undefined)[0]!.job.pkgname;
  };
  assert.equal(first("critical-path"), "slow-a-1");
  assert.equal(first("pbulk-weight"), "lib-1");
});

test("bad requests name what is wrong", () => {
  const empty = new DepGraph({ now: () => 0, newId: sequentialIds(), history: createDurationHistory(), defaultPolicy: "fifo", defaultLeaseMs: 1000, maxLeaseMs: 10_000, maxLosses: 3, fallbackDurationMs: 1000 });
  assert.throws(() => empty.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() }), EmptyTree);
  const { depgraph } = newDepGraph();
  assert.throws(() => depgraph.createBuild({ platform: "bad platform!", mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() }), /platform "bad platform!"/);
  assert.throws(() => depgraph.createBuild({ platform: PLATFORM, mode: "incremental", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() }), /packages directory/);
  assert.throws(() => depgraph.nextReadyJobs(PLATFORM, "a", 1, 999_999_999), /lease_duration/);
  assert.throws(() => depgraph.nextReadyJobs("", "a", 1, undefined), /platform is required/);
});

test("cancelling a build ends every open job and refuses its leases", () => {
  const { depgraph } = newDepGraph();
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  const [a] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  depgraph.cancelBuild(build.id);
  assert.equal(build.state, "cancelled");
  assert.equal(build.countOf("pending") + build.countOf("ready") + build.countOf("leased"), 0);
  assert.ok(build.countOf("cancelled") > 0);
  assert.throws(() => depgraph.markDone([{ buildId: build.id, pkgname: a!.job.pkgname, leaseId: a!.lease.id, ...SUCCESS, succeeded: true }]), StaleLease);
  assert.deepEqual(depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined), []);
});

test("finished builds past keepFinishedBuilds are forgotten, oldest first, when a build starts; running ones never", () => {
  const { depgraph } = newDepGraph({ keepFinishedBuilds: 2 });
  const forgotten: string[] = [];
  depgraph.onBuildForgotten((b) => forgotten.push(b.id));
  const create = () => depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: ["pkgtools/cwrappers"], packagesDir: "", binaryPackages: new Map() });
  const finishedFirst = create();
  buildAll(depgraph);
  assert.equal(finishedFirst.state, "finished");
  const cancelled = create();
  depgraph.cancelBuild(cancelled.id);
  const running = depgraph.createBuild({ platform: "Other-1.0-x86_64", mode: "full", policy: undefined, limitTo: ["pkgtools/cwrappers"], packagesDir: "", binaryPackages: new Map() });
  assert.deepEqual(forgotten, [], "two ended builds are kept");
  const third = create();
  depgraph.cancelBuild(third.id);
  const newest = create();
  // Three ended builds now: the oldest goes; the running one on the other platform stays.
  assert.deepEqual(forgotten, [finishedFirst.id]);
  assert.throws(() => depgraph.getBuild(finishedFirst.id), UnknownBuild);
  assert.deepEqual(depgraph.listBuilds().map((b) => b.id), [newest.id, third.id, running.id, cancelled.id]);
  assert.equal(running.state, "running");
});

test("a restored lease runs for the length its holder asked for; a stored job without a length gets the default", () => {
  const { depgraph, clock } = newDepGraph({ defaultLeaseMs: 600_000 });
  const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
  const [a] = depgraph.nextReadyJobs(PLATFORM, "dead-agent", 1, 5_000);
  assert.ok(a);
  const pkgname = a.job.pkgname;
  const stored = (withLength: boolean): [string, string][] => {
    const entries: [string, string][] = [[buildKey(build.options.id), encodeBuild(build)]];
    for (const job of build.jobs) {
      const doc = encodeJob(job);
      if (doc === undefined) continue;
      const parsed = JSON.parse(doc) as { lease?: { lengthMs?: number } };
      if (!withLength && parsed.lease !== undefined) delete parsed.lease.lengthMs;
      entries.push([jobKey(build.options.id, job.pkgname), JSON.stringify(parsed)]);
    }
    return entries;
  };
  for (const [withLength, lengthMs] of [[true, 5_000], [false, 600_000]] as const) {
    const decoded = decodeState(stored(withLength));
    assert.deepEqual(decoded.problems, []);
    // A restart, a while later: nobody renewed the lease meanwhile.
    const later = newDepGraph({ defaultLeaseMs: 600_000, now: () => clock.now() + 60_000 });
    const restored = later.depgraph.restoreBuild(decoded.builds[0]!);
    const job = () => restored.jobs.find((j) => j.pkgname === pkgname)!;
    assert.equal(job().state, "leased");
    assert.equal(later.depgraph.nextLeaseDeadline(), clock.now() + 60_000 + lengthMs, withLength ? "its own length" : "the default");
  }
  // And it does expire then: the job is ready again.
  const later = newDepGraph({ defaultLeaseMs: 600_000 });
  const restored = later.depgraph.restoreBuild(decodeState(stored(true)).builds[0]!);
  later.clock.advance(5_000);
  assert.equal(later.depgraph.expireLeases(), 1);
  assert.equal(restored.jobs.find((j) => j.pkgname === pkgname)!.state, "ready");
});
