// The agent's built-in pkgsrc scan on the real tree, with real bmake from the
// bootstrap kit, in namespace sandboxes whose /usr/pkg is a slot's prefix.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  addPkgLocation,
  enumerateLocations,
  readPlatform,
  scanLocations,
  unchangedSince,
  writeMkConf,
  type LocationScan,
  type PkgsrcHost,
} from "../../services/builder-agent/pkgsrc/scan.js";
import { resetPrefix, slotDirs } from "../../services/builder-agent/sandbox.js";
import { BOOTSTRAP_KIT, EXPECTED_DIR, pkgsrcTree, pkgsrcUnavailable } from "../support/pkgsrc.js";

const unavailable = pkgsrcUnavailable();

/** One record of a location's pbulk-index output, by key. */
function records(scan: LocationScan): Map<string, string>[] {
  const out: Map<string, string>[] = [];
  for (const line of scan.pbulkIndex.split("\n")) {
    if (line === "") continue;
    const eq = line.indexOf("=");
    const key = line.slice(0, eq);
    if (key === "PKGNAME") out.push(new Map());
    out.at(-1)!.set(key, line.slice(eq + 1));
  }
  return out;
}

const words = (s: string | undefined): string[] => (s ?? "").split(/\s+/).filter((w) => w !== "");

interface Expected { pkgname: string; location: string; allDepends: string[]; failReason: string; skipReason: string }
function expectedRecords(): Map<string, Expected> {
  const rows = readFileSync(join(EXPECTED_DIR, "closure-resolved.tsv"), "utf8").split("\n").slice(1).filter((l) => l !== "");
  const byLocation = new Map<string, Expected>();
  for (const row of rows) {
    const [pkgname, location, , allDepends, failReason, skipReason] = row.split("\t");
    byLocation.set(location!, { pkgname: pkgname!, location: location!, allDepends: words(allDepends), failReason: failReason ?? "", skipReason: skipReason ?? "" });
  }
  return byLocation;
}

