import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import {
  compareVersions,
  compilePattern,
  InvalidPattern,
  matchPattern,
  patternPrefix,
  pickBestMatch,
  splitPkgname,
} from "../../services/depgraph/core/pattern.js";

// Asserts a strictly ascending chain, checking every pair both ways.
function ascending(versions: string[]): void {
  for (let i = 0; i < versions.length; i++) {
    for (let j = i + 1; j < versions.length; j++) {
      assert.equal(compareVersions(versions[i]!, versions[j]!), -1, `${versions[i]} < ${versions[j]}`);
      assert.equal(compareVersions(versions[j]!, versions[i]!), 1, `${versions[j]} > ${versions[i]}`);
    }
  }
}

function same(a: string, b: string): void {
  assert.equal(compareVersions(a, b), 0, `${a} == ${b}`);
  assert.equal(compareVersions(b, a), 0, `${b} == ${a}`);
}

test("dewey order: alpha < beta < pre/rc < release < nb revision < patch level", () => {
  ascending([
    "1.0alpha1",
    "1.0alpha2",
    "1.0beta",
    "1.0beta1",
    "1.0rc1",
    "1.0rc2",
    "1.0",
    "1.0nb1",
    "1.0nb2",
    "1.0nb10",
    "1.0pl1",
    "1.0.2",
    "1.1",
    "1.9",
    "1.10",
    "2",
  ]);
});

test("dewey equalities: missing components are 0, pre is rc, pl/_/letter are .N", () => {
  same("1.0", "1.0.0");
  same("1", "1.0.0.0");
  same("1.0pre1", "1.0rc1");
  same("1.0pl1", "1.0.1");
  same("1.0_1", "1.0.1");
  same("1.0a", "1.0.1"); // a lone letter is ".N", a = 1
  same("1.0RC1", "1.0rc1"); // modifiers ignore case
  same("1.0nb0", "1.0");
  same("1.0+", "1.0"); // unknown characters are skipped
  ascending(["1.0a", "1.0b", "1.0z"]);
  ascending(["1.0nb99", "1.0.1"]); // nb only breaks a tie of everything else
});

test("dewey numbers wrap like C ints, as pbulk compares them", () => {
  same("4294967296", "0");
  assert.equal(compareVersions("20110824192219", "20110824192220"), -1);
});

test("splitPkgname splits at the last dash", () => {
  assert.deepEqual(splitPkgname("py313-setuptools-80.9.0"), { name: "py313-setuptools", version: "80.9.0" });
  assert.deepEqual(splitPkgname("gmake-4.4.1nb2"), { name: "gmake", version: "4.4.1nb2" });
  assert.deepEqual(splitPkgname("nodash"), { name: "nodash", version: "" });
});

test("dewey patterns: every operator", () => {
  const cases: Array<[string, string, boolean]> = [
    ["foo>=1.0", "foo-1.0", true],
    ["foo>=1.0", "foo-1.0nb1", true],
    ["foo>=1.0", "foo-0.9", false],
    ["foo>=1.0", "foo-1.0rc1", false],
    ["foo>1.0", "foo-1.0", false],
    ["foo>1.0", "foo-1.0nb1", true],
    ["foo<=1.0", "foo-1.0", true],
    ["foo<=1.0", "foo-1.0nb1", false],
    ["foo<1.0", "foo-1.0beta", true],
    ["foo<1.0", "foo-1.0", false],
    ["foo>=1.0nb2", "foo-1.0nb1", false],
    ["foo>=1.0nb2", "foo-1.0.1", true],
    ["foo>=1", "foo-1.0.0", true],
  ];
  for (const [p, pkg, want] of cases) assert.equal(matchPattern(p, pkg), want, `${p} vs ${pkg}`);
});

