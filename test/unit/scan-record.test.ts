import assert from "node:assert/strict";
import { test } from "node:test";
import { createScanRecordParser, formatScanRecord, type ScanRecord } from "../../services/depgraph/core/scan-record.js";
import type { InvalidScanRecord } from "../../services/depgraph/core/errors.js";

function parse(chunks: string[]): { records: ScanRecord[]; problems: InvalidScanRecord[] } {
  const records: ScanRecord[] = [];
  const problems: InvalidScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
  for (const c of chunks) parser.push(c);
  parser.end();
  return { records, problems };
}

const GMAKE = `PKGNAME=gmake-4.4.1
PKG_LOCATION=devel/gmake
ALL_DEPENDS=  cwrappers>=20150314:../../pkgtools/cwrappers   checkperms>=1.1:../../sysutils/checkperms
PKG_SKIP_REASON=
PKG_FAIL_REASON=
CATEGORIES=devel gnu
MAINTAINER=pkgsrc-users@NetBSD.org
SCAN_DEPENDS=../../mk/bsd.pkg.mk Makefile
`;

test("a pbulk-index record is read with its dependencies as pattern and location", () => {
  const { records, problems } = parse([GMAKE]);
  assert.deepEqual(problems, []);
  assert.equal(records.length, 1);
  const r = records[0]!;
  assert.equal(r.pkgname, "gmake-4.4.1");
  assert.equal(r.location, "devel/gmake");
  assert.deepEqual(r.dependencies, [
    { pattern: "cwrappers>=20150314", location: "pkgtools/cwrappers" },
    { pattern: "checkperms>=1.1", location: "sysutils/checkperms" },
  ]);
  assert.deepEqual(r.categories, ["devel", "gnu"]);
  assert.equal(r.pbulkWeight, 100);
  assert.equal(r.line, 1);
  assert.equal(r.resolvedByPbulk, undefined);
});

test("records split across chunks at any byte are read the same", () => {
  const text = GMAKE + GMAKE.replaceAll("gmake-4.4.1", "gmake-4.4.2").replace("devel/gmake", "devel/gmake4");
  for (const cut of [1, 7, 30, 100, text.length - 3]) {
    const { records, problems } = parse([text.slice(0, cut), text.slice(cut)]);
    assert.deepEqual(problems, []);
    assert.deepEqual(records.map((r) => r.pkgname), ["gmake-4.4.1", "gmake-4.4.2"], `cut at ${cut}`);
    assert.equal(records[1]!.line, 9);
  }
});

test("a malformed record is reported with its line and location, and the rest goes on", () => {
  const bad = `PKGNAME=broken-1.0
PKG_LOCATION=devel/broken
ALL_DEPENDS=gmake>=3.81:devel/gmake
`;
  const noLocation = "PKGNAME=lost-1.0\nCATEGORIES=misc\n";
  const garbage = "PKGNAME=junk-2.0\nPKG_LOCATION=misc/junk\nthis is not a key value line\n";
  const { records, problems } = parse([GMAKE + bad + noLocation + garbage + GMAKE.replaceAll("gmake-4.4.1", "gmake-5.0")]);
  assert.deepEqual(records.map((r) => r.pkgname), ["gmake-4.4.1", "gmake-5.0"]);
  assert.equal(problems.length, 3);
  assert.equal(problems[0]!.line, 9);
  assert.equal(problems[0]!.location, "devel/broken");
  assert.match(problems[0]!.message, /line 9 \(devel\/broken\): ALL_DEPENDS entry "gmake>=3.81:devel\/gmake"/);
  assert.equal(problems[1]!.line, 12);
  assert.match(problems[1]!.message, /no PKG_LOCATION/);
  assert.equal(problems[2]!.line, 14);
  assert.match(problems[2]!.message, /line 16: not a KEY=value line/);
});

test("fields before the first PKGNAME are reported, not attached to a record", () => {
  const { records, problems } = parse(["PKG_LOCATION=devel/x\n" + GMAKE]);
  assert.equal(records.length, 1);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!.message, /PKG_LOCATION= before any PKGNAME=/);
});

test("bad PKG_LOCATION, PKGNAME and PBULK_WEIGHT are refused", () => {
  const cases = [
    ["PKGNAME=x-1.0\nPKG_LOCATION=../../etc/passwd\n", /PKG_LOCATION/],
    ["PKGNAME=noversion\nPKG_LOCATION=misc/x\n", /not name-version/],
    ["PKGNAME=x-1.0\nPKG_LOCATION=misc/x\nPBULK_WEIGHT=heavy\n", /PBULK_WEIGHT/],
  ] as const;
  for (const [text, message] of cases) {
    const { records, problems } = parse([text]);
    assert.equal(records.length, 0);
    assert.match(problems[0]!.message, message);
  }
});

test("quoted fail reasons lose their outer quotes only; MULTI_VERSION and weight are kept", () => {
  const text = `PKGNAME=py313-six-1.17.0
PKG_LOCATION=lang/py-six
ALL_DEPENDS=
PKG_FAIL_REASON="could not resolve dependency "py311-stevedore>=1.20.0""
MULTI_VERSION= PYTHON_VERSION_REQD=313
PBULK_WEIGHT=250
DEPENDS=python313-3.13.1
`;
  const r = parse([text]).records[0]!;
  assert.equal(r.failReason, 'could not resolve dependency "py311-stevedore>=1.20.0"');
  assert.equal(r.multiVersion, "PYTHON_VERSION_REQD=313");
  assert.equal(r.pbulkWeight, 250);
  assert.deepEqual(r.resolvedByPbulk, ["python313-3.13.1"]);
  const again = parse([formatScanRecord(r)]).records[0]!;
  assert.deepEqual({ ...again, line: 0 }, { ...r, failReason: r.failReason, line: 0 });
});
