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
  assert.match(problems[0]!.message, /PKG_LOCATION= \(line 1\) comes before any PKGNAME= line/);
  assert.equal(problems[0]!.location, "devel/x");
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

// A record as pbulk's scan prints it: every key pbulk-index.mk prints, in its order.
function full(pkgname: string, location: string, extra = ""): string {
  return `PKGNAME=${pkgname}
PKG_LOCATION=${location}
ALL_DEPENDS=
PKG_SKIP_REASON=
PKG_FAIL_REASON=
NO_BIN_ON_FTP=
RESTRICTED=
CATEGORIES=devel
MAINTAINER=pkgsrc-users@NetBSD.org
USE_DESTDIR=user-destdir
BOOTSTRAP_PKG=
USERGROUP_PHASE=
SCAN_DEPENDS=../../mk/bsd.pkg.mk
${extra}`;
}

test("every key the scan prints that pkgfarm does not model is kept in vars, and printed back", () => {
  const { records, problems } = parse([full("a-1.0", "devel/a", "PKGREVISION=3\nRESTRICTED_X= odd value \n")]);
  assert.deepEqual(problems, []);
  const r = records[0]!;
  assert.deepEqual(r.vars, {
    NO_BIN_ON_FTP: "", RESTRICTED: "", USE_DESTDIR: "user-destdir", BOOTSTRAP_PKG: "", USERGROUP_PHASE: "", PKGREVISION: "3", RESTRICTED_X: " odd value ",
  });
  assert.ok(Object.isFrozen(r.vars));
  const again = parse([formatScanRecord(r)]).records[0]!;
  assert.deepEqual(again.vars, r.vars);
  assert.deepEqual({ ...again, line: 0 }, { ...r, line: 0 });
});

test("records with the same vars share one object", () => {
  const { records } = parse([full("a-1.0", "devel/a") + full("b-1.0", "devel/b") + full("c-1.0", "devel/c", "BOOTSTRAP_PKG=yes\n")]);
  assert.equal(records.length, 2, "c repeats BOOTSTRAP_PKG and is refused");
  assert.equal(records[0]!.vars, records[1]!.vars);
});

test("a key given twice in one record refuses the record, with both lines", () => {
  const text = full("a-1.0", "devel/a", "ALL_DEPENDS=gmake>=4:../../devel/gmake\n") + full("b-1.0", "devel/b");
  const { records, problems } = parse([text]);
  assert.deepEqual(records.map((r) => r.pkgname), ["b-1.0"]);
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.line, 1);
  assert.equal(problems[0]!.location, "devel/a");
  assert.equal(problems[0]!.pkgname, "a-1.0");
  assert.match(problems[0]!.message, /ALL_DEPENDS= is given twice in one record \(lines 3 and 14\)/);
});

test("a record whose PKGNAME= line is missing is reported with its location, and the record before it is kept whole", () => {
  const second = full("b-1.0", "devel/b").split("\n").slice(1).join("\n").replace("ALL_DEPENDS=", "ALL_DEPENDS=x-[0-9]*:../../devel/x");
  const { records, problems } = parse([full("a-1.0", "devel/a") + second + full("c-1.0", "devel/c")]);
  assert.deepEqual(records.map((r) => r.pkgname), ["a-1.0", "c-1.0"]);
  assert.deepEqual(records[0]!.dependencies, [], "a did not take b's ALL_DEPENDS");
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.line, 14);
  assert.equal(problems[0]!.location, "devel/b");
  assert.match(problems[0]!.message, /PKG_LOCATION= \(line 14\) follows the PKG_LOCATION= of a-1.0 \(line 2\) with no PKGNAME= line between/);
  assert.match(problems[0]!.message, /lines 14-25 skipped/);
});

test("two records in a row without PKGNAME= are reported one by one", () => {
  const headless = (name: string, loc: string) => full(name, loc).split("\n").slice(1).join("\n");
  const { records, problems } = parse([full("a-1.0", "devel/a") + headless("b-1.0", "devel/b") + headless("c-1.0", "devel/c")]);
  assert.deepEqual(records.map((r) => r.pkgname), ["a-1.0"]);
  assert.deepEqual(problems.map((p) => [p.line, p.location]), [[14, "devel/b"], [26, "devel/c"]]);
});

test("lines before the first PKGNAME= are one problem, not one per line", () => {
  const { records, problems } = parse(["PKG_LOCATION=devel/x\nALL_DEPENDS=\nCATEGORIES=devel\n" + full("a-1.0", "devel/a")]);
  assert.equal(records.length, 1);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!.message, /lines 1-3 skipped/);
});