test("dewey patterns: the name must be exact and is never globbed", () => {
  assert.equal(matchPattern("foo>=1", "foobar-2"), false);
  assert.equal(matchPattern("foo>=1", "xfoo-2"), false);
  assert.equal(matchPattern("foo-bar>=1", "foo-bar-1.2"), true);
  assert.equal(matchPattern("foo-bar>=1", "foo-1.2"), false);
  assert.equal(matchPattern("py3*-foo>=1", "py313-foo-2"), false);
  assert.equal(matchPattern("foo>=1", "foo"), false);
  // No version-less fallback for dewey patterns.
  assert.equal(matchPattern("foo>=1", "foo-bar-2"), false);
});

test("dewey ranges: a lower bound may carry an upper bound", () => {
  const p = "foo>=1.0<2";
  assert.equal(matchPattern(p, "foo-0.9"), false);
  assert.equal(matchPattern(p, "foo-1.0"), true);
  assert.equal(matchPattern(p, "foo-1.99nb3"), true);
  assert.equal(matchPattern(p, "foo-2.0rc1"), true);
  assert.equal(matchPattern(p, "foo-2"), false);
  assert.equal(matchPattern(p, "foo-2.0.0"), false);
  assert.equal(matchPattern("foo>1<=2", "foo-2nb1"), false);
  assert.equal(matchPattern("foo>1<=2", "foo-2"), true);
  assert.equal(matchPattern("foo>1<=2", "foo-1"), false);
  assert.equal(matchPattern("ansible-core>=2.20.1<2.21", "ansible-core-2.20.1"), true);
  assert.equal(matchPattern("ansible-core>=2.20.1<2.21", "ansible-core-2.21.0"), false);
});

test("== and != are in dewey.c's table but pkg_match never reaches them", () => {
  // Without "<" or ">" the pattern is a plain name.
  assert.equal(matchPattern("foo==1.0", "foo-1.0"), false);
  assert.equal(matchPattern("foo!=1.0", "foo-2.0"), false);
  assert.equal(matchPattern("foo==1.0", "foo==1.0"), true);
  // Only > and >= take an upper bound; after < the rest is all version and
  // ">" is skipped like any unknown character: "2>1" reads as 2.1.
  // ("2.9" is 2,0,9 since "." is a 0 component, and 2,0,9 < 2,1.)
  assert.equal(matchPattern("foo<2>1", "foo-2.9"), true);
  assert.equal(matchPattern("foo<2", "foo-2.9"), false);
  assert.equal(matchPattern("foo<2>1", "foo-3"), false);
});

test("globs follow fnmatch with FNM_PERIOD", () => {
  const cases: Array<[string, string, boolean]> = [
    ["foo-[0-9]*", "foo-1.0", true],
    ["foo-[0-9]*", "foo-bar-1.0", false],
    ["foo-[0-9]*", "foo-", false],
    ["*", "anything-1.0", true],
    ["*", ".hidden-1.0", false],
    ["?hidden-1.0", ".hidden-1.0", false],
    [".h*", ".hidden-1.0", true],
    ["fo?-1.0", "foo-1.0", true],
    ["fo?-1.0", "fo-1.0", false],
    ["foo-[!0-9]*", "foo-x1", true],
    ["foo-[!0-9]*", "foo-1", false],
    ["foo-[^0-9]*", "foo-x1", true],
    ["foo-1.[0-35-9]", "foo-1.4", false],
    ["foo-1.[0-35-9]", "foo-1.5", true],
    ["foo-1.[a-]", "foo-1.-", true],
    ["foo-\\*", "foo-*", true],
    ["foo-\\*", "foo-1", false],
    ["*-*-[0-9]*", "p5-Foo-1.0", true],
    ["*-*-[0-9]*", "gmake-4.4", false],
    ["foo-1.0*", "foo-1.0", true],
    ["foo-**1", "foo-1", true],
  ];
  for (const [p, pkg, want] of cases) assert.equal(matchPattern(p, pkg, "pbulk"), want, `${p} vs ${pkg}`);
});

