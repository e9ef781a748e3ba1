// The bundled example tree (examples/tree) and its two helpers, run for real:
// examples/bin/scan-one.mjs must print pbulk-index records depgraph reads, and
// examples/bin/build-one.mjs must turn a package plus its dependencies'
// binary packages into a binary package whose content comes from them.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createScanRecordParser, type ScanRecord } from "../../services/depgraph/core/scan-record.js";
import type { InvalidScanRecord } from "../../services/depgraph/core/errors.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const TREE = path.join(ROOT, "examples", "tree");
const SCAN = path.join(ROOT, "examples", "bin", "scan-one.mjs");
const BUILD = path.join(ROOT, "examples", "bin", "build-one.mjs");

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { ...options, encoding: "utf8", maxBuffer: 32 * 1024 * 1024, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

function scan(args: string[], env: NodeJS.ProcessEnv = {}, tree = TREE): Promise<RunResult> {
  return run(process.execPath, [SCAN, ...args], { cwd: tree, env: { PATH: process.env.PATH, PKGFARM_TREE: tree, ...env } });
}

function parse(text: string): { records: ScanRecord[]; problems: InvalidScanRecord[] } {
  const records: ScanRecord[] = [];
  const problems: InvalidScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
  parser.push(text);
  parser.end();
  return { records, problems };
}

/** Splits pbulk-index text into the text of each record. */
function recordTexts(text: string): string[] {
  return text.split(/^(?=PKGNAME=)/m).filter((t) => t !== "");
}

let tmp = "";
let allText = "";
let all: ScanRecord[] = [];

before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), "pkgfarm-examples-"));
  const r = await scan(["--all"]);
  assert.equal(r.code, 0, r.stderr);
  allText = r.stdout;
  all = parse(allText).records;
});

after(() => {
  if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
});

// ---- scan-one.mjs -------------------------------------------------------------

test("scan-one --all prints at least 30 well-formed pbulk-index records, one per PKGNAME", () => {
  const { records, problems } = parse(allText);
  assert.deepEqual(problems.map((p) => p.message), []);
  assert.ok(records.length >= 30, `only ${records.length} records`);
  assert.equal(new Set(records.map((r) => r.pkgname)).size, records.length, "PKGNAMEs repeat");
  const keys = recordTexts(allText)[0]!.split("\n").filter((l) => l !== "").map((l) => l.slice(0, l.indexOf("=")));
  assert.deepEqual(keys, [
    "PKGNAME", "PKG_LOCATION", "ALL_DEPENDS", "PKG_SKIP_REASON", "PKG_FAIL_REASON", "NO_BIN_ON_FTP", "RESTRICTED",
    "CATEGORIES", "MAINTAINER", "USE_DESTDIR", "BOOTSTRAP_PKG", "USERGROUP_PHASE", "SCAN_DEPENDS",
  ]);
  for (const r of records) {
    assert.ok(existsSync(path.join(TREE, r.location, "Makefile")), `${r.pkgname}: no ${r.location}/Makefile`);
    assert.ok(existsSync(path.join(TREE, r.location, "build.sh")), `${r.pkgname}: no ${r.location}/build.sh`);
    assert.ok(r.scanDepends.split(" ").includes(`../../${r.location}/Makefile`), `${r.pkgname}: SCAN_DEPENDS ${r.scanDepends}`);
  }
});

test("every dependency of the tree names a package of the tree", () => {
  for (const r of all) {
    for (const d of r.dependencies) {
      assert.equal(resolve(all, d).length, 1, `${r.pkgname}: ${d.pattern}:../../${d.location} resolves to no single package`);
    }
  }
});