test("an input that ends in the middle of a line refuses its last record", () => {
  const text = full("a-1.0", "devel/a") + full("b-1.0", "devel/b");
  const cut = text.slice(0, text.length - 5); // inside SCAN_DEPENDS=
  const { records, problems } = parse([cut]);
  assert.deepEqual(records.map((r) => r.pkgname), ["a-1.0"]);
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.location, "devel/b");
  assert.match(problems[0]!.message, /ends in the middle of line 26/);
  assert.equal(problems[0]!.cutOff, true);
  assert.equal(parse([text + "PKGNAME=c-1.0\nPKG_LOCATION=devel/c\nALL_DEPENDS=x\n" + text.split("\n").slice(3).join("\n")]).problems.every((p) => !p.cutOff), true, "a problem in the middle is no cut");
});

test("an input cut at a line end refuses a last record that lacks keys every earlier record has", () => {
  const text = full("a-1.0", "devel/a") + full("b-1.0", "devel/b");
  const lines = text.split("\n");
  for (const keep of [14, 15, 20]) {
    const cut = lines.slice(0, keep).join("\n") + "\n";
    const { records, problems } = parse([cut]);
    assert.deepEqual(records.map((r) => r.pkgname), ["a-1.0"], `cut after line ${keep}`);
    assert.equal(problems.length, 1);
    assert.equal(problems[0]!.pkgname, "b-1.0");
    assert.match(problems[0]!.message, /the input ends inside this record, which has no .*SCAN_DEPENDS= line although every record before it has: the input was cut off/);
    assert.equal(problems[0]!.cutOff, true);
  }
  // One record alone has nothing to compare with, and a whole last record is fine.
  assert.equal(parse([lines.slice(0, 2).join("\n") + "\n"]).records.length, 1);
  assert.equal(parse([text]).records.length, 2);
});

test("a last record that lacks PKG_LOCATION is reported as cut off", () => {
  const { records, problems } = parse([full("a-1.0", "devel/a") + "PKGNAME=b-1.0\n"]);
  assert.equal(records.length, 1);
  assert.equal(problems[0]!.line, 14);
  assert.match(problems[0]!.message, /PKG_LOCATION=, ALL_DEPENDS=.* although every record before it has/);
});

test("an over-long line is reported on its record and never buffered whole", () => {
  const long = "x".repeat(5000);
  const text = full("a-1.0", "devel/a", `SCAN_DEPENDS_EXTRA=${long}\n`) + full("b-1.0", "devel/b");
  for (const chunks of [[text], text.match(/[\s\S]{1,700}/g)!]) {
    const records: ScanRecord[] = [];
    const problems: InvalidScanRecord[] = [];
    const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p), { maxLineBytes: 1000 });
    for (const c of chunks) parser.push(c);
    parser.end();
    assert.deepEqual(records.map((r) => r.pkgname), ["b-1.0"]);
    assert.equal(problems.length, 1);
    assert.equal(problems[0]!.location, "devel/a");
    assert.match(problems[0]!.message, /line 14: the SCAN_DEPENDS_EXTRA= line is 5019 bytes long, over the limit of 1000/);
  }
  // An over-long PKGNAME= line spoils the record it starts, not the one before.
  const problems: InvalidScanRecord[] = [];
  const records: ScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p), { maxLineBytes: 1000 });
  parser.push(full("a-1.0", "devel/a") + `PKGNAME=${long}\n` + full("b-1.0", "devel/b").split("\n").slice(1).join("\n") + full("c-1.0", "devel/c"));
  parser.end();
  assert.deepEqual(records.map((r) => r.pkgname), ["a-1.0", "c-1.0"]);
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.location, "devel/b");
  assert.match(problems[0]!.message, /the PKGNAME= line is 5008 bytes long/);
});

test("an over-long line at the end of the input, with no newline, is reported", () => {
  const problems: InvalidScanRecord[] = [];
  const parser = createScanRecordParser(() => assert.fail("no record"), (p) => problems.push(p), { maxLineBytes: 100 });
  parser.push(`PKGNAME=a-1.0\nPKG_LOCATION=devel/a\nSCAN_DEPENDS=${"y".repeat(300)}`);
  parser.end();
  assert.equal(problems.length, 1);
  assert.match(problems[0]!.message, /the input ends in the middle of line 3 \(no newline after it\): the record was cut off/);
});

test("problems quote input cut short and with control bytes escaped", () => {
  const { problems } = parse([`PKGNAME=a-1.0\nPKG_LOCATION=devel/a\nALL_DEPENDS=${"\u001b[2J".repeat(10000)}\n`]);
  assert.equal(problems.length, 1);
  assert.ok(problems[0]!.message.length < 1000, `message of ${problems[0]!.message.length} characters`);
  assert.ok(!problems[0]!.message.includes("\u001b"), "no raw ESC");
  assert.match(problems[0]!.message, /\\u001b\[2J/);
  const long = parse([`PKGNAME=a-1.0\nPKG_LOCATION=${"d".repeat(100_000)}/x\n`]).problems[0]!;
  assert.ok(long.message.length < 1200 && long.location.length <= 200, `message ${long.message.length}, location ${long.location.length}`);
});
