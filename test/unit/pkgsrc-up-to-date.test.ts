// pbulk's up-to-date decision on real packages (test/fixtures/pkgsrc) and
// copies of their directories from the real tree, checked against pbulk's
// own pkg-up-to-date script run with the bootstrap kit's pkg_info.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  checkUpToDate,
  createTreeFileReader,
  decideUpToDate,
  netbsdId,
  readBinaryPackage,
  type BinaryPackageMetadata,
  type UpToDateDecision,
} from "../../services/shared/pkgsrc/index.js";
import { pkgsrcTree, pkgsrcUnavailable } from "../support/pkgsrc.js";
import { spawnWithKit } from "../support/pkgsrc-sandbox.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const FIXTURES = path.join(ROOT, "test/fixtures/pkgsrc");
const skip = pkgsrcUnavailable();
const ROLLING_DEPS = ["nbpatch-20100124", "pkg_chk-2.0.6", "pkg_tarup-1.9.1"]; // pbulk-resolve's, expected/closure-resolved.tsv

let scratch: string;
let tree: string;
const metas = new Map<string, BinaryPackageMetadata>();

before(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), "pkgfarm-uptodate-"));
  for (const name of ["pkg_chk-2.0.6", "pkg_rolling-replace-0.24.1", "pkg_tarup-1.9.1"]) {
    metas.set(name, await readBinaryPackage(path.join(FIXTURES, `${name}.tgz`)));
  }
  if (skip === undefined) tree = pkgsrcTree();
});
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A tree holding copies of the given package directories of the real tree, to edit. */
function treeCopy(name: string, locations: readonly string[]): string {
  const dir = path.join(scratch, name, "tree");
  for (const loc of locations) cpSync(path.join(tree, loc), path.join(dir, loc), { recursive: true });
  return dir;
}

function decide(pkgname: string, treeRoot: string, dependencies: readonly string[], dependencyIsNewer?: (p: string) => boolean): UpToDateDecision {
  return decideUpToDate({
    binaryPackage: metas.get(pkgname),
    readTreeFile: createTreeFileReader(treeRoot),
    dependencies,
    ...(dependencyIsNewer === undefined ? {} : { dependencyIsNewer }),
  });
}

test("real packages are up to date against the tree they were built from, with pbulk's resolved dependencies", { skip }, () => {
  assert.deepEqual(decide("pkg_chk-2.0.6", tree, []), { upToDate: true, reason: "up to date" });
  assert.deepEqual(decide("pkg_rolling-replace-0.24.1", tree, ROLLING_DEPS), { upToDate: true, reason: "up to date" });
  assert.deepEqual(decide("pkg_rolling-replace-0.24.1", tree, [...ROLLING_DEPS].reverse()).upToDate, true, "order does not matter");
});

test("editing the $NetBSD$ line of a copy of the package's Makefile rebuilds it, naming the file and both ids", { skip }, () => {
  const copy = treeCopy("edit", ["pkgtools/pkg_chk"]);
  assert.equal(decide("pkg_chk-2.0.6", copy, []).upToDate, true, "the untouched copy is current");
  const makefile = path.join(copy, "pkgtools/pkg_chk/Makefile");
  const text = readFileSync(makefile, "latin1");
  const was = netbsdId(text)!;
  assert.match(was, /^\$NetBSD: Makefile,v 1\.81 /);
  const now = was.replace("v 1.81", "v 1.82");
  writeFileSync(makefile, text.replace(was, now), "latin1");
  const d = decide("pkg_chk-2.0.6", copy, []);
  assert.equal(d.upToDate, false);
  assert.equal(d.reason, `rebuilt: file pkgtools/pkg_chk/Makefile changed (was ${was}, now ${now})`);
  assert.deepEqual(!d.upToDate && d.cause, { kind: "file-changed", file: "pkgtools/pkg_chk/Makefile", recorded: was, current: now });

  // Touching every file without changing an id rebuilds nothing: dates play no part.
  writeFileSync(makefile, text, "latin1");
  utimesSync(makefile, new Date(), new Date(Date.now() + 3600_000));
  assert.equal(decide("pkg_chk-2.0.6", copy, []).upToDate, true);
});

