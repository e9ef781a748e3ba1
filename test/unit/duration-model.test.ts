import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { DepGraph } from "../../services/depgraph/core/depgraph.js";
import { createDurationModel, type PackageFacts, type PredictionInput } from "../../services/depgraph/core/duration-model.js";
import { familyOf, relativesKey } from "../../services/depgraph/core/package-names.js";
import { runSteps } from "../../services/depgraph/core/steps.js";
import { persistState, restoreState } from "../../services/depgraph/state-persister.js";
import { createMemoryStateStore } from "../../services/depgraph/state-store.js";
import { record, testDepGraphOptions } from "../support/records.js";

const PLATFORM = "NetBSD-10.0-x86_64";
const BINARY = { fileName: "x.tgz", sha256: "0".repeat(64), sizeBytes: 1 };

function facts(pkgname: string, location: string, more: Partial<PackageFacts> = {}): PackageFacts {
  return { pkgname, location, categories: [location.split("/")[0]!], scanDependsCount: 0, pbulkWeight: 100, ...more };
}

/** Packages with no edges between them. */
function flat(packages: PackageFacts[]): PredictionInput {
  return { packages, dependencies: packages.map(() => []), dependents: packages.map(() => []) };
}

function row(pkgname: string, location: string, durationMs: number) {
  return { pkgname, location, durationMs, succeeded: true };
}

test("relatives: a version bump and another python's variant take the duration of their kin, and say so", () => {
  const model = createDurationModel([row("py312-numpy-2.1.0", "math/py-numpy", 600_000), row("gcc12-12.5.0", "lang/gcc12", 7_800_000), row("gtk3+-3.24.43", "x11/gtk3", 400_000)]);
  const [bump, variant, sibling] = runSteps(model.predict(PLATFORM, flat([
    facts("gtk3+-3.24.49", "x11/gtk3"),
    facts("py313-numpy-2.1.0", "math/py-numpy"),
    facts("gcc14-14.3.0", "lang/gcc14"),
  ])));
  assert.deepEqual(bump, { ms: 400_000, source: "relative gtk3+-3.24.43" });
  assert.deepEqual(variant, { ms: 600_000, source: "relative py312-numpy-2.1.0" });
  // Another location, same name without its digits.
  assert.deepEqual(sibling, { ms: 7_800_000, source: "relative gcc12-12.5.0" });
  assert.equal(relativesKey("qt6-qtbase-6.10.1nb2"), relativesKey("qt5-qtbase-5.15.18nb1"));
  assert.equal(familyOf("py313-numpy-2.1.0"), "py");
  assert.equal(familyOf("gmake-4.4.1"), "");
});

test("category fallback: with too little to fit, a package never built takes its category's median, then the median of all", () => {
  const rows = [row("a-1", "devel/a", 10_000), row("b-1", "devel/b", 20_000), row("c-1", "devel/c", 30_000), row("d-1", "devel/d", 40_000), row("e-1", "lang/e", 900_000)];
  const model = createDurationModel(rows);
  const packages = [...rows.map((r) => facts(r.pkgname, r.location)), facts("newtool-1", "devel/newtool"), facts("newfont-1", "fonts/newfont"), facts("heavy-1", "fonts/heavy", { pbulkWeight: 300 })];
  const predicted = runSteps(model.predict(PLATFORM, flat(packages)));
  assert.deepEqual(predicted[0], { ms: 10_000, source: "imported history" });
  assert.deepEqual(predicted[5], { ms: 30_000, source: "category median devel" });
  assert.deepEqual(predicted[6], { ms: 30_000, source: "median" });
  // PBULK_WEIGHT scales a guess as pbulk's weight would.
  assert.deepEqual(predicted[7], { ms: 90_000, source: "median" });
});

test("the fit: with enough known packages, one never built is guessed from its category and what it needs, and says so", () => {
  // 30 known packages: those that need cmake take 100 times longer.
  const packages: PackageFacts[] = [facts("cmake-3.31", "devel/cmake"), facts("gettext-0.22", "devel/gettext")];
  const rows = [row("cmake-3.31", "devel/cmake", 300_000), row("gettext-0.22", "devel/gettext", 60_000)];
  const dependencies: number[][] = [[], []];
  for (let i = 0; i < 30; i++) {
    const needsCmake = i % 2 === 0;
    // Names without digits, so no two are relatives of each other.
    packages.push(facts(`tool${"abcdefghij"[i % 10]}${"klmnopqrst"[Math.floor(i / 10)]}-1.0`, `devel/t${i}`));
    rows.push(row(packages.at(-1)!.pkgname, `devel/t${i}`, needsCmake ? 1_000_000 : 10_000));
    dependencies.push(needsCmake ? [0] : [1]);
  }
  packages.push(facts("newcpp-1.0", "devel/newcpp"), facts("newc-1.0", "devel/newc"));
  dependencies.push([0], [1]);
  const dependents: number[][] = packages.map(() => []);
  dependencies.forEach((deps, i) => deps.forEach((d) => dependents[d]!.push(i)));
  const model = createDurationModel(rows);
  const predicted = runSteps(model.predict(PLATFORM, { packages, dependencies, dependents }));
  const [cpp, c] = predicted.slice(-2);
  assert.match(cpp!.source, /^fit over 32 known: category devel, 1 dependencies/);
  assert.ok(cpp!.ms > 10 * c!.ms, `needing cmake (${cpp!.ms} ms) should look much longer than needing gettext (${c!.ms} ms)`);
});