test("the MULTI_VERSION family yields one record per Python at one location", () => {
  const six = all.filter((r) => r.location === "lang/py-six");
  assert.deepEqual(six.map((r) => r.pkgname), ["py312-six-1.17.0", "py313-six-1.17.0"]);
  assert.deepEqual(six.map((r) => r.multiVersion), ["PYTHON_VERSION_REQD=312", "PYTHON_VERSION_REQD=313"]);
  assert.deepEqual(six[1]!.dependencies, [
    { pattern: "py313-setuptools>=60", location: "devel/py-setuptools" },
    { pattern: "python313>=3", location: "lang/python313" },
  ]);
  assert.ok(six[0]!.scanDepends.includes("../../lang/python/pyversion.mk"));
  const pythons = all.filter((r) => r.location.startsWith("lang/python3")).map((r) => r.pkgname);
  assert.deepEqual(pythons.sort(), ["python312-3.12.8", "python313-3.13.1"]);
  const scons = all.find((r) => r.location === "devel/scons")!;
  assert.ok(scons.dependencies.some((d) => d.pattern === "py313-six-[0-9]*" && d.location === "lang/py-six"));
  assert.equal(scons.multiVersion, "");
  assert.match(recordTexts(allText).find((t) => t.startsWith("PKGNAME=py313-six-"))!, /^MULTI_VERSION= PYTHON_VERSION_REQD=313$/m);
});

test("one package has a PKG_FAIL_REASON and another depends on it", () => {
  const failing = all.filter((r) => r.failReason !== "");
  assert.deepEqual(failing.map((r) => r.location), ["lang/openjdk8"]);
  assert.match(failing[0]!.failReason, /bootstrap JDK/);
  assert.ok(all.some((r) => r.dependencies.some((d) => d.location === "lang/openjdk8")));
});

test("scanning one location prints exactly its records of --all", async () => {
  const byLocation = new Map<string, string>();
  for (const t of recordTexts(allText)) {
    const location = /^PKG_LOCATION=(.*)$/m.exec(t)![1]!;
    byLocation.set(location, (byLocation.get(location) ?? "") + t);
  }
  assert.equal(byLocation.size, new Set(all.map((r) => r.location)).size);
  const locations = [...byLocation.keys()];
  const results = await Promise.all(locations.map((l) => scan([l], { PKGFARM_LOCATION: l })));
  results.forEach((r, i) => {
    assert.equal(r.code, 0, `${locations[i]}: ${r.stderr}`);
    assert.equal(r.stdout, byLocation.get(locations[i]!), locations[i]);
  });
  // The location may come from PKGFARM_LOCATION alone.
  const fromEnv = await scan([], { PKGFARM_LOCATION: "lang/py-six" });
  assert.equal(fromEnv.code, 0, fromEnv.stderr);
  assert.equal(fromEnv.stdout, byLocation.get("lang/py-six"));
});

test("scan-one fails with a message for an unknown or malformed location", async () => {
  for (const location of ["misc/no-such-package", "../../etc", "devel", "lang/python"]) {
    const r = await scan([location], { PKGFARM_LOCATION: location });
    assert.notEqual(r.code, 0, location);
    assert.equal(r.stdout, "", location);
    assert.match(r.stderr, /scan-one: /, location);
  }
});

test("scan-one reports a malformed Makefile with its file and line, and --all goes on", async () => {
  const tree = path.join(tmp, "bad-tree");
  for (const [location, makefile] of [
    ["devel/good", "DISTNAME=\tgood-1.0\nDEPENDS+=\tother>=1:../../devel/other\n"],
    ["devel/other", "DISTNAME=\tother-1.0\n"],
    ["devel/bad", "DISTNAME=\tbad-1.0\n# fine so far\n.if defined(FOO)\n"],
    ["devel/typo", "DISTNAME=\ttypo-1.0\nDEPENDS+=\t${NO_SUCH_VAR}>=1:../../devel/other\n"],
    ["devel/baddep", "DISTNAME=\tbaddep-1.0\nDEPENDS+=\tother>=1:/devel/other\n"],
  ] as const) {
    mkdirSync(path.join(tree, location), { recursive: true });
    writeFileSync(path.join(tree, location, "Makefile"), makefile);
  }
  const bad = await scan(["devel/bad"], {}, tree);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /devel\/bad\/Makefile:3: directive "\.if"/);
  const typo = await scan(["devel/typo"], {}, tree);
  assert.equal(typo.code, 1);
  assert.match(typo.stderr, /NO_SUCH_VAR is not defined/);
  const baddep = await scan(["devel/baddep"], {}, tree);
  assert.equal(baddep.code, 1);
  assert.match(baddep.stderr, /not pattern:\.\.\/\.\.\/category\/package/);
  const everything = await scan(["--all"], {}, tree);
  assert.equal(everything.code, 1);
  assert.deepEqual(parse(everything.stdout).records.map((r) => r.pkgname), ["good-1.0", "other-1.0"]);
  assert.equal(everything.stderr.trim().split("\n").length, 3, everything.stderr);
});