test("a recorded file gone from the tree, a dependency that changed, went or came, and no package each rebuild with their reason", { skip }, () => {
  const copy = treeCopy("gone", ["pkgtools/pkg_chk", "pkgtools/pkg_rolling-replace"]);
  unlinkSync(path.join(copy, "pkgtools/pkg_chk/files/pkg_chk.8"));
  assert.equal(decide("pkg_chk-2.0.6", copy, []).reason, "rebuilt: file pkgtools/pkg_chk/files/pkg_chk.8 is no longer in the tree");

  const newer = ["nbpatch-20100124", "pkg_chk-2.0.7", "pkg_tarup-1.9.1"];
  assert.equal(decide("pkg_rolling-replace-0.24.1", copy, newer).reason, "rebuilt: dependency pkg_chk changed (was pkg_chk-2.0.6, now pkg_chk-2.0.7)");
  assert.equal(decide("pkg_rolling-replace-0.24.1", copy, ["pkg_chk-2.0.6", "pkg_tarup-1.9.1"]).reason, "rebuilt: dependency nbpatch-20100124 is no longer needed");
  assert.equal(decide("pkg_rolling-replace-0.24.1", copy, [...ROLLING_DEPS, "digest-20121220"]).reason, "rebuilt: new dependency digest-20121220");
  assert.equal(decide("pkg_rolling-replace-0.24.1", copy, ROLLING_DEPS, (dep) => dep === "pkg_tarup-1.9.1").reason, "rebuilt: dependency pkg_tarup-1.9.1 was rebuilt");
  assert.equal(decide("pkg_rolling-replace-0.24.1", copy, ROLLING_DEPS, () => false).upToDate, true);
  assert.equal(decideUpToDate({ binaryPackage: undefined, readTreeFile: () => "", dependencies: [] }).reason, "rebuilt: no binary package");
});

test("a recorded path outside the tree is never read and counts as gone", () => {
  const asked: string[] = [];
  const readTreeFile = (p: string) => {
    asked.push(p);
    return "# $NetBSD: x,v 1.1 $\n";
  };
  for (const file of ["/etc/passwd", "../outside/Makefile", "a/../../b"]) {
    const d = decideUpToDate({ binaryPackage: { contents: "@name x-1\n", buildVersion: `${file}:\t$NetBSD: x,v 1.1 $\n` }, readTreeFile, dependencies: [] });
    assert.equal(d.reason, `rebuilt: file ${file} is no longer in the tree`);
  }
  assert.deepEqual(asked, []);
  // A package built from another's files records them through its own directory, as rdigest does digest's.
  const shared = decideUpToDate({ binaryPackage: { contents: "@name x-1\n", buildVersion: "pkgtools/rdigest/../../pkgtools/digest/files/PLIST:\t$NetBSD: x,v 1.1 $\n" }, readTreeFile, dependencies: [] });
  assert.equal(shared.reason, "up to date");
  assert.deepEqual(asked, ["pkgtools/digest/files/PLIST"]);
  const root = mkdtempSync(path.join(scratch, "reader-"));
  writeFileSync(path.join(scratch, "secret"), "$NetBSD$");
  assert.equal(createTreeFileReader(root)("../secret"), undefined, "the reader refuses to climb out too");
});

test("netbsdId takes the id pkg-up-to-date's sed takes, on tricky lines", () => {
  const cases = [
    "# $NetBSD: Makefile,v 1.81 2012/09/01 17:52:09 abs Exp $\nPKGNAME=x\n",
    "no id here\n",
    "first\n# $NetBSD$\n# $NetBSD: later,v 1.2 $\n",
    "# $NetBSD: a,v 1 $ and $NetBSD: b,v 2 $\n",
    "$NetBSD$NetBSD: x $\n",
    "# $NetBSD: unclosed\n# $NetBSD: closed $\n",
    "$NetBSD: no newline at end $",
  ];
  for (const text of cases) {
    const file = path.join(scratch, "sed-case");
    writeFileSync(file, text);
    const sed = execFileSync("sed", ["-e", "/[$]NetBSD/!d", "-e", "s/^.*\\([$]NetBSD[^$]*[$]\\).*$/\\1/;q", file], { encoding: "utf8" });
    assert.equal(netbsdId(text), sed === "" ? undefined : sed.replace(/\n$/, ""), JSON.stringify(text));
  }
});