test("host speed: a host that builds the same packages twice as slowly gets speed 0.5, and its durations count at reference speed", () => {
  const model = createDurationModel();
  for (let i = 0; i < 5; i++) model.record(`p${i}-1`, `devel/p${i}`, 1000 * (i + 1), { platform: PLATFORM, host: "fast" });
  assert.equal(model.hostSpeed(PLATFORM, "fast"), 1);
  for (let i = 0; i < 5; i++) model.record(`p${i}-1`, `devel/p${i}`, 2000 * (i + 1), { platform: PLATFORM, host: "slow" });
  assert.ok(Math.abs(model.hostSpeed(PLATFORM, "slow") - 0.5) < 1e-9);
  // A package only the slow host built is expected to take half of what it took there.
  model.record("q-1", "devel/q", 8000, { platform: PLATFORM, host: "slow" });
  assert.ok(Math.abs(model.expectedMs("q-1", "devel/q", PLATFORM)! - 4000) < 1e-6);
  // Speeds are per platform.
  assert.equal(model.hostSpeed("Linux-6.1-aarch64", "slow"), 1);
});

test("per platform: a package built only on another platform is scaled by how the two platforms compare", () => {
  const model = createDurationModel();
  for (let i = 0; i < 10; i++) {
    model.record(`p${i}-1`, `devel/p${i}`, 1000 * (i + 1), { platform: "A" });
    model.record(`p${i}-1`, `devel/p${i}`, 3000 * (i + 1), { platform: "B" });
  }
  model.record("only-a-1", "devel/only-a", 5000, { platform: "A" });
  const [p] = runSteps(model.predict("B", flat([facts("only-a-1", "devel/only-a")])));
  assert.ok(Math.abs(p!.ms - 15_000) < 1e-6);
  assert.equal(p!.source, "history on A");
});

test("persistence round trip: what MarkDone taught the model, host speeds included, comes back from the store", async () => {
  const model = createDurationModel();
  const depgraph = new DepGraph(testDepGraphOptions({ history: model }));
  const store = createMemoryStateStore();
  persistState(store, depgraph, model);
  depgraph.replaceTree([record({ pkgname: "a-1", location: "devel/a" }), record({ pkgname: "b-1", location: "devel/b" })], "tree");
  const finish = (host: string, durationMs: number) => {
    const build = depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
    for (const a of depgraph.nextReadyJobs(PLATFORM, "dispatcher", 2, undefined)) {
      depgraph.markDone([{ buildId: build.id, pkgname: a.job.pkgname, leaseId: a.lease.id, agentId: host, succeeded: true, durationMs, binaryPackage: BINARY, logRef: "", failureReason: "" }]);
    }
  };
  finish("fast", 1000);
  finish("slow", 4000);
  assert.ok(Math.abs(model.hostSpeed(PLATFORM, "slow") - 0.25) < 1e-9);

  const restoredModel = createDurationModel();
  const restored = new DepGraph(testDepGraphOptions({ history: restoredModel }));
  await restoreState(createMemoryStateStore(store.entries), restored, restoredModel, pino({ level: "silent" }));
  assert.equal(restoredModel.hostSpeed(PLATFORM, "slow"), model.hostSpeed(PLATFORM, "slow"));
  assert.equal(restoredModel.expectedMs("a-1", "devel/a", PLATFORM), 1000);
  assert.deepEqual(restoredModel.snapshot(), model.snapshot());
});

test("the critical path uses predictions: a never-built relative of a long package, at another location, goes first", () => {
  const shortOnes = ["bbb", "ccc", "ddd", "eee"].map((name) => row(`${name}-1`, `misc/${name}`, 20_000));
  const model = createDurationModel([row("gcc12-12.5.0", "lang/gcc12", 6_000_000), ...shortOnes]);
  const depgraph = new DepGraph(testDepGraphOptions({ history: model }));
  depgraph.replaceTree([
    record({ pkgname: "aaa-1", location: "misc/aaa" }),
    record({ pkgname: "gcc14-14.3.0", location: "lang/gcc14" }),
    record({ pkgname: "zzz-1", location: "misc/zzz" }),
  ], "tree");
  depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: "critical-path", limitTo: [], packagesDir: "", binaryPackages: new Map() });
  const [first] = depgraph.nextReadyJobs(PLATFORM, "agent", 1, undefined);
  assert.equal(first?.job.pkgname, "gcc14-14.3.0");
});
