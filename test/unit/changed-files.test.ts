import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import {
  buildScanDependsIndex,
  LiveScanDependsIndex,
  locationsToRescan,
  type ScanDependsIndex,
} from "../../services/depgraph/core/changed-files.js";

const TREE = "/build/pkgsrc";
const HOST_FILES = `${"/etc/mk.conf"} /usr/share/mk/sys.mk`;

// A small tree in the shape real SCAN_DEPENDS have: bl3 files relative to the
// package directory, the package's own files, absolute paths through the scanning
// host's tree, and host files outside it.
const PACKAGES = [
  {
    location: "devel/zlib",
    scanDepends: `../../mk/bsd.pkg.mk ../../mk/bsd.prefs.mk ${TREE}/devel/zlib/../../mk/defaults/mk.conf ${HOST_FILES} Makefile`,
  },
  {
    location: "graphics/png",
    scanDepends: `../../mk/bsd.pkg.mk ../../devel/zlib/buildlink3.mk ../../devel/zlib/builtin.mk ${TREE}/graphics/png/../../mk/defaults/mk.conf ${HOST_FILES} Makefile options.mk`,
  },
  {
    location: "www/curl",
    scanDepends: `../../mk/bsd.pkg.mk  ../../devel/zlib/buildlink3.mk ../../graphics/png/../../devel/zlib/buildlink3.mk ../../www/curl/Makefile.common ${HOST_FILES} Makefile`,
  },
  // MULTI_VERSION: two records, one location, and a sibling's Makefile.common.
  { location: "lang/py-six", scanDepends: "../../mk/bsd.pkg.mk ../py-setuptools/Makefile.common Makefile" },
  { location: "lang/py-six", scanDepends: "../../mk/bsd.pkg.mk ../py-setuptools/Makefile.common Makefile" },
  { location: "misc/empty", scanDepends: "" },
];
const KNOWN = new Set(PACKAGES.map((p) => p.location));
const index = buildScanDependsIndex(PACKAGES);

function rescan(files: string[], idx: ScanDependsIndex = index): ReturnType<typeof locationsToRescan> {
  return locationsToRescan(files, KNOWN, idx);
}

test("a bl3 file maps to every package that includes it, and to its own package", () => {
  assert.deepEqual(index.locationsNeeding("devel/zlib/buildlink3.mk"), ["graphics/png", "www/curl"]);
  assert.deepEqual(rescan(["devel/zlib/buildlink3.mk"]), {
    locations: ["devel/zlib", "graphics/png", "www/curl"],
    ignored: [],
  });
});

test("a file of one package directory maps to that location only", () => {
  assert.deepEqual(rescan(["graphics/png/distinfo", "graphics/png/patches/patch-aa"]), {
    locations: ["graphics/png"],
    ignored: [],
  });
  assert.deepEqual(rescan(["devel/zlib/Makefile"]), { locations: ["devel/zlib"], ignored: [] });
});

test("infrastructure files map to every package that includes them, deduplicated", () => {
  assert.deepEqual(rescan(["mk/bsd.pkg.mk"]).locations, ["devel/zlib", "graphics/png", "lang/py-six", "www/curl"]);
  assert.deepEqual(index.locationsNeeding("mk/bsd.pkg.mk").filter((l) => l === "lang/py-six").length, 1);
});

test("absolute paths through the scanning host's tree are tree files; host files are not", () => {
  assert.deepEqual(index.locationsNeeding("mk/defaults/mk.conf"), ["devel/zlib", "graphics/png"]);
  assert.deepEqual(index.locationsNeeding("etc/mk.conf"), []);
  assert.deepEqual(index.locationsNeeding("/etc/mk.conf"), []);
});

test("relative entries resolve against the package directory", () => {
  assert.deepEqual(index.locationsNeeding("lang/py-setuptools/Makefile.common"), ["lang/py-six"]);
  assert.deepEqual(index.locationsNeeding("graphics/png/options.mk"), ["graphics/png"]);
  assert.deepEqual(index.locationsNeeding("www/curl/Makefile.common"), ["www/curl"]);
  // "../../graphics/png/../../devel/zlib/buildlink3.mk" is zlib's bl3, once.
  assert.deepEqual(index.locationsNeeding("./devel//zlib/buildlink3.mk"), ["graphics/png", "www/curl"]);
});

test("files that affect nothing are reported as ignored", () => {
  assert.deepEqual(
    rescan(["doc/CHANGES-2025", "devel/Makefile", "devel/newpkg/Makefile", "doc/CHANGES-2025", "README", "../x"]),
    {
      locations: [],
      ignored: ["../x", "README", "devel/Makefile", "devel/newpkg/Makefile", "doc/CHANGES-2025"],
    },
  );
  assert.deepEqual(rescan([]), { locations: [], ignored: [] });
});

test("results are sorted and unique across many changed files", () => {
  const r = rescan(["www/curl/Makefile", "devel/zlib/builtin.mk", "devel/zlib/buildlink3.mk", "graphics/png/PLIST"]);
  assert.deepEqual(r.locations, ["devel/zlib", "graphics/png", "www/curl"]);
});

// --- the real scan of pkgsrc-current -----------------------------------------

const PRESOLVE = new URL("../../../../shared/data/pkgsrc/presolve.txt.gz", import.meta.url);