test("the decision agrees with pbulk's own pkg-up-to-date run with the kit's pkg_info", { skip }, () => {
  // Each scenario: its own tree copy, packages dir and pbulk.conf, all run in
  // one sandbox. "added" is where we differ on purpose: pbulk only checks
  // that the recorded dependencies are still wanted.
  const script = readFileSync(path.join(tree, "pkgtools/pbulk/files/pbulk/scripts/pkg-up-to-date"), "utf8");
  type Scenario = { name: string; pkgname: string; deps: string[]; edit?: (treeDir: string, allDir: string) => void; ageCheck?: boolean; pbulkDiffers?: boolean };
  const scenarios: Scenario[] = [
    { name: "unchanged", pkgname: "pkg_chk-2.0.6", deps: [] },
    { name: "unchanged-deps", pkgname: "pkg_rolling-replace-0.24.1", deps: ROLLING_DEPS },
    {
      name: "makefile-id",
      pkgname: "pkg_chk-2.0.6",
      deps: [],
      edit: (t) => {
        const f = path.join(t, "pkgtools/pkg_chk/Makefile");
        writeFileSync(f, readFileSync(f, "latin1").replace("Makefile,v 1.81", "Makefile,v 1.82"), "latin1");
      },
    },
    { name: "plist-gone", pkgname: "pkg_chk-2.0.6", deps: [], edit: (t) => unlinkSync(path.join(t, "pkgtools/pkg_chk/PLIST")) },
    { name: "dep-changed", pkgname: "pkg_rolling-replace-0.24.1", deps: ["nbpatch-20100124", "pkg_chk-2.0.7", "pkg_tarup-1.9.1"] },
    { name: "dep-removed", pkgname: "pkg_rolling-replace-0.24.1", deps: ["pkg_chk-2.0.6", "pkg_tarup-1.9.1"] },
    { name: "dep-added", pkgname: "pkg_rolling-replace-0.24.1", deps: [...ROLLING_DEPS, "digest-20121220"], pbulkDiffers: true },
    { name: "no-package", pkgname: "pkg_chk-2.0.6", deps: [], edit: (_t, all) => unlinkSync(path.join(all, "pkg_chk-2.0.6.tgz")) },
    {
      name: "dep-newer",
      pkgname: "pkg_rolling-replace-0.24.1",
      deps: ROLLING_DEPS,
      ageCheck: true,
      edit: (_t, all) => {
        const later = new Date(statSync(path.join(all, "pkg_rolling-replace-0.24.1.tgz")).mtimeMs + 60_000);
        utimesSync(path.join(all, "pkg_tarup-1.9.1.tgz"), later, later);
      },
    },
    { name: "dep-older", pkgname: "pkg_rolling-replace-0.24.1", deps: ROLLING_DEPS, ageCheck: true },
  ];
  const lines: string[] = [];
  const ours = new Map<string, UpToDateDecision>();
  for (const s of scenarios) {
    const dir = path.join(scratch, `pbulk-${s.name}`);
    const treeDir = path.join(dir, "tree");
    const allDir = path.join(dir, "packages", "All");
    for (const loc of ["pkgtools/pkg_chk", "pkgtools/pkg_rolling-replace"]) cpSync(path.join(tree, loc), path.join(treeDir, loc), { recursive: true });
    mkdirSync(allDir, { recursive: true });
    const base = Date.now() - 3600_000;
    for (const [i, name] of ["nbpatch-20100124", "pkg_tarup-1.9.1", "pkg_chk-2.0.6", "pkg_rolling-replace-0.24.1"].entries()) {
      const file = path.join(allDir, `${name}.tgz`);
      if (name === "nbpatch-20100124") writeFileSync(file, "");
      else copyFileSync(path.join(FIXTURES, `${name}.tgz`), file);
      utimesSync(file, new Date(base + i * 1000), new Date(base + i * 1000)); // dependencies older, as built
    }
    s.edit?.(treeDir, allDir);
    writeFileSync(path.join(dir, "pbulk.conf"), [
      "config_version=0.51",
      `packages=${path.join(dir, "packages")}`,
      `pkgsrc=${treeDir}`,
      "pkg_info=/usr/pkg/sbin/pkg_info",
      `skip_age_check=${s.ageCheck === true ? "no" : "yes"}`,
      "",
    ].join("\n"));
    writeFileSync(path.join(dir, "pkg-up-to-date"), script.replaceAll("@PBULK_CONFIG@", path.join(dir, "pbulk.conf")).replaceAll("@PBULK_CONFIG_VERSION@", "0.51").replaceAll("@SED@", "sed").replace("#!@SH@", "#!/bin/sh"));
    lines.push(`if sh '${dir}/pkg-up-to-date' ${[s.pkgname, ...s.deps].join(" ")} >/dev/null 2>&1; then echo '${s.name} 0'; else echo '${s.name} 1'; fi`);

    const exists = (name: string) => {
      try {
        return statSync(path.join(allDir, `${name}.tgz`));
      } catch {
        return undefined;
      }
    };
    const own = exists(s.pkgname);
    ours.set(s.name, decideUpToDate({
      binaryPackage: own === undefined ? undefined : metas.get(s.pkgname),
      readTreeFile: createTreeFileReader(treeDir),
      dependencies: s.deps,
      ...(s.ageCheck === true ? { dependencyIsNewer: (dep: string) => (exists(dep)?.mtimeMs ?? Infinity) >= own!.mtimeMs } : {}),
    }));
  }
  writeFileSync(path.join(scratch, "driver.sh"), lines.join("\n") + "\n");
  const run = spawnWithKit(["/bin/sh", path.join(scratch, "driver.sh")]);
  assert.equal(run.status, 0, run.stderr);
  const pbulk = new Map(run.stdout.trim().split("\n").map((l) => l.split(" ") as [string, string]));
  assert.equal(pbulk.size, scenarios.length, run.stdout);
  for (const s of scenarios) {
    const pbulkCurrent = pbulk.get(s.name) === "0";
    const d = ours.get(s.name)!;
    if (s.pbulkDiffers === true) {
      assert.equal(pbulkCurrent, true, `${s.name}: pbulk keeps it`);
      assert.equal(d.upToDate, false, `${s.name}: we rebuild (${d.reason})`);
    } else {
      assert.equal(d.upToDate, pbulkCurrent, `${s.name}: ours says ${d.reason}, pbulk's script says ${pbulkCurrent ? "up to date" : "rebuild"}`);
    }
  }
  assert.equal(ours.get("unchanged")!.upToDate, true, "the scenarios cover both answers");
  assert.equal(ours.get("dep-newer")!.reason, "rebuilt: dependency pkg_tarup-1.9.1 was rebuilt");
});