test("glob edge cases from BSD rangematch: ']' first closes, unterminated '[' never matches", () => {
  assert.equal(matchPattern("foo-[]1", "foo-]1", "pbulk"), false);
  assert.equal(matchPattern("foo-[!]", "foo-x", "pbulk"), true);
  assert.equal(matchPattern("foo-[0-9", "foo-1", "pbulk"), false);
  assert.equal(matchPattern("foo-[0-9", "foo-[0-9", "pbulk"), false);
});

test("globs do not backtrack catastrophically", () => {
  const pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
  const name = "a".repeat(5000);
  const started = process.hrtime.bigint();
  assert.equal(matchPattern(pattern, name), false);
  assert.ok(process.hrtime.bigint() - started < 2_000_000_000n);
});

test("pkg_install also matches a pattern written without its version; pbulk does not", () => {
  assert.equal(matchPattern("gmake", "gmake-4.4.1"), true);
  assert.equal(matchPattern("gmake", "gmake-4.4.1", "pbulk"), false);
  assert.equal(matchPattern("gmake", "gmake-devel-1.0"), false);
  assert.equal(matchPattern("py3*-foo", "py313-foo-1.0"), true);
  assert.equal(matchPattern("py3*-foo", "py313-foo-1.0", "pbulk"), false);
  assert.equal(matchPattern("gmake-4.4.1", "gmake-4.4.1", "pbulk"), true);
  assert.equal(matchPattern("gmake-4.4", "gmake-4.4.1", "pbulk"), false);
  // pkg_install's glob branch falls back to a string compare.
  assert.equal(matchPattern("foo-[0-9]*", "foo-[0-9]*"), true);
  assert.equal(matchPattern("foo-[0-9]*", "foo-[0-9]*", "pbulk"), false);
});

test("csh-style alternatives, nested and mixed with dewey and globs", () => {
  const cases: Array<[string, string, boolean]> = [
    ["{foo,bar}-[0-9]*", "foo-1", true],
    ["{foo,bar}-[0-9]*", "bar-2", true],
    ["{foo,bar}-[0-9]*", "baz-2", false],
    ["{py3{12,13},py27}-six-[0-9]*", "py313-six-1.17", true],
    ["{py3{12,13},py27}-six-[0-9]*", "py27-six-1.17", true],
    ["{py3{12,13},py27}-six-[0-9]*", "py311-six-1.17", false],
    ["{daemontools>=0.76nb5,daemontools-encore-[0-9]*}", "daemontools-0.76nb5", true],
    ["{daemontools>=0.76nb5,daemontools-encore-[0-9]*}", "daemontools-0.76nb4", false],
    ["{daemontools>=0.76nb5,daemontools-encore-[0-9]*}", "daemontools-encore-1.11", true],
    ["dovecot>=2.3.21.1{nb*,}", "dovecot-2.3.21.1", true],
    ["dovecot>=2.3.21.1{nb*,}", "dovecot-2.3.21", false],
    ["php56-{mysql,pgsql}>=5.6.3*", "php56-pgsql-5.6.40", true],
    ["php56-{mysql,pgsql}>=5.6.3*", "php56-sqlite-5.6.40", false],
    ["boost-libs-1.90{,nb*,.*}", "boost-libs-1.90", true],
    ["boost-libs-1.90{,nb*,.*}", "boost-libs-1.90nb2", true],
    ["boost-libs-1.90{,nb*,.*}", "boost-libs-1.90.0", true],
    ["boost-libs-1.90{,nb*,.*}", "boost-libs-1.91", false],
    ["{a,b}-{1,2}", "b-2", true],
    ["{a,b}-{1,2}", "b-3", false],
    ["{,x}foo-1", "foo-1", true],
  ];
  for (const [p, pkg, want] of cases) {
    assert.equal(matchPattern(p, pkg, "pbulk"), want, `${p} vs ${pkg} (pbulk)`);
    assert.equal(matchPattern(p, pkg), want, `${p} vs ${pkg} (pkg_install)`);
  }
});

