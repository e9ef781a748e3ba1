import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { createScanRecordParser, type ScanRecord } from "../../services/depgraph/core/scan-record.js";
import { PackageTree, type TreeChange, type TreePackage } from "../../services/depgraph/core/tree.js";
import { record, SHARED_PRESOLVE, type RecordSpec } from "../support/records.js";

// Incremental updates must leave the tree exactly as a full resolve of the
// same records would, and say what they changed.

/** What a package looks like from outside, minus the input line of its record. */
function view(pkg: TreePackage) {
  return { record: { ...pkg.record, line: 0 }, dependencies: [...pkg.dependencies], unresolved: pkg.unresolved };
}

const sortedCycles = (tree: PackageTree) => tree.cyclesFound().map((c) => [...c].sort()).sort();
const unresolvedSet = (tree: PackageTree) => tree.unresolvedDependencies().map((u) => JSON.stringify(u)).sort();

/** assertSameAsFullResolve compares every answer of tree with a fresh import of records. */
function assertSameAsFullResolve(tree: PackageTree, records: Iterable<ScanRecord>): void {
  const fresh = new PackageTree();
  assert.deepEqual(fresh.applyTree([...records]).problems, []);
  assert.equal(tree.size, fresh.size);
  const locations = new Set<string>();
  for (const pkg of fresh.values()) {
    const name = pkg.record.pkgname;
    const mine = tree.get(name);
    assert.ok(mine !== undefined, `${name} is missing`);
    assert.deepEqual(view(mine), view(pkg), name);
    assert.deepEqual([...tree.dependentsOf(name)].sort(), [...fresh.dependentsOf(name)].sort(), `dependents of ${name}`);
    locations.add(pkg.record.location);
  }
  for (const location of locations) {
    assert.deepEqual([...tree.atLocation(location)].sort(), [...fresh.atLocation(location)].sort(), location);
  }
  const { cycles: _mine, ...mySummary } = tree.summary();
  const { cycles: _theirs, ...freshSummary } = fresh.summary();
  assert.deepEqual(mySummary, freshSummary);
  assert.deepEqual(sortedCycles(tree), sortedCycles(fresh));
  assert.deepEqual(unresolvedSet(tree), unresolvedSet(fresh));
}

/** Records by PKGNAME and by location: the model the tree is checked against. */
class Model {
  readonly records = new Map<string, ScanRecord>();
  private readonly byLocation = new Map<string, Set<string>>();
  constructor(records: Iterable<ScanRecord>) {
    this.apply([...records], []);
  }
  /** As applyLocations: the named locations hold exactly the given records. */
  apply(records: readonly ScanRecord[], removedLocations: readonly string[]): void {
    for (const location of [...removedLocations, ...records.map((r) => r.location)]) {
      for (const name of this.byLocation.get(location) ?? []) this.records.delete(name);
      this.byLocation.delete(location);
    }
    for (const r of records) {
      const moved = this.records.get(r.pkgname);
      if (moved !== undefined) this.byLocation.get(moved.location)?.delete(r.pkgname);
      this.records.set(r.pkgname, r);
      this.byLocation.set(r.location, (this.byLocation.get(r.location) ?? new Set()).add(r.pkgname));
    }
  }
  at(location: string): ScanRecord[] {
    return [...this.byLocation.get(location) ?? []].map((name) => this.records.get(name)!);
  }
}

function tree(specs: RecordSpec[]): { tree: PackageTree; model: Model } {
  const records = specs.map(record);
  const t = new PackageTree();
  t.applyTree(records);
  // Built now, so the updates below have to keep it current.
  for (const r of records) t.dependentsOf(r.pkgname);
  return { tree: t, model: new Model(records) };
}

function apply(t: { tree: PackageTree; model: Model }, specs: RecordSpec[], removedLocations: string[] = []): TreeChange {
  const records = specs.map(record);
  const revision = t.tree.revision;
  const { problems, change } = t.tree.applyLocations(records, removedLocations);
  assert.deepEqual(problems, []);
  t.model.apply(records, removedLocations);
  assertSameAsFullResolve(t.tree, t.model.records.values());
  const changedAnything = change.added.length + change.removed.length + change.changed.length > 0;
  assert.equal(change.revision, revision + (changedAnything ? 1 : 0));
  assert.equal(t.tree.revision, change.revision);
  return change;
}

const lists = (c: TreeChange) => ({ added: c.added, removed: c.removed, changed: c.changed });