// ---- build-one.mjs ------------------------------------------------------------

interface BuildJob {
  location: string;
  pkgname: string;
  multiVersion?: string;
  depends: string[]; // PKGNAMEs whose .tgz go into PKGFARM_DEPENDS_DIR
}

/** build runs build-one.mjs for one job; packages are read from and written to pkgDir. */
async function build(job: BuildJob, pkgDir: string): Promise<RunResult & { output: string }> {
  const jobDir = path.join(tmp, "jobs", `${job.pkgname}-${Math.random().toString(36).slice(2)}`);
  const dependsDir = path.join(jobDir, "depends");
  mkdirSync(dependsDir, { recursive: true });
  for (const name of job.depends) symlinkSync(path.join(pkgDir, `${name}.tgz`), path.join(dependsDir, `${name}.tgz`));
  const output = path.join(pkgDir, `${job.pkgname}.tgz`);
  const r = await run(process.execPath, [BUILD], {
    cwd: tmp,
    env: {
      PATH: process.env.PATH,
      PKGFARM_TREE: TREE,
      PKGFARM_LOCATION: job.location,
      PKGFARM_PKGNAME: job.pkgname,
      PKGFARM_MULTI_VERSION: job.multiVersion ?? "",
      PKGFARM_WORKDIR: path.join(jobDir, "work"),
      PKGFARM_DEPENDS_DIR: dependsDir,
      PKGFARM_OUTPUT: output,
    },
  });
  return { ...r, output };
}