/** Reads PKG_LOCATION and SCAN_DEPENDS of each record; a record starts at a PKGNAME= line. */
function readPresolve(): Array<{ location: string; scanDepends: string }> {
  const text = gunzipSync(readFileSync(PRESOLVE)).toString("utf8");
  const records: Array<{ location: string; scanDepends: string }> = [];
  let current: { location: string; scanDepends: string } | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("PKGNAME=")) {
      current = { location: "", scanDepends: "" };
      records.push(current);
    } else if (current !== undefined) {
      if (line.startsWith("PKG_LOCATION=")) current.location = line.slice("PKG_LOCATION=".length);
      else if (line.startsWith("SCAN_DEPENDS=")) current.scanDepends = line.slice("SCAN_DEPENDS=".length);
    }
  }
  return records;
}

test("real presolve: devel/zlib/buildlink3.mk and the time to index 29,022 records", (t) => {
  const records = readPresolve();
  assert.equal(records.length, 29_022);
  const known = new Set(records.map((r) => r.location));

  const start = performance.now();
  const real = buildScanDependsIndex(records);
  const buildMs = performance.now() - start;

  const q0 = performance.now();
  const zlib = real.locationsNeeding("devel/zlib/buildlink3.mk");
  const queryMs = performance.now() - q0;
  t.diagnostic(`indexed ${records.length} records (${known.size} locations) in ${buildMs.toFixed(0)} ms`);
  t.diagnostic(`devel/zlib/buildlink3.mk is included by ${zlib.length} locations (first query ${queryMs.toFixed(1)} ms)`);

  assert.ok(zlib.length > 1000, `${zlib.length} locations`);
  // Checked by hand against the SCAN_DEPENDS lines of the file.
  for (const l of ["graphics/png", "www/curl", "x11/XaoS", "lang/python313", "www/firefox", "net/wget", "devel/git-base"]) {
    assert.ok(zlib.includes(l), l);
  }
  assert.deepEqual([...zlib].sort(), zlib);
  assert.equal(new Set(zlib).size, zlib.length);

  // Every package was scanned through the host's absolute path to mk/defaults/mk.conf.
  assert.equal(real.locationsNeeding("mk/defaults/mk.conf").length, known.size);
  assert.equal(real.locationsNeeding("mk/bsd.pkg.mk").length, known.size);

  const r = locationsToRescan(["devel/zlib/buildlink3.mk", "doc/CHANGES-2025"], known, real);
  assert.equal(r.locations.length, zlib.length + 1, "the includers and devel/zlib itself");
  assert.ok(r.locations.includes("devel/zlib"));
  assert.deepEqual(r.ignored, ["doc/CHANGES-2025"]);
});

test("the live index follows rescans without indexing the tree again", () => {
  let tree = [
    { location: "graphics/png", scanDepends: "../../devel/zlib/buildlink3.mk ../../mk/bsd.pkg.mk" },
    { location: "www/curl", scanDepends: "../../devel/zlib/buildlink3.mk" },
  ];
  let fullBuilds = 0;
  const index = new LiveScanDependsIndex(() => {
    fullBuilds++;
    return tree;
  });
  assert.deepEqual(index.locationsNeeding("devel/zlib/buildlink3.mk"), ["graphics/png", "www/curl"]);
  // curl stops including zlib's file and starts including openssl's; gd is new.
  tree = [tree[0]!, { location: "www/curl", scanDepends: "../../security/openssl/buildlink3.mk" }];
  index.update(new Map([
    ["www/curl", [{ location: "www/curl", scanDepends: "../../security/openssl/buildlink3.mk" }]],
    ["graphics/gd", [{ location: "graphics/gd", scanDepends: "../../devel/zlib/buildlink3.mk Makefile" }]],
  ]));
  assert.deepEqual(index.locationsNeeding("devel/zlib/buildlink3.mk"), ["graphics/gd", "graphics/png"]);
  assert.deepEqual(index.locationsNeeding("security/openssl/buildlink3.mk"), ["www/curl"]);
  assert.deepEqual(index.locationsNeeding("graphics/gd/Makefile"), ["graphics/gd"]);
  // Removed: a location with no records left.
  index.update(new Map([["graphics/png", []]]));
  assert.deepEqual(index.locationsNeeding("mk/bsd.pkg.mk"), []);
  assert.equal(fullBuilds, 1);
});

test("a warmed live index answers without indexing the tree again, and a big change makes it cold", () => {
  let fullBuilds = 0;
  const tree = Array.from({ length: 2_500 }, (_, i) => ({ location: `misc/p${i}`, scanDepends: "../../devel/zlib/buildlink3.mk" }));
  const index = new LiveScanDependsIndex(() => {
    fullBuilds++;
    return tree;
  });
  assert.equal(index.cold, true);
  index.warm();
  index.warm();
  assert.equal(index.cold, false);
  assert.equal(index.locationsNeeding("devel/zlib/buildlink3.mk").length, 2_500);
  assert.equal(fullBuilds, 1);
  // Past the overlay's limit the full index is dropped, to be built again.
  index.update(new Map(tree.map((p) => [p.location, [p]])));
  assert.equal(index.cold, true);
  assert.equal(index.locationsNeeding("devel/zlib/buildlink3.mk").length, 2_500);
  assert.equal(fullBuilds, 2);
});