const GMAKE = { pkgname: "gmake-4.4.1", location: "devel/gmake" };
const APP = { pkgname: "app-1.0", location: "misc/app", deps: ["gmake>=4 devel/gmake"] };

test("a new better version is picked up by every pattern it matches, and its removal gives the old one back", () => {
  const t = tree([GMAKE, APP, { pkgname: "old-1.0", location: "misc/old", deps: ["gmake<4.5 devel/gmake"] }]);
  const newer = { pkgname: "gmake-4.5", location: "devel/gmake-devel" };
  assert.deepEqual(lists(apply(t, [newer])), { added: ["gmake-4.5"], removed: [], changed: ["app-1.0"] });
  assert.deepEqual(t.tree.get("app-1.0")!.dependencies, ["gmake-4.5"]);
  assert.deepEqual(t.tree.get("old-1.0")!.dependencies, ["gmake-4.4.1"]);
  assert.deepEqual([...t.tree.dependentsOf("gmake-4.5")], ["app-1.0"]);

  assert.deepEqual(lists(apply(t, [], ["devel/gmake-devel"])), { added: [], removed: ["gmake-4.5"], changed: ["app-1.0"] });
  assert.deepEqual(t.tree.get("app-1.0")!.dependencies, ["gmake-4.4.1"]);
  assert.deepEqual(t.tree.dependentsOf("gmake-4.5"), []);
});

test("a best match removed leaves the pattern unresolved, and a new package resolves it again", () => {
  const t = tree([GMAKE, APP]);
  assert.deepEqual(lists(apply(t, [], ["devel/gmake"])), { added: [], removed: ["gmake-4.4.1"], changed: ["app-1.0"] });
  assert.equal(t.tree.get("app-1.0")!.unresolved, 'could not resolve dependency "gmake>=4"');
  assert.deepEqual(t.tree.unresolvedDependencies(), [{ pkgname: "app-1.0", location: "misc/app", pattern: "gmake>=4", dependencyLocation: "devel/gmake" }]);
  assert.equal(t.tree.summary().prefailed, 1);

  assert.deepEqual(lists(apply(t, [{ pkgname: "gmake-4.0", location: "devel/gmake" }])), { added: ["gmake-4.0"], removed: [], changed: ["app-1.0"] });
  assert.equal(t.tree.get("app-1.0")!.unresolved, "");
  assert.deepEqual(t.tree.unresolvedDependencies(), []);
  assert.equal(t.tree.summary().prefailed, 0);
});

test("a MULTI_VERSION location bumped as a whole: each pattern follows its own variant", () => {
  const six = (py: string, v: string) => ({ pkgname: `py${py}-six-${v}`, location: "lang/py-six", multiVersion: `PYTHON_VERSION_REQD=${py}` });
  const t = tree([
    six("312", "1.16.0"), six("313", "1.16.0"),
    { pkgname: "py313-app-2.0", location: "misc/py-app", deps: ["py313-six-[0-9]* lang/py-six"] },
    { pkgname: "py312-app-2.0", location: "misc/py-app", multiVersion: "PYTHON_VERSION_REQD=312", deps: ["py312-six>=1.16 lang/py-six"] },
    // Equal versions: the greater name wins.
    { pkgname: "any-1.0", location: "misc/any", deps: ["py31[23]-six-[0-9]* lang/py-six"] },
  ]);
  assert.deepEqual(t.tree.get("any-1.0")!.dependencies, ["py313-six-1.16.0"]);
  const change = apply(t, [six("312", "1.17.0"), six("313", "1.17.0")]);
  assert.deepEqual(lists(change), {
    added: ["py312-six-1.17.0", "py313-six-1.17.0"],
    removed: ["py312-six-1.16.0", "py313-six-1.16.0"],
    changed: ["any-1.0", "py312-app-2.0", "py313-app-2.0"],
  });
  assert.deepEqual(t.tree.get("py312-app-2.0")!.dependencies, ["py312-six-1.17.0"]);
  assert.deepEqual(t.tree.get("py313-app-2.0")!.dependencies, ["py313-six-1.17.0"]);
  assert.deepEqual([...t.tree.atLocation("lang/py-six")].sort(), ["py312-six-1.17.0", "py313-six-1.17.0"]);

  // Only the 3.12 variant is given: the 3.13 one is no longer built there.
  assert.deepEqual(lists(apply(t, [six("312", "1.17.0")])), { added: [], removed: ["py313-six-1.17.0"], changed: ["any-1.0", "py313-app-2.0"] });
  assert.deepEqual(t.tree.get("any-1.0")!.dependencies, ["py312-six-1.17.0"]);
});