describe("the built-in pkgsrc scan on the real tree", { skip: unavailable ?? false }, () => {
  let tree: string;
  let work: string;
  let host: PkgsrcHost;
  let prefix: string;

  before(async () => {
    tree = pkgsrcTree();
    work = mkdtempSync(join("/var/tmp", "pkgfarm-agent-scan-"));
    prefix = slotDirs(work, 0).prefix;
    await resetPrefix(prefix, BOOTSTRAP_KIT);
    mkdirSync("/usr/pkg", { recursive: true });
    host = { treeDir: tree, bmake: "/usr/pkg/bin/bmake", sandbox: "namespace", binds: [{ source: prefix, target: "/usr/pkg" }], timeoutMs: 120_000 };
  });
  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test("locations of the limited list scan to pbulk's records: PKGNAME, ALL_DEPENDS, fail and skip reasons, PKG_LOCATION added", async () => {
    const expected = expectedRecords();
    const locations = ["pkgtools/digest", "pkgtools/pbulk", "pkgtools/pkglint", "regress/barrier", "lang/nawk", "pkgtools/pkg_chk"];
    const scans = await scanLocations(host, locations);
    assert.deepEqual(scans.map((s) => s.location), locations);
    for (const scan of scans) {
      assert.equal(scan.error, "", `${scan.location}: ${scan.error}`);
      const [record, ...more] = records(scan);
      assert.equal(more.length, 0, `${scan.location} has one record`);
      const want = expected.get(scan.location)!;
      assert.equal(record!.get("PKGNAME"), want.pkgname, scan.location);
      assert.equal(record!.get("PKG_LOCATION"), scan.location);
      assert.deepEqual(words(record!.get("ALL_DEPENDS")), want.allDepends, `${scan.location} ALL_DEPENDS`);
      assert.equal(record!.get("PKG_FAIL_REASON"), want.failReason, `${scan.location} PKG_FAIL_REASON`);
      assert.equal(record!.get("PKG_SKIP_REASON"), want.skipReason, `${scan.location} PKG_SKIP_REASON`);
      // Every key pbulk-index prints is kept for the build.
      for (const key of ["USE_DESTDIR", "BOOTSTRAP_PKG", "USERGROUP_PHASE", "NO_BIN_ON_FTP", "RESTRICTED", "CATEGORIES", "MAINTAINER", "SCAN_DEPENDS"]) {
        assert.ok(record!.has(key), `${scan.location} keeps ${key}`);
      }
      assert.ok(scan.durationMs > 0);
    }
    console.log(`scan durations (ms): ${scans.map((s) => `${s.location} ${s.durationMs}`).join(", ")}`);
  });

  test("a MULTI_VERSION package gives one record per variant, the default first", async () => {
    const [scan] = await scanLocations(host, ["devel/py-setuptools"]);
    assert.equal(scan!.error, "");
    const recs = records(scan!);
    assert.deepEqual(recs.map((r) => r.get("PKGNAME")), ["py27-setuptools-0.6c11nb1", "py26-setuptools-0.6c11nb1"]);
    assert.deepEqual(recs.map((r) => r.get("MULTI_VERSION")?.trim()), ["PYTHON_VERSION_REQD=27", "PYTHON_VERSION_REQD=26"]);
    assert.deepEqual(recs.map((r) => r.get("PKG_LOCATION")), ["devel/py-setuptools", "devel/py-setuptools"]);
    assert.ok(words(recs[1]!.get("ALL_DEPENDS")).some((d) => d.startsWith("python26>=")));
  });

  test("an unknown location fails alone, with the tail of bmake's stderr; a malformed one never reaches bmake (two sandboxes at once)", async () => {
    // Two sandboxes at once, sharing the queue.
    const scans = await scanLocations({ ...host, concurrency: 2 }, ["nosuch/package", "pkgtools/digest", "../etc", "-x/y", "lang/nawk"]);
    assert.deepEqual(scans.map((s) => s.location), ["nosuch/package", "pkgtools/digest", "../etc", "-x/y", "lang/nawk"]);
    assert.match(scans[4]!.pbulkIndex, /^PKGNAME=nawk-20050424nb3\nPKG_LOCATION=lang\/nawk\n/);
    assert.match(scans[0]!.error, /exited with status 1: bmake: chdir .*nosuch\/package: No such file or directory/);
    assert.equal(scans[0]!.pbulkIndex, "");
    assert.equal(scans[1]!.error, "");
    assert.match(scans[2]!.error, /invalid location/);
    assert.match(scans[3]!.error, /invalid location/);
  });

  test("a sandbox that cannot be set up fails each location with the reason, and does not retry forever", async () => {
    const broken = { ...host, binds: [{ source: join(work, "no-such-prefix"), target: "/usr/pkg" }] };
    const scans = await scanLocations(broken, ["pkgtools/digest", "lang/nawk", "devel/nbpatch"]);
    for (const scan of scans) assert.match(scan.error, /did not finish: the sandbox exited with status 125: .*no-such-prefix/s, scan.location);
  });

  test("a location past its timeout is killed with its sandbox, and the scan goes on with the next in a new one", async () => {
    const quick = { ...host, timeoutMs: 100 };
    // py-setuptools evaluates its Makefile twice over (two variants): far
    // beyond 100 ms. ../pkgtools/digest may or may not make it in 100 ms on
    // a busy machine, so the test only asks that it was tried afresh.
    const scans = await scanLocations(quick, ["devel/py-setuptools", "nosuch/package"]);
    assert.match(scans[0]!.error, /^bmake pbulk-index timed out after 0\.1 s/);
    assert.ok(scans[0]!.durationMs >= 100 && scans[0]!.durationMs < 5000, `took ${scans[0]!.durationMs} ms`);
    assert.match(scans[1]!.error, /No such file or directory/, "the next location ran, in a new sandbox");
  });

  test("an aborted scan rejects with the signal's reason", async () => {
    const controller = new AbortController();
    const pending = scanLocations(host, ["devel/py-setuptools", "pkgtools/digest"], controller.signal, () => undefined);
    setImmediate(() => controller.abort(new Error("cancelled by test")));
    await assert.rejects(pending, /cancelled by test/);
  });

  test("enumeration lists what the Makefiles' SUBDIR lines list: the top level, then each category", async () => {
    const started = Date.now();
    const locations = await enumerateLocations(host);
    const took = Date.now() - started;
    // The oracle: the SUBDIR+= lines themselves, read from the files.
    const subdirs = (file: string): string[] =>
      readFileSync(file, "utf8").split("\n").map((l) => /^SUBDIR\+=\s*([^\s$#]+)/.exec(l)?.[1]).filter((x): x is string => x !== undefined);
    const expected = subdirs(join(tree, "Makefile")).flatMap((category) => subdirs(join(tree, category, "Makefile")).map((dir) => `${category}/${dir}`));
    assert.deepEqual([...locations].sort(), [...expected].sort());
    assert.equal(new Set(locations).size, locations.length, "no location twice");
    const all = execFileSync("find", [tree, "-mindepth", "3", "-maxdepth", "3", "-name", "Makefile", "-path", `${tree}/*/*/Makefile`], { encoding: "utf8", maxBuffer: 64 << 20 })
      .split("\n").filter((l) => l !== "").map((l) => l.slice(tree.length + 1, -"/Makefile".length));
    const inFind = new Set(all);
    assert.ok(locations.every((l) => inFind.has(l)), "every enumerated location has a Makefile");
    console.log(`enumeration: ${locations.length} locations in ${took} ms; find */*/Makefile: ${all.length} (the rest: regress/ and doc/, outside the top-level SUBDIR, and #SUBDIR+= lines in category Makefiles)`);
  });

  test("readPlatform names the platform as pkgsrc does, matching uname", async () => {
    const platform = await readPlatform(host);
    const uname = (flag: string): string => execFileSync("uname", [flag], { encoding: "utf8" }).trim();
    assert.equal(platform.opsys, uname("-s"));
    assert.equal(platform.machineArch, uname("-m"));
    assert.ok(uname("-r").startsWith(platform.osVersion) && platform.osVersion !== "", `${platform.osVersion} vs ${uname("-r")}`);
    assert.equal(platform.platform, `${platform.opsys}-${platform.osVersion}-${platform.machineArch}`);
  });

  test("an mk.conf of the host's own changes its scan (a PKG_FAIL_REASON), and unchangedSince sees the mk.conf change", async () => {
    const other = slotDirs(work, 1).prefix;
    await resetPrefix(other, BOOTSTRAP_KIT);
    const otherHost = { ...host, binds: [{ source: other, target: "/usr/pkg" }] };
    const before = Date.now();
    const [plain] = await scanLocations(host, ["pkgtools/digest"]);
    const [mine] = await scanLocations(otherHost, ["pkgtools/digest"]);
    assert.equal(records(mine!)[0]!.get("PKG_FAIL_REASON"), "", "a fresh kit fails nothing");
    const scanDepends = words(records(plain!)[0]!.get("SCAN_DEPENDS"));
    assert.ok(scanDepends.includes("/usr/pkg/etc/mk.conf"));
    const opts = { location: "pkgtools/digest", binds: otherHost.binds };
    assert.equal(await unchangedSince(scanDepends, tree, before, opts), true, "nothing changed since the scan");

    await writeMkConf(other, '.if defined(PKGPATH) && ${PKGPATH} == "pkgtools/digest"\nPKG_FAIL_REASON+= "digest is not for this group"\n.endif');
    // mk.conf is the sandbox's /usr/pkg/etc/mk.conf, found through the binds.
    assert.equal(await unchangedSince(scanDepends, tree, before, opts), false, "the mk.conf changed");
    assert.equal(await unchangedSince(scanDepends, tree, before, { ...opts, binds: host.binds }), true, "the other slot's mk.conf did not");
    // With the lines' own time, a reset prefix gets the same mk.conf time again.
    const linesTime = new Date(before - 3_600_000);
    const third = slotDirs(work, 2).prefix;
    const kitTime = await resetPrefix(third, BOOTSTRAP_KIT).then(() => statSync(join(third, "etc", "mk.conf")).mtimeMs);
    await writeMkConf(third, "# nothing", { mtime: linesTime });
    // File times are kept to the microsecond, so a millisecond time may come back a hair off.
    const stamped = statSync(join(third, "etc", "mk.conf")).mtimeMs;
    assert.ok(Math.abs(stamped - Math.max(kitTime, linesTime.getTime())) < 1, `mk.conf's time ${stamped} is the later of the kit's and the lines'`);
    assert.match(readFileSync(join(third, "etc", "mk.conf"), "utf8"), /USE_BUILTIN\.openssl=\tno[\s\S]*# nothing\n$/);
    const [failed] = await scanLocations(otherHost, ["pkgtools/digest"]);
    const [still] = await scanLocations(host, ["pkgtools/digest"]);
    assert.equal(records(failed!)[0]!.get("PKG_FAIL_REASON"), '"digest is not for this group"');
    assert.equal(records(still!)[0]!.get("PKG_FAIL_REASON"), "", "the first prefix is untouched");
    assert.deepEqual(readdirSync("/usr/pkg"), [], "the host's /usr/pkg is still an empty mount point");
  });
});

describe("scan pieces without bmake", () => {
  test("addPkgLocation adds PKG_LOCATION after each PKGNAME, replaces one the tree printed, drops a repeated PKGNAME", () => {
    const out = addPkgLocation("lang/py-x", "PKGNAME=a-1\nPKG_LOCATION=wrong/place\nALL_DEPENDS=\nMULTI_VERSION= V=1\nPKGNAME=b-1\nMULTI_VERSION= V=2\nPKGNAME=a-1\nMULTI_VERSION= V=3\n");
    assert.equal(out.problem, undefined);
    assert.equal(out.pbulkIndex, "PKGNAME=a-1\nPKG_LOCATION=lang/py-x\nALL_DEPENDS=\nMULTI_VERSION= V=1\nPKGNAME=b-1\nPKG_LOCATION=lang/py-x\nMULTI_VERSION= V=2\n");
    assert.match(addPkgLocation("a/b", "").problem!, /nothing/);
    assert.match(addPkgLocation("a/b", "===> warning\nPKGNAME=a-1\n").problem!, /not recognized/);
    assert.match(addPkgLocation("a/b", "PKGNAME=a b\n").problem!, /not recognized/);
  });

  test("unchangedSince: relative paths from the location, ../../ from the tree, absolute ones through the binds, a missing file is a change", async () => {
    const root = mkdtempSync(join("/var/tmp", "pkgfarm-unchanged-"));
    try {
      const treeDir = join(root, "tree");
      mkdirSync(join(treeDir, "cat", "pkg"), { recursive: true });
      mkdirSync(join(treeDir, "mk"), { recursive: true });
      mkdirSync(join(root, "prefix", "etc"), { recursive: true });
      const files = [join(treeDir, "cat", "pkg", "Makefile"), join(treeDir, "mk", "bsd.pkg.mk"), join(root, "prefix", "etc", "mk.conf")];
      const old = new Date(Date.now() - 60_000);
      for (const f of files) {
        writeFileSync(f, "");
        utimesSync(f, old, old);
      }
      const deps = ["Makefile", "../../mk/bsd.pkg.mk", "/usr/pkg/etc/mk.conf"];
      const opts = { location: "cat/pkg", binds: [{ source: join(root, "prefix"), target: "/usr/pkg" }] };
      const scannedAt = Date.now() - 30_000;
      assert.equal(await unchangedSince(deps, treeDir, scannedAt, opts), true);
      assert.equal(await unchangedSince([], treeDir, scannedAt, opts), true, "no SCAN_DEPENDS: reused, as pscan does");
      assert.equal(await unchangedSince([...deps, "../../mk/gone.mk"], treeDir, scannedAt, opts), false, "a missing file is a change");
      assert.equal(await unchangedSince(deps, treeDir, scannedAt, { location: "cat/pkg" }), false, "without the binds /usr/pkg/etc/mk.conf is the host's (absent)");
      for (const f of files) {
        utimesSync(f, old, old);
        const touched = new Date();
        utimesSync(f, touched, touched);
        assert.equal(await unchangedSince(deps, treeDir, scannedAt, opts), false, `${f} changed`);
        utimesSync(f, old, old);
      }
      assert.ok(statSync(files[0]!).mtimeMs < scannedAt);
      assert.deepEqual(readdirSync(join(root, "prefix", "etc")), ["mk.conf"]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