test("malformed patterns throw InvalidPattern naming the pattern", () => {
  for (const p of ["", "{foo,bar-[0-9]*", "foo}-1", "}{", "{a,{b}-1", "{a,b}}"]) {
    assert.throws(
      () => matchPattern(p, "foo-1"),
      (e: unknown) => e instanceof InvalidPattern && e.name === "InvalidPattern" && e.message.includes(`"${p}"`),
      JSON.stringify(p),
    );
    assert.throws(() => compilePattern(p), InvalidPattern);
  }
  assert.throws(() => compilePattern("{a,b}".repeat(13)), /more than 4096 alternatives/);
});

test("compilePattern gives a reusable matcher that agrees with matchPattern", () => {
  const m = compilePattern("qt5-qtbase>=5.15.18");
  for (const pkg of ["qt5-qtbase-5.15.18", "qt5-qtbase-5.15.17nb3", "qt5-qtbase-6.0", "qt6-qtbase-6.9"]) {
    assert.equal(m(pkg), matchPattern("qt5-qtbase>=5.15.18", pkg));
  }
  assert.equal(m("qt5-qtbase-5.15.18"), true);
});

test("pickBestMatch prefers the highest version", () => {
  const c = ["gmake-3.81", "gmake-4.4.1", "gmake-4.4.1nb1", "gmake-4.10rc1", "gmake-devel-9.0"];
  assert.equal(pickBestMatch("gmake>=3.81", c), "gmake-4.10rc1");
  // A release candidate sorts below its release, so it is inside "<4.10".
  assert.equal(pickBestMatch("gmake>=3.81<4.10", c), "gmake-4.10rc1");
  assert.equal(pickBestMatch("gmake>=3.81<4.10rc1", c), "gmake-4.4.1nb1");
  assert.equal(pickBestMatch("gmake-[0-9]*", [...c].reverse()), "gmake-4.10rc1");
  assert.equal(pickBestMatch("gmake<3", c), undefined);
  assert.equal(pickBestMatch("gmake>=1", []), undefined);
  // pbulk's pkg_match has no version-less fallback.
  assert.equal(pickBestMatch("gmake", c), undefined);
});

test("pickBestMatch chooses the MULTI_VERSION variant the pattern names", () => {
  const c = ["py312-setuptools-80.9.0", "py313-setuptools-80.9.0", "py313-setuptools-79.0", "py314-setuptools-81.0"];
  assert.equal(pickBestMatch("py313-setuptools-[0-9]*", c), "py313-setuptools-80.9.0");
  assert.equal(pickBestMatch("py313-setuptools>=70", c), "py313-setuptools-80.9.0");
  // When several variants match with the same version, pkg_order keeps the
  // greater name by strcmp, whatever the order of the candidates.
  assert.equal(pickBestMatch("py31[23]-setuptools-[0-9]*", c), "py313-setuptools-80.9.0");
  assert.equal(pickBestMatch("py31[23]-setuptools-[0-9]*", [...c].reverse()), "py313-setuptools-80.9.0");
  assert.equal(pickBestMatch("{py312,py313}-setuptools>=80", c), "py313-setuptools-80.9.0");
  assert.equal(pickBestMatch("py3*-setuptools-[0-9]*", c), "py314-setuptools-81.0");
});

test("patternPrefix is what every match starts with", () => {
  assert.equal(patternPrefix("gmake>=3.81"), "gmake");
  assert.equal(patternPrefix("py313-setuptools-[0-9]*"), "py313-setuptools-");
  assert.equal(patternPrefix("php56-{mysql,pgsql}>=5.6.3*"), "php56-");
  assert.equal(patternPrefix("{a,b}-[0-9]*"), "");
  assert.equal(patternPrefix("gmake-4.4.1"), "gmake-4.4.1");
  assert.equal(patternPrefix("foo-\\*"), "foo-");
});

// ---- the real pkgsrc tree ---------------------------------------------------

const PRESOLVE = new URL("../../../../shared/data/pkgsrc/presolve.txt.gz", import.meta.url);
const havePresolve = existsSync(PRESOLVE);

interface Rec {
  pkgname: string;
  patterns: string[];
  depends: string[] | undefined;
  failReason: string;
}