test("a cycle appears with the edge that closes it and goes with the edge that breaks it", () => {
  const t = tree([
    { pkgname: "chicken-1.0", location: "misc/chicken", deps: ["egg-[0-9]* misc/egg"] },
    { pkgname: "egg-1.0", location: "misc/egg" },
    { pkgname: "farm-1.0", location: "misc/farm", deps: ["chicken>=1 misc/chicken"] },
    { pkgname: "self-1.0", location: "misc/self", deps: ["self-[0-9]* misc/self"] },
  ]);
  assert.deepEqual(sortedCycles(t.tree), [["self-1.0"]]);
  const closing = { pkgname: "egg-1.0", location: "misc/egg", deps: ["chicken-[0-9]* misc/chicken"] };
  assert.deepEqual(lists(apply(t, [closing])), { added: [], removed: [], changed: ["egg-1.0"] });
  assert.deepEqual(sortedCycles(t.tree), [["chicken-1.0", "egg-1.0"], ["self-1.0"]]);

  // The cycle grows through a new package, then breaks when it goes.
  apply(t, [{ pkgname: "hen-1.0", location: "misc/hen", deps: ["chicken-[0-9]* misc/chicken"] },
    { pkgname: "egg-1.0", location: "misc/egg", deps: ["hen-[0-9]* misc/hen"] }]);
  assert.deepEqual(sortedCycles(t.tree), [["chicken-1.0", "egg-1.0", "hen-1.0"], ["self-1.0"]]);
  assert.deepEqual(lists(apply(t, [], ["misc/hen"])), { added: [], removed: ["hen-1.0"], changed: ["egg-1.0"] });
  assert.deepEqual(sortedCycles(t.tree), [["self-1.0"]]);
  assert.equal(t.tree.get("egg-1.0")!.unresolved, 'could not resolve dependency "hen-[0-9]*"');
});

test("a repeated update is a no-op: same revision, nothing listed", () => {
  const t = tree([GMAKE, APP]);
  const update = [{ ...GMAKE, pkgname: "gmake-4.5" }];
  apply(t, update);
  const revision = t.tree.revision;
  assert.deepEqual(lists(apply(t, update)), { added: [], removed: [], changed: [] });
  assert.equal(t.tree.revision, revision);
  // The same content from another input line is the same record.
  assert.deepEqual(lists(t.tree.applyLocations([{ ...record(update[0]!), line: 99 }], []).change), { added: [], removed: [], changed: [] });
  assert.deepEqual(lists(apply(t, [], ["misc/nowhere"])), { added: [], removed: [], changed: [] });
  assert.equal(t.tree.revision, revision);
});

test("a record changed in any field is listed as changed, with its dependents untouched when they resolve the same", () => {
  const t = tree([GMAKE, APP]);
  assert.deepEqual(lists(apply(t, [{ ...GMAKE, weight: 500 }])), { added: [], removed: [], changed: ["gmake-4.4.1"] });
  assert.deepEqual(lists(apply(t, [{ ...GMAKE, weight: 500, skip: "not on this platform" }])), { added: [], removed: [], changed: ["gmake-4.4.1"] });
  assert.equal(t.tree.summary().prefailed, 1);
  assert.equal(t.tree.get("gmake-4.4.1")!.record.skipReason, "not on this platform");
});

test("a PKGNAME given at another location moves there; a PKGNAME given twice is refused", () => {
  const t = tree([GMAKE, APP]);
  assert.deepEqual(lists(apply(t, [{ ...GMAKE, location: "devel/gmake4" }])), { added: [], removed: [], changed: ["gmake-4.4.1"] });
  assert.deepEqual(t.tree.atLocation("devel/gmake"), []);
  assert.deepEqual(t.tree.atLocation("devel/gmake4"), ["gmake-4.4.1"]);
  assert.equal(t.tree.summary().locations, 2);

  const { problems, change } = t.tree.applyLocations([record({ ...APP, deps: [] }), record({ ...APP, location: "misc/app2" })], []);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!.message, /PKGNAME app-1\.0 was already given/);
  assert.deepEqual(lists(change), { added: [], removed: [], changed: ["app-1.0"] });
  assert.deepEqual(t.tree.get("app-1.0")!.dependencies, []);
});