async function tarList(archive: string): Promise<string[]> {
  const r = await run("tar", ["tzf", archive]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").filter((l) => l !== "" && !l.endsWith("/")).map((l) => l.replace(/^\.\//, ""));
}

async function tarRead(archive: string, member: string): Promise<string> {
  const dir = mkdtempSync(path.join(tmp, "x-"));
  const r = await run("tar", ["xzf", archive, "-C", dir]);
  assert.equal(r.code, 0, r.stderr);
  return readFileSync(path.join(dir, member), "utf8");
}

test("a three-level chain builds for real, each package made from its dependencies' packages", async () => {
  const pkgs = path.join(tmp, "chain");
  mkdirSync(pkgs);
  const leaf = await build({ location: "pkgtools/cwrappers", pkgname: "cwrappers-20220403", depends: [] }, pkgs);
  assert.equal(leaf.code, 0, leaf.stderr);
  assert.match(leaf.stdout, /===> Created .*cwrappers-20220403\.tgz/);
  assert.deepEqual((await tarList(leaf.output)).sort(), [
    "+BUILD_INFO", "+COMMENT", "+CONTENTS", "libexec/cwrappers/cc-wrapper", "share/cwrappers/VERSION",
  ]);

  const cc = await build({ location: "devel/cc-example", pkgname: "cc-example-1.0", depends: ["cwrappers-20220403"] }, pkgs);
  assert.equal(cc.code, 0, cc.stderr);
  assert.match(cc.stdout, /Installing dependency cwrappers-20220403/);
  assert.ok((await tarList(cc.output)).includes("bin/cc-example"));
  // The compiler carries the version it read from the installed cwrappers package.
  assert.match(await tarRead(cc.output, "bin/cc-example"), /^CWRAPPERS_VERSION=20220403$/m);
  const contents = await tarRead(cc.output, "+CONTENTS");
  assert.match(contents, /^@name cc-example-1\.0$/m);
  assert.match(contents, /^@pkgdep cwrappers>=20150314$/m);
  assert.match(contents, /^@blddep cwrappers-20220403$/m);
  assert.match(contents, /^bin\/cc-example$/m);
  assert.match(await tarRead(cc.output, "+BUILD_INFO"), /^PKGPATH=devel\/cc-example$/m);

  const zlib = await build({ location: "devel/zlib", pkgname: "zlib-1.3.1", depends: ["cc-example-1.0", "cwrappers-20220403"] }, pkgs);
  assert.equal(zlib.code, 0, zlib.stderr);
  // Compiled by the cc-example package just built, which names the cwrappers it was built with.
  assert.match(await tarRead(zlib.output, "lib/libz.sh"), /^# libz\.sh: compiled by cc-example 1\.0 \(cwrappers 20220403\)$/m);
});

test("build-one refuses a build whose dependencies are missing, and one with a PKG_FAIL_REASON", async () => {
  const pkgs = path.join(tmp, "refused");
  mkdirSync(pkgs);
  const missing = await build({ location: "devel/cc-example", pkgname: "cc-example-1.0", depends: [] }, pkgs);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /dependency cwrappers>=20150314 \(pkgtools\/cwrappers\) is not among/);
  assert.equal(existsSync(missing.output), false);

  const broken = await build({ location: "lang/openjdk8", pkgname: "openjdk8-1.8.432", depends: [] }, pkgs);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /cannot be built: "openjdk8 needs a bootstrap JDK/);

  const wrongName = await build({ location: "lang/py-six", pkgname: "py311-six-1.17.0", depends: [] }, pkgs);
  assert.equal(wrongName.code, 2);
  assert.match(wrongName.stderr, /builds py312-six-1\.17\.0, py313-six-1\.17\.0, not py311-six-1\.17\.0/);

  const badEnv = await run(process.execPath, [BUILD], { env: { PATH: process.env.PATH } });
  assert.equal(badEnv.code, 2);
  assert.match(badEnv.stderr, /^build-one: PKGFARM_TREE is not set\n$/);
});

/** resolve finds the records a dependency names: at its location, with the pattern's base name. */
function resolve(records: readonly ScanRecord[], dep: { pattern: string; location: string }): ScanRecord[] {
  const base = dep.pattern.replace(/(-\[.*|[<>=].*)$/, "");
  return records.filter((r) => r.location === dep.location && r.pkgname.slice(0, r.pkgname.lastIndexOf("-")) === base);
}

test("the whole tree builds in dependency order with exactly the designed failures", async () => {
  const pkgs = path.join(tmp, "world");
  mkdirSync(pkgs);
  const byName = new Map(all.map((r) => [r.pkgname, r]));
  const direct = new Map(all.map((r) => [r.pkgname, r.dependencies.map((d) => resolve(all, d)[0]!.pkgname)]));
  const closure = (name: string, seen = new Set<string>()): Set<string> => {
    for (const d of direct.get(name)!) {
      if (!seen.has(d)) {
        seen.add(d);
        closure(d, seen);
      }
    }
    return seen;
  };
  const state = new Map<string, string>();
  for (const r of all) {
    if (r.failReason !== "") state.set(r.pkgname, "prefailed");
    else if (closure(r.pkgname).has(r.pkgname)) state.set(r.pkgname, "cycle");
  }
  const logs = new Map<string, RunResult>();
  const running = new Map<string, Promise<void>>();
  for (;;) {
    for (const r of all) {
      if (state.has(r.pkgname)) continue;
      const deps = direct.get(r.pkgname)!;
      if (deps.some((d) => ["failed", "prefailed", "indirect-failed", "cycle", "blocked-by-cycle"].includes(state.get(d) ?? ""))) {
        state.set(r.pkgname, deps.some((d) => ["cycle", "blocked-by-cycle"].includes(state.get(d) ?? "")) ? "blocked-by-cycle" : "indirect-failed");
      }
    }
    const ready = all.filter((r) => !state.has(r.pkgname) && direct.get(r.pkgname)!.every((d) => state.get(d) === "succeeded"));
    for (const r of ready.slice(0, Math.max(0, Math.min(4, availableParallelism()) - running.size))) {
      state.set(r.pkgname, "building");
      const job = build({ location: r.location, pkgname: r.pkgname, multiVersion: r.multiVersion, depends: [...closure(r.pkgname)] }, pkgs)
        .then((result) => {
          logs.set(r.pkgname, result);
          state.set(r.pkgname, result.code === 0 ? "succeeded" : "failed");
          running.delete(r.pkgname);
        });
      running.set(r.pkgname, job);
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }

  const outcome = (s: string) => [...state].filter(([, v]) => v === s).map(([k]) => k).sort();
  assert.deepEqual(outcome("failed"), ["bison-3.8.2"], outcome("failed").map((n) => `${n}:\n${logs.get(n)!.stdout}${logs.get(n)!.stderr}`).join("\n"));
  assert.deepEqual(outcome("prefailed"), ["openjdk8-1.8.432"]);
  assert.deepEqual(outcome("indirect-failed"), ["apache-ant-1.10.15", "ruby33-3.3.6", "ruby33-rake-13.2.1"]);
  assert.deepEqual(outcome("cycle"), ["chicken-5.4.0", "egg-1.0"]);
  assert.deepEqual(outcome("blocked-by-cycle"), ["omelette-1.0"]);
  assert.equal(outcome("succeeded").length, all.length - 8);
  assert.equal(state.size, all.length);
  assert.deepEqual([...state.values()].filter((v) => v === "building"), []);
  for (const name of outcome("succeeded")) {
    assert.equal(logs.get(name)!.code, 0, `${name}: ${logs.get(name)!.stderr}`);
    assert.ok(existsSync(path.join(pkgs, `${name}.tgz`)), name);
  }

  // The failing build printed its log, then said why on one line of stderr.
  const bison = logs.get("bison-3.8.2")!;
  assert.match(bison.stdout, /checking for yywrap in -lfl\.\.\. no/);
  assert.match(bison.stderr, /cc-example: cannot find -lfl/);
  assert.match(bison.stderr, /^build-one: build\.sh of bison-3\.8\.2 failed \(exit status 1\)$/m);
  assert.equal(existsSync(path.join(pkgs, "bison-3.8.2.tgz")), false);

  // Each Python variant of six was built by, and for, its own Python.
  const six313 = path.join(pkgs, "py313-six-1.17.0.tgz");
  assert.match(await tarRead(six313, "lib/python3.13/site-packages/six.py"), /installed by setuptools 75\.6\.0 for Python 3\.13\.1/);
  assert.match(await tarRead(six313, "+BUILD_INFO"), /^MULTI_VERSION=PYTHON_VERSION_REQD=313$/m);
  assert.ok((await tarList(path.join(pkgs, "py312-six-1.17.0.tgz"))).includes("lib/python3.12/site-packages/six.py"));

  // The last package is made from what its dependencies' programs print.
  const worldPkg = path.join(pkgs, "example-world-1.0.tgz");
  const versions = await tarRead(worldPkg, "share/example-world/versions.txt");
  assert.match(versions, /^curl 8\.11\.1 \(example\) libcurl\/8\.11\.1 OpenSSL\/3\.4\.0 zlib\/1\.3\.1$/m);
  assert.match(versions, /^SCons 4\.8\.1 on Python 3\.13\.1 with six\/1\.17\.0 \(Python 3\.13\.1\)$/m);
  assert.match(versions, /^six\/1\.17\.0 \(Python 3\.12\.8\)$/m);
  assert.match(versions, /^3\.47\.2 \(zlib\/1\.3\.1\) with readline\/8\.2 \(ncurses\/6\.5\)$/m);
  const installed = (await tarRead(worldPkg, "share/example-world/packages.txt")).trim().split("\n");
  assert.deepEqual(installed, [...closure("example-world-1.0")].sort());
  assert.ok(byName.has("example-world-1.0"));
});