function readPresolve(): Rec[] {
  const recs: Rec[] = [];
  let cur: Rec | undefined;
  for (const line of gunzipSync(readFileSync(PRESOLVE)).toString("utf8").split("\n")) {
    if (line.startsWith("PKGNAME=")) {
      cur = { pkgname: line.slice(8), patterns: [], depends: undefined, failReason: "" };
      recs.push(cur);
    } else if (cur && line.startsWith("ALL_DEPENDS=")) {
      // Split at the first ":" as presolve.c does (strchr).
      cur.patterns = line.slice(12).split(/[ \t]+/).filter(Boolean).map((d) => d.slice(0, d.indexOf(":")));
    } else if (cur && line.startsWith("PKG_FAIL_REASON=")) {
      cur.failReason = line.slice(16);
    } else if (cur && line.startsWith("DEPENDS=")) {
      cur.depends = line.slice(8).split(" ").filter(Boolean);
    }
  }
  return recs;
}

test(
  "presolve.txt.gz: replaying pbulk-resolve with these matchers gives pbulk's DEPENDS",
  { skip: havePresolve ? false : `no ${fileURLToPath(PRESOLVE)}` },
  (t) => {
    const recs = readPresolve();
    assert.ok(recs.length > 1000, `only ${recs.length} records`);

    // Quick sanity: each resolved dependency matches one of the record's patterns.
    let sane = 0;
    const insane: string[] = [];
    for (const r of recs) {
      const ok = (r.depends ?? []).every((d) => r.patterns.some((p) => matchPattern(p, d)));
      if (ok) sane++;
      else insane.push(r.pkgname);
    }
    t.diagnostic(`${sane}/${recs.length} records: every DEPENDS entry matches an ALL_DEPENDS pattern`);
    assert.deepEqual(insane.slice(0, 10), []);

    // Full replay of presolve.c's resolve_entry over every PKGNAME in the file.
    const names = recs.map((r) => r.pkgname).sort();
    const candidatesFor = (prefix: string): string[] => {
      let lo = 0;
      let hi = names.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (names[mid]! < prefix) lo = mid + 1;
        else hi = mid;
      }
      let end = lo;
      while (end < names.length && names[end]!.startsWith(prefix)) end++;
      return names.slice(lo, end);
    };
    const best = new Map<string, string | undefined>();
    let replayed = 0;
    let unresolvable = 0;
    const differ: string[] = [];
    for (const r of recs) {
      const chosen: string[] = [];
      const unresolved: string[] = [];
      for (const p of r.patterns) {
        // An earlier choice that already satisfies the pattern is kept.
        if (chosen.some((d) => matchPattern(p, d, "pbulk"))) continue;
        if (!best.has(p)) best.set(p, pickBestMatch(p, candidatesFor(patternPrefix(p))));
        const b = best.get(p);
        if (b === undefined) unresolved.push(p);
        else chosen.push(b);
      }
      // pbulk writes no DEPENDS for a package it cannot resolve and says
      // which pattern failed in PKG_FAIL_REASON instead.
      const failed = /could not resolve dependency "([^"]*)"/.exec(r.failReason)?.[1];
      if (unresolved.length > 0) {
        if (r.depends === undefined && failed === unresolved[0]) unresolvable++;
        else differ.push(`${r.pkgname}: no match for ${unresolved.join(" ")}; pbulk: ${r.failReason}`);
      } else if (chosen.join(" ") === (r.depends ?? []).join(" ")) {
        replayed++;
      } else {
        differ.push(`${r.pkgname}: got [${chosen.join(" ")}] want [${(r.depends ?? []).join(" ")}]`);
      }
    }
    t.diagnostic(`${replayed}/${recs.length} records: replayed resolution equals pbulk's DEPENDS exactly`);
    t.diagnostic(`${unresolvable}/${recs.length} records: unresolvable here and in pbulk, on the same pattern`);
    assert.deepEqual(differ.slice(0, 10), []);
  },
);