test("checkUpToDate reads the package from PACKAGES/All and decides against the tree", { skip }, async () => {
  const packagesDir = path.join(scratch, "check", "packages");
  const all = path.join(packagesDir, "All");
  mkdirSync(all, { recursive: true });
  const base = Date.now() - 3600_000;
  for (const [i, name] of ["pkg_chk-2.0.6", "pkg_tarup-1.9.1", "pkg_rolling-replace-0.24.1"].entries()) {
    copyFileSync(path.join(FIXTURES, `${name}.tgz`), path.join(all, `${name}.tgz`));
    utimesSync(path.join(all, `${name}.tgz`), new Date(base + i * 1000), new Date(base + i * 1000));
  }
  const check = (pkgname: string, dependencies: readonly string[], ageCheck = false) => checkUpToDate({ packagesDir, pkgname, tree, dependencies, ageCheck });
  assert.equal((await check("pkg_rolling-replace-0.24.1", ROLLING_DEPS)).reason, "up to date");
  assert.equal((await check("pkg_chk-2.0.7", [])).reason, "rebuilt: no binary package");
  // nbpatch's package is not in All/: pbulk's `-ot` is false for a missing file.
  assert.equal((await check("pkg_rolling-replace-0.24.1", ROLLING_DEPS, true)).reason, "rebuilt: dependency nbpatch-20100124 was rebuilt");
  writeFileSync(path.join(all, "nbpatch-20100124.tgz"), "");
  utimesSync(path.join(all, "nbpatch-20100124.tgz"), new Date(base - 1000), new Date(base - 1000));
  assert.equal((await check("pkg_rolling-replace-0.24.1", ROLLING_DEPS, true)).reason, "up to date");
});