test("an invalid pattern stays unresolved whatever comes", () => {
  const t = tree([GMAKE, { pkgname: "odd-1.0", location: "misc/odd", deps: ["gmake}>=4 devel/gmake", "gmake>=4 devel/gmake"] }]);
  assert.equal(t.tree.get("odd-1.0")!.unresolved, 'could not resolve dependency "gmake}>=4"');
  assert.deepEqual(t.tree.get("odd-1.0")!.dependencies, ["gmake-4.4.1"]);
  assert.deepEqual(lists(apply(t, [{ pkgname: "gmake-5.0", location: "devel/gmake5" }])), { added: ["gmake-5.0"], removed: [], changed: ["odd-1.0"] });
  assert.deepEqual(t.tree.get("odd-1.0")!.dependencies, ["gmake-5.0"]);
});

test("applyTree and replace: a full import reports its change against the tree it replaces", () => {
  const t = new PackageTree();
  const first = t.applyTree([GMAKE, APP].map(record));
  assert.deepEqual(lists(first.change), { added: ["app-1.0", "gmake-4.4.1"], removed: [], changed: [] });
  assert.equal(first.change.revision, 1);
  // An import always makes a revision, even one that changes nothing.
  const again = t.applyTree([GMAKE, APP].map(record));
  assert.deepEqual(lists(again.change), { added: [], removed: [], changed: [] });
  assert.equal(t.revision, 2);
  const next = t.applyTree([{ ...GMAKE, pkgname: "gmake-4.5" }, APP, { pkgname: "new-1.0", location: "misc/new" }].map(record));
  assert.deepEqual(lists(next.change), { added: ["gmake-4.5", "new-1.0"], removed: ["gmake-4.4.1"], changed: ["app-1.0"] });
  assert.equal(t.revision, 3);

  // The old entry points take the same path.
  assert.deepEqual(t.replace([record({ pkgname: "gmake-4.6", location: "devel/gmake" })], "locations"), []);
  assert.deepEqual(t.get("app-1.0")!.dependencies, ["gmake-4.6"]);
  t.removeLocations(["misc/new"]);
  assert.equal(t.get("new-1.0"), undefined);
  assert.equal(t.revision, 5);
});

// --- the real pkgsrc scan ----------------------------------------------------

const havePresolve = existsSync(SHARED_PRESOLVE);

function readShared(): ScanRecord[] {
  const records: ScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => assert.fail(p.message));
  parser.push(gunzipSync(readFileSync(SHARED_PRESOLVE)));
  parser.end();
  return records;
}

/** mulberry32: the same random changes on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const unresolvedPatterns = (t: PackageTree) => {
  const patterns = new Map<string, string>();
  for (const u of t.unresolvedDependencies()) patterns.set(u.pkgname, `${patterns.get(u.pkgname) ?? ""} ${u.pattern}`);
  return patterns;
};

/**
 * Snapshot follows a tree's packages from outside; catchUp says what changed
 * since the last call, which is what the tree should have reported.
 */
class Snapshot {
  readonly packages = new Map<string, TreePackage>();
  unresolved: Map<string, string>;
  constructor(private readonly tree: PackageTree) {
    for (const p of tree.values()) this.packages.set(p.record.pkgname, p);
    this.unresolved = unresolvedPatterns(tree);
  }
  catchUp() {
    const unresolved = unresolvedPatterns(this.tree);
    const added: string[] = [];
    const changed: string[] = [];
    for (const b of this.tree.values()) {
      const name = b.record.pkgname;
      const a = this.packages.get(name);
      if (a === b) continue;
      if (a === undefined) added.push(name);
      else if (JSON.stringify(view(a)) !== JSON.stringify(view(b)) || this.unresolved.get(name) !== unresolved.get(name)) changed.push(name);
      this.packages.set(name, b);
    }
    const removed: string[] = [];
    for (const name of this.packages.keys()) if (this.tree.get(name) === undefined) removed.push(name);
    for (const name of removed) this.packages.delete(name);
    this.unresolved = unresolved;
    return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
  }
}

