// The binary-package reader and pkg_info -X entries, on real packages built
// with this tree and the bootstrap kit (test/fixtures/pkgsrc, made by
// build-fixtures.sh), checked against tar(1) and the kit's own pkg_info.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import {
  formatSummaryEntry,
  InvalidBinaryPackage,
  InvalidSummary,
  parseBinaryPackage,
  parseBuildInfo,
  parseBuildVersion,
  parsePackingList,
  parseSummary,
  readBinaryPackage,
} from "../../services/shared/pkgsrc/index.js";
import { EXPECTED_DIR, pkgsrcUnavailable } from "../support/pkgsrc.js";
import { runWithKit } from "../support/pkgsrc-sandbox.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const FIXTURES = path.join(ROOT, "test/fixtures/pkgsrc");
const PACKAGES = ["pkg_chk-2.0.6.tgz", "pkg_rolling-replace-0.24.1.tgz", "pkg_tarup-1.9.1.tgz", "sysexits-1.1.tgz"];
const fixture = (name: string) => path.join(FIXTURES, name);
const skipKit = pkgsrcUnavailable();

const scratch = mkdtempSync(path.join(tmpdir(), "pkgfarm-binpkg-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

test("every leading metadata member of a real package reads as tar(1) extracts it, and the payload is left out", async () => {
  for (const name of PACKAGES) {
    const meta = await readBinaryPackage(fixture(name));
    const members = execFileSync("tar", ["-tzf", fixture(name)], { encoding: "utf8" }).split("\n").filter((m) => m !== "");
    const leading = members.slice(0, members.findIndex((m) => !m.startsWith("+")));
    assert.deepEqual([...meta.files.keys()], leading, name);
    for (const member of leading) {
      assert.equal(meta.files.get(member), execFileSync("tar", ["-xzOf", fixture(name), member], { encoding: "utf8" }), `${name} ${member}`);
    }
    assert.equal(parsePackingList(meta.contents).pkgname, name.replace(/\.tgz$/, ""));
    assert.ok(meta.buildVersion !== undefined && meta.buildInfo !== undefined && meta.sizePkg !== undefined && meta.sizeAll !== undefined);
  }
});

test("the packing list, build info and build version of pkg_rolling-replace are what it was built with", async () => {
  const meta = await readBinaryPackage(fixture("pkg_rolling-replace-0.24.1.tgz"));
  const plist = parsePackingList(meta.contents);
  assert.equal(plist.pkgname, "pkg_rolling-replace-0.24.1");
  assert.deepEqual(plist.pkgdeps, ["pkg_chk>=1.76", "pkg_tarup>=1.6.6"]);
  // pbulk-resolve's DEPENDS for it (expected/closure-resolved.tsv), as @blddep.
  assert.deepEqual([...plist.blddeps].sort(), ["nbpatch-20100124", "pkg_chk-2.0.6", "pkg_tarup-1.9.1"]);
  assert.deepEqual(plist.conflicts, []);
  assert.ok(plist.entries.some((e) => e.command === "file" && e.argument === "sbin/pkg_rolling-replace"));
  const info = new Map(parseBuildInfo(meta.buildInfo!));
  assert.equal(info.get("PKGPATH"), "pkgtools/pkg_rolling-replace");
  assert.equal(info.get("NO_BIN_ON_FTP"), "");
  const versions = parseBuildVersion(meta.buildVersion!);
  assert.ok(versions.some((v) => v.file === "pkgtools/pkg_rolling-replace/Makefile" && v.id.startsWith("$NetBSD: Makefile,v ")), JSON.stringify(versions));
  assert.deepEqual(parsePackingList((await readBinaryPackage(fixture("pkg_chk-2.0.6.tgz"))).contents).conflicts, ["pkgchk-[0-9]*"]);
});

test("the reader stops at the first payload member: a package whose payload is cut off still reads", async () => {
  // A package-shaped archive with 4 MB of incompressible payload, truncated
  // a quarter of the way in: inflating the payload would fail.
  const dir = path.join(scratch, "big");
  mkdirSync(path.join(dir, "bin"), { recursive: true });
  writeFileSync(path.join(dir, "+CONTENTS"), "@name big-1.0\n@cwd /usr/pkg\nbin/big\n");
  writeFileSync(path.join(dir, "+COMMENT"), "A big package\n");
  writeFileSync(path.join(dir, "+DESC"), "Big.\n");
  writeFileSync(path.join(dir, "bin/big"), randomBytes(4 * 1024 * 1024));
  const file = path.join(scratch, "big-1.0.tgz");
  execFileSync("tar", ["--format=ustar", "-czf", file, "-C", dir, "+CONTENTS", "+COMMENT", "+DESC", "bin/big"]);
  truncateSync(file, Math.floor(statSync(file).size / 4));
  assert.throws(() => execFileSync("gzip", ["-t", file], { stdio: "pipe" }), "the truncated file is really broken");
  const meta = await readBinaryPackage(file);
  assert.equal(meta.comment, "A big package\n");
  assert.equal(parsePackingList(meta.contents).pkgname, "big-1.0");
  assert.equal(meta.buildInfo, undefined);
});

test("GNU-format archives and long names written by GNU tar read too", async () => {
  const dir = path.join(scratch, "gnu");
  const long = `share/${"d".repeat(120)}/file`;
  mkdirSync(path.join(dir, path.dirname(long)), { recursive: true });
  writeFileSync(path.join(dir, "+CONTENTS"), "@name gnu-1.0\n");
  writeFileSync(path.join(dir, "+COMMENT"), "gnu\n");
  writeFileSync(path.join(dir, "+DESC"), "gnu\n");
  writeFileSync(path.join(dir, long), "x");
  for (const format of ["gnu", "pax"]) {
    const file = path.join(scratch, `gnu-${format}.tgz`);
    execFileSync("tar", [`--format=${format}`, "-czf", file, "-C", dir, "+CONTENTS", "+COMMENT", "+DESC", long]);
    const meta = await readBinaryPackage(file);
    assert.deepEqual([...meta.files.keys()], ["+CONTENTS", "+COMMENT", "+DESC"], format);
  }
});

test("what is not a binary package gets InvalidBinaryPackage naming the file and the problem", async () => {
  const notGzip = path.join(scratch, "not-gzip.tgz");
  writeFileSync(notGzip, "hello, I am not a package\n");
  await assert.rejects(readBinaryPackage(notGzip), (e: unknown) => e instanceof InvalidBinaryPackage && e.file === notGzip && /gzip/.test(e.message));

  const noDesc = path.join(scratch, "nodesc");
  mkdirSync(noDesc);
  writeFileSync(path.join(noDesc, "+CONTENTS"), "@name x-1\n");
  writeFileSync(path.join(noDesc, "+COMMENT"), "x\n");
  writeFileSync(path.join(noDesc, "payload"), "x\n");
  const noDescFile = path.join(scratch, "nodesc.tgz");
  execFileSync("tar", ["--format=ustar", "-czf", noDescFile, "-C", noDesc, "+CONTENTS", "+COMMENT", "payload"]);
  await assert.rejects(readBinaryPackage(noDescFile), /has no \+DESC before its payload/);

  // One flipped byte in the first header's name: the checksum no longer matches.
  const tar = execFileSync("gzip", ["-dc", fixture("sysexits-1.1.tgz")]);
  tar[3] = tar[3]! ^ 0x01;
  const corrupt = path.join(scratch, "corrupt.tgz");
  writeFileSync(corrupt, gzipSync(tar));
  await assert.rejects(readBinaryPackage(corrupt), /bad checksum/);
  tar[3] = tar[3]! ^ 0x01;

  // Cut inside +CONTENTS: truncated, not "no +COMMENT".
  const cut = path.join(scratch, "cut.tgz");
  writeFileSync(cut, gzipSync(tar.subarray(0, 700)));
  await assert.rejects(readBinaryPackage(cut), /ends in the middle of a member/);

  await assert.rejects(readBinaryPackage(path.join(scratch, "missing.tgz")), (e: unknown) => (e as NodeJS.ErrnoException).code === "ENOENT");
  await assert.rejects(readBinaryPackage(fixture("pkg_chk-2.0.6.tgz"), { maxMetadataBytes: 100 }), /metadata is larger than 100 bytes/);
  // A stream works as well as a path.
  const meta = await parseBinaryPackage(createReadStream(fixture("pkg_tarup-1.9.1.tgz")), "pkg_tarup");
  assert.equal(parsePackingList(meta.contents).pkgname, "pkg_tarup-1.9.1");
});

test("formatSummaryEntry is byte for byte what the bootstrap kit's pkg_info -X prints", { skip: skipKit }, async () => {
  const expected = runWithKit(["/usr/pkg/sbin/pkg_info", "-X", ...PACKAGES], { cwd: FIXTURES });
  let ours = "";
  for (const name of PACKAGES) {
    ours += formatSummaryEntry(await readBinaryPackage(fixture(name)), { fileName: name, sizeBytes: statSync(fixture(name)).size });
  }
  assert.ok(expected.includes("PKGNAME=pkg_chk-2.0.6\n"), expected.slice(0, 200));
  assert.equal(ours, expected);
});

// SIZE_PKG differs too for pkg_chk: its script embeds the paths of the tools
// (awk, sed ...) found at build time, which pbulk's environment found elsewhere.
test("our entries match pbulk's pkg_summary for the same packages except build date and sizes", async () => {
  const pbulk = new Map(parseSummary(readFileSync(path.join(EXPECTED_DIR, "pbulk-pkg_summary.txt"), "utf8")).map((e) => [e.get("PKGNAME"), e]));
  assert.equal(pbulk.size, 46);
  for (const name of PACKAGES) {
    const [ours] = parseSummary(formatSummaryEntry(await readBinaryPackage(fixture(name)), { fileName: name, sizeBytes: statSync(fixture(name)).size }));
    const theirs = pbulk.get(name.replace(/\.tgz$/, ""));
    assert.ok(ours !== undefined && theirs !== undefined, name);
    const strip = (fields: ReadonlyArray<readonly [string, string]>) => fields.filter(([k]) => !["BUILD_DATE", "FILE_SIZE", "SIZE_PKG"].includes(k));
    assert.deepEqual(strip(ours.fields), strip(theirs.fields), name);
    assert.deepEqual(ours.fields.map(([k]) => k), theirs.fields.map(([k]) => k), `${name}: same fields in the same order`);
  }
});

test("parseSummary reads pbulk's pkg_summary and refuses what is not one", () => {
  const entries = parseSummary(readFileSync(path.join(EXPECTED_DIR, "pbulk-pkg_summary.txt"), "utf8"));
  for (const e of entries) {
    assert.equal(e.get("FILE_NAME"), `${e.get("PKGNAME")}.tgz`);
    assert.match(e.get("FILE_SIZE") ?? "", /^\d+$/);
  }
  assert.deepEqual(entries.find((e) => e.get("PKGNAME") === "tnftp-20070806")?.all("CONFLICTS"), ["kth-krb4-[0-9]*", "lukemftp-[0-9]*"]);
  assert.throws(() => parseSummary("PKGNAME=a-1\nnot a field\n"), (e: unknown) => e instanceof InvalidSummary && e.line === 2);
  assert.throws(() => parseSummary("PKGNAME=a-1\n\nCOMMENT=x\n"), (e: unknown) => e instanceof InvalidSummary && e.line === 3);
});