test("real scan: random location changes applied one by one equal a full resolve of the same records", { skip: havePresolve ? false : `no ${fileURLToPath(SHARED_PRESOLVE)}` }, (t) => {
  const records = readShared();
  const inc = new PackageTree();
  inc.applyTree(records);
  inc.dependentsOf("gmake-4.4.1");
  const initial = new Map([...inc.values()].map((p) => [p.record.pkgname, view(p)]));
  const initialUnresolved = unresolvedPatterns(inc);
  const snapshot = new Snapshot(inc);
  const model = new Model(records);
  const random = seeded(20260401);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const locations = [...new Set(records.map((r) => r.location))];
  // Packages some pattern resolves to: a newer one beats them.
  const depended = [...new Set([...inc.values()].flatMap((p) => p.dependencies))].sort();
  const removedLocations: string[] = [];
  const counts = { remove: 0, readd: 0, bump: 0, beat: 0, mixed: 0, added: 0, removed: 0, changed: 0 };

  const step = (recs: ScanRecord[], removed: string[]) => {
    const revision = inc.revision;
    const { problems, change } = inc.applyLocations(recs, removed);
    assert.deepEqual(problems, []);
    model.apply(recs, removed);
    assert.deepEqual(lists(change), snapshot.catchUp());
    const any = change.added.length + change.removed.length + change.changed.length > 0;
    assert.equal(inc.revision, revision + (any ? 1 : 0));
    counts.added += change.added.length;
    counts.removed += change.removed.length;
    counts.changed += change.changed.length;
  };
  const bumpAt = (location: string): ScanRecord[] => model.at(location).map((r) => ({ ...r, pkgname: `${r.pkgname}.1` }));
  const beater = (i: number): ScanRecord => {
    const target = model.records.get(pick(depended));
    const base = target ?? records[0]!;
    return { ...base, pkgname: `${base.pkgname}.99`, location: `beaters/b${i}` };
  };

  for (let i = 0; i < 40; i++) {
    const kind = i % 5;
    if (kind === 0) {
      const location = pick(locations);
      if (model.at(location).length === 0) continue;
      removedLocations.push(location);
      step([], [location]);
      counts.remove++;
    } else if (kind === 1 && removedLocations.length > 0) {
      const location = removedLocations.pop()!;
      step(records.filter((r) => r.location === location), []);
      counts.readd++;
    } else if (kind === 2) {
      step(bumpAt(pick(locations)), []);
      counts.bump++;
    } else if (kind === 3) {
      step([beater(i)], []);
      counts.beat++;
    } else {
      // Several at once, and the same again (a redelivered event).
      const recs = [...bumpAt(pick(locations)), beater(i), ...model.at(pick(locations)).map((r) => ({ ...r, maintainer: "someone@example.org" }))];
      const gone = [pick(locations)].filter((l) => !recs.some((r) => r.location === l));
      step(recs, gone);
      const revision = inc.revision;
      assert.deepEqual(lists(inc.applyLocations(recs, gone).change), { added: [], removed: [], changed: [] });
      assert.equal(inc.revision, revision);
      counts.mixed++;
    }
  }
  t.diagnostic(JSON.stringify(counts));
  assert.ok(counts.added > 0 && counts.removed > 0 && counts.changed > 0);

  // The devel/zlib/buildlink3.mk change, as a zlib ABI bump would make it: every
  // includer's location is rescanned and its records ask for a zlib nothing provides yet.
  const includes = (r: ScanRecord) => r.scanDepends.includes("../../devel/zlib/buildlink3.mk");
  const includerLocations = new Set([...model.records.values()].filter(includes).map((r) => r.location));
  assert.ok(includerLocations.size > 4000, `${includerLocations.size} locations`);
  const rescanned = [...model.records.values()].filter((r) => includerLocations.has(r.location)).map((r) => includes(r)
    ? { ...r, dependencies: [...r.dependencies.filter((d) => !d.pattern.startsWith("zlib>=")), { pattern: "zlib>=1.4", location: "devel/zlib" }] }
    : r);
  const beforeZlib = inc.revision;
  step(rescanned, []);
  assert.equal(inc.revision, beforeZlib + 1);
  assert.equal(inc.unresolvedDependencies().filter((u) => u.pattern === "zlib>=1.4").length, rescanned.filter(includes).length);
  step(model.at("devel/zlib").map((r) => ({ ...r, pkgname: "zlib-1.4" })), []);
  assert.equal(inc.unresolvedDependencies().filter((u) => u.pattern === "zlib>=1.4").length, 0);
  assert.deepEqual(inc.atLocation("devel/zlib"), ["zlib-1.4"]);

  assertSameAsFullResolve(inc, model.records.values());

  // Putting every original record back gives the first import again.
  const beaters = [...model.records.values()].filter((r) => r.location.startsWith("beaters/")).map((r) => r.location);
  inc.applyLocations(records, beaters);
  assert.equal(inc.size, initial.size);
  for (const [name, pkg] of initial) assert.deepEqual(view(inc.get(name)!), pkg, name);
  assert.deepEqual(unresolvedPatterns(inc), initialUnresolved);
});
