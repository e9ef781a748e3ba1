// pkgsrc package patterns (DEPENDS "pattern:../../cat/pkg"), matched the way
// pkg_install and pbulk match them, so a graph resolved here is the graph
// pbulk-resolve would have produced. Ported from the pkgsrc tree:
//   pkgtools/pkg_install/files/lib/dewey.c     (1.13)  version order, "<" ">" patterns
//   pkgtools/pkg_install/files/lib/opattern.c  (1.6)   pkg_match dispatch, alternates
//   pkgtools/libnbcompat/files/fnmatch.c               glob rules (BSD fnmatch)
//   pkgtools/pbulk/files/pbulk/lib/match.c     (1.5)   pbulk's own pkg_match/pkg_order
//   pkgtools/pbulk/files/pbulk/presolve/presolve.c     how pbulk-resolve picks one
// Quirks kept on purpose, because the C code has them and pbulk's output
// depends on them:
// - Only "<" or ">" makes a dewey pattern. dewey.c knows "==" and "!=", but
//   pkg_match never reaches them: "foo==1.0" is compared as a plain name.
// - Only ">"/">=" may carry an upper bound ("foo>=1<2"); in "foo<2>1" the
//   text "2>1" is the version and ">" is ignored like any unknown character.
// - "1.0" == "1.0.0" == "1": missing components count as 0.
// - Numbers wrap like C ints (openrcs-20110824192219 exists in pkgsrc).
// Deliberate differences: a "}" without its "{" is refused (C takes it
// literally), and so is a pattern expanding to over 4096 alternatives.

import { quote } from "../../shared/quote.js";

/** InvalidPattern: a pattern pkg_match would reject (or that cannot be meant). */
export class InvalidPattern extends Error {
  override readonly name = "InvalidPattern";
  constructor(
    readonly pattern: string,
    readonly problem: string,
  ) {
    super(`invalid package pattern ${quote(pattern)}: ${problem}`);
  }
}

/**
 * The two pkg_match variants. "pkg_install" (opattern.c) also accepts a
 * glob or plain name written without its version ("gmake" matches
 * gmake-4.4.1, via "gmake-[0-9]*"); "pbulk" (pbulk's match.c) does not, and
 * its glob branch does not fall back to a string compare.
 */
export type Dialect = "pkg_install" | "pbulk";

export type Matcher = (pkgname: string) => boolean;

/** splitPkgname splits at the last "-", as dewey_match and pkg_order do. */
export function splitPkgname(pkgname: string): { name: string; version: string } {
  const dash = pkgname.lastIndexOf("-");
  if (dash < 0) return { name: pkgname, version: "" };
  return { name: pkgname.slice(0, dash), version: pkgname.slice(dash + 1) };
}

// ---- dewey.c ---------------------------------------------------------------

// Values from dewey.c's enum; "do not modify these values, or things will NOT work".
const ALPHA = -3;
const BETA = -2;
const RC = -1;
const DOT = 0;

// Order matters: mkcomponent takes the first prefix that matches.
const MODIFIERS: ReadonlyArray<readonly [string, number]> = [
  ["alpha", ALPHA],
  ["beta", BETA],
  ["pre", RC],
  ["rc", RC],
  ["pl", DOT],
  ["_", DOT],
  [".", DOT],
];

interface Version {
  readonly v: readonly number[];
  readonly nb: number;
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const lower = (c: number): number => (c >= 65 && c <= 90 ? c + 32 : c);

// Case-insensitive, as dewey.c uses strncasecmp: "1.0RC1" is "1.0rc1".
function hasWordAt(s: string, at: number, word: string): boolean {
  if (at + word.length > s.length) return false;
  for (let k = 0; k < word.length; k++) {
    if (lower(s.charCodeAt(at + k)) !== word.charCodeAt(k)) return false;
  }
  return true;
}

// mkversion/mkcomponent. Math.imul and |0 reproduce C's int overflow, so very
// long digit runs order the way pbulk orders them, not the way they "should".
function parseVersion(s: string): Version {
  const v: number[] = [];
  let nb = 0;
  let i = 0;
  next: while (i < s.length) {
    const c = s.charCodeAt(i);
    if (isDigit(c)) {
      let n = 0;
      for (; i < s.length && isDigit(s.charCodeAt(i)); i++) n = (Math.imul(n, 10) + s.charCodeAt(i) - 48) | 0;
      v.push(n);
      continue;
    }
    for (const [word, value] of MODIFIERS) {
      if (hasWordAt(s, i, word)) {
        v.push(value);
        i += word.length;
        continue next;
      }
    }
    if (hasWordAt(s, i, "nb")) {
      let n = 0;
      for (i += 2; i < s.length && isDigit(s.charCodeAt(i)); i++) n = (Math.imul(n, 10) + s.charCodeAt(i) - 48) | 0;
      nb = n;
      continue;
    }
    const l = lower(c);
    // A lone letter is ".N" with a=1 ... z=26, so 1.0a == 1.0.1.
    if (l >= 97 && l <= 122) v.push(DOT, l - 96);
    i++;
  }
  return { v, nb };
}

// vtest's cmp: the first differing component, then the nb revision. Its sign
// is what the dewey operators test; |0 keeps C's int subtraction.
function vcmp(a: Version, b: Version): number {
  const len = Math.max(a.v.length, b.v.length);
  for (let i = 0; i < len; i++) {
    const d = ((a.v[i] ?? 0) - (b.v[i] ?? 0)) | 0;
    if (d !== 0) return d;
  }
  return (a.nb - b.nb) | 0;
}

/** compareVersions orders two versions as dewey_cmp does: -1, 0 or 1. */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  const d = vcmp(parseVersion(a), parseVersion(b));
  return d < 0 ? -1 : d > 0 ? 1 : 0;
}

type Test = (cmp: number) => boolean;

// dewey_mktest's table, first match wins ("<=" before "<").
const TESTS: ReadonlyArray<readonly [string, Test]> = [
  ["<=", (c) => c <= 0],
  ["<", (c) => c < 0],
  [">=", (c) => c >= 0],
  [">", (c) => c > 0],
  ["==", (c) => c === 0],
  ["!=", (c) => c !== 0],
];

// Only ever asked where p[at] is "<" or ">", so the table's "<"/">" always match.
function mktest(p: string, at: number): readonly [string, Test] {
  return TESTS.find((t) => p.startsWith(t[0], at))!;
}

// dewey_match: the name before the first "<" or ">" must equal the package
// name exactly (no globbing there); the version is tested against the bound(s).
function compileDewey(p: string, sep: number): Matcher {
  const name = p.slice(0, sep);
  const [op, test] = mktest(p, sep);
  const from = sep + op.length;
  let lowerText = p.slice(from);
  let upper: { test: Test; version: Version } | undefined;
  if (op === ">" || op === ">=") {
    const sep2 = p.indexOf("<", from);
    if (sep2 >= 0) {
      const [op2, test2] = mktest(p, sep2);
      upper = { test: test2, version: parseVersion(p.slice(sep2 + op2.length)) };
      lowerText = p.slice(from, sep2);
    }
  }
  const bound = parseVersion(lowerText);
  return (pkgname) => {
    const dash = pkgname.lastIndexOf("-");
    if (dash !== name.length || !pkgname.startsWith(name)) return false;
    const version = parseVersion(pkgname.slice(dash + 1));
    if (upper !== undefined && !upper.test(vcmp(version, upper.version))) return false;
    return test(vcmp(version, bound));
  };
}

// ---- fnmatch(pattern, pkgname, FNM_PERIOD) ---------------------------------

const STAR = -1;
const ANY = -2;
// A token is a char code, STAR, ANY, or a bracket expression.
type Token = number | { readonly negate: boolean; readonly ranges: readonly number[] };

function tokenMatches(t: Token, c: number): boolean {
  if (typeof t === "number") return t === ANY || t === c;
  for (let k = 0; k < t.ranges.length; k += 2) if (t.ranges[k]! <= c && c <= t.ranges[k + 1]!) return !t.negate;
  return t.negate;
}

// undefined means the pattern can never match: rangematch() fails on an
// unterminated "[" whatever the string, and every match must pass it.
function parseGlob(p: string): Token[] | undefined {
  const out: Token[] = [];
  let i = 0;
  while (i < p.length) {
    const c = p.charCodeAt(i++);
    if (c === 42 /* * */) {
      if (out[out.length - 1] !== STAR) out.push(STAR);
    } else if (c === 63 /* ? */) {
      out.push(ANY);
    } else if (c === 92 /* \ */) {
      // A trailing backslash stands for itself.
      out.push(i < p.length ? p.charCodeAt(i++) : c);
    } else if (c === 91 /* [ */) {
      const negate = p[i] === "!" || p[i] === "^";
      if (negate) i++;
      const ranges: number[] = [];
      // As in BSD rangematch, "]" right after "[" closes an empty set.
      for (;;) {
        if (i >= p.length) return undefined;
        let lo = p.charCodeAt(i++);
        if (lo === 93 /* ] */) break;
        if (lo === 92) {
          if (i >= p.length) return undefined;
          lo = p.charCodeAt(i++);
        }
        let hi = lo;
        if (p[i] === "-" && i + 1 < p.length && p[i + 1] !== "]") {
          hi = p.charCodeAt(i + 1);
          i += 2;
          if (hi === 92) {
            if (i >= p.length) return undefined;
            hi = p.charCodeAt(i++);
          }
        }
        ranges.push(lo, hi);
      }
      out.push({ negate, ranges });
    } else {
      out.push(c);
    }
  }
  return out;
}

function compileGlob(p: string): Matcher {
  const tokens = parseGlob(p);
  if (tokens === undefined) return () => false;
  // Checking the literal head with startsWith rejects almost every candidate cheaply.
  let head = 0;
  while (head < tokens.length && typeof tokens[head] === "number" && (tokens[head] as number) >= 0) head++;
  const prefix = String.fromCharCode(...(tokens.slice(0, head) as number[]));
  const first = tokens[0];
  const periodSensitive = first === STAR || first === ANY;
  return (s) => {
    if (!s.startsWith(prefix)) return false;
    // FNM_PERIOD: a leading "." is not matched by "*" or "?".
    if (periodSensitive && s.charCodeAt(0) === 46) return false;
    // Every token but "*" eats one character, so backtracking to the last
    // "*" is enough and the cost stays O(len(s) * len(tokens)).
    let t = head;
    let i = head;
    let starT = -1;
    let starI = 0;
    while (i < s.length) {
      if (t < tokens.length) {
        const tok = tokens[t]!;
        if (tok === STAR) {
          starT = t++;
          starI = i;
          continue;
        }
        if (tokenMatches(tok, s.charCodeAt(i))) {
          t++;
          i++;
          continue;
        }
      }
      if (starT < 0) return false;
      t = starT + 1;
      i = ++starI;
    }
    while (t < tokens.length && tokens[t] === STAR) t++;
    return t === tokens.length;
  };
}

// ---- opattern.c ------------------------------------------------------------

const MAX_ALTERNATIVES = 4096;

// Expands csh-style {a,b} the way alternate_match recurses: the first group,
// split at its top-level commas, each choice followed by the rest.
function expandAlternatives(pattern: string, p: string, out: Set<string>): void {
  const open = p.indexOf("{");
  if (open < 0) {
    out.add(p);
    if (out.size > MAX_ALTERNATIVES) throw new InvalidPattern(pattern, `more than ${MAX_ALTERNATIVES} alternatives`);
    return;
  }
  // The caller checked that braces balance, so this group's "}" exists.
  const cuts = [open];
  let close = open;
  let depth = 0;
  for (let i = open + 1; ; i++) {
    const c = p[i];
    if (c === "{") depth++;
    else if (c === "," && depth === 0) cuts.push(i);
    else if (c === "}") {
      if (depth === 0) {
        close = i;
        break;
      }
      depth--;
    }
  }
  cuts.push(close);
  const head = p.slice(0, open);
  const tail = p.slice(close + 1);
  for (let k = 0; k + 1 < cuts.length; k++) {
    expandAlternatives(pattern, head + p.slice(cuts[k]! + 1, cuts[k + 1]) + tail, out);
  }
}

function checkBraces(pattern: string): void {
  let depth = 0;
  for (const c of pattern) {
    if (c === "{") depth++;
    else if (c === "}" && --depth < 0) throw new InvalidPattern(pattern, `"}" without "{"`);
  }
  if (depth > 0) throw new InvalidPattern(pattern, `"{" without "}"`);
}

// One brace-free pattern, dispatched in pkg_match's order.
function compileLeaf(p: string, dialect: Dialect): Matcher {
  const sep = p.search(/[<>]/);
  if (sep >= 0) return compileDewey(p, sep);
  let m: Matcher;
  if (/[*?[\]]/.test(p)) {
    const glob = compileGlob(p);
    m = dialect === "pbulk" ? glob : (s) => glob(s) || s === p;
  } else {
    m = (s) => s === p;
  }
  if (dialect === "pbulk") return m;
  // opattern.c: "globbing patterns and simple matches may be specified with
  // or without the version number, so check for both cases."
  const versionless = compileGlob(`${p}-[0-9]*`);
  return (s) => m(s) || versionless(s);
}

/** compilePattern turns a pattern into a reusable matcher; throws InvalidPattern. */
export function compilePattern(pattern: string, dialect: Dialect = "pkg_install"): Matcher {
  if (pattern === "") throw new InvalidPattern(pattern, "empty pattern");
  checkBraces(pattern);
  const leaves = new Set<string>();
  expandAlternatives(pattern, pattern, leaves);
  const matchers = [...leaves].map((leaf) => compileLeaf(leaf, dialect));
  if (matchers.length === 1) return matchers[0]!;
  return (s) => matchers.some((m) => m(s));
}

// A resolver asks about the same few thousand patterns over and over.
const CACHE_LIMIT = 8192;
const caches: Record<Dialect, Map<string, Matcher>> = { pkg_install: new Map(), pbulk: new Map() };

function cached(pattern: string, dialect: Dialect): Matcher {
  const cache = caches[dialect];
  let m = cache.get(pattern);
  if (m === undefined) {
    m = compilePattern(pattern, dialect);
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(pattern, m);
  }
  return m;
}

/** matchPattern is pkg_match(pattern, pkgname); throws InvalidPattern. */
export function matchPattern(pattern: string, pkgname: string, dialect: Dialect = "pkg_install"): boolean {
  return cached(pattern, dialect)(pkgname);
}

/**
 * patternPrefix is text every pkgname matching the pattern starts with (in
 * either dialect), so a caller can narrow candidates with a sorted index
 * before matching. It may be "" (e.g. for "{a,b}-[0-9]*").
 */
export function patternPrefix(pattern: string): string {
  const end = pattern.search(/[{<>*?[\]\\]/);
  return end < 0 ? pattern : pattern.slice(0, end);
}

/**
 * pickBestMatch chooses among candidates as pbulk-resolve's find_match does:
 * pbulk's pkg_match filters, then pkg_order keeps the highest dewey version
 * and, on a tie, the greater name by strcmp (py313-x-1.0 over py312-x-1.0),
 * so the order of candidates does not matter.
 */
export function pickBestMatch(pattern: string, candidates: readonly string[]): string | undefined {
  const matches = cached(pattern, "pbulk");
  let best: string | undefined;
  let bestVersion: Version = { v: [], nb: 0 };
  for (const c of candidates) {
    if (!matches(c)) continue;
    const version = parseVersion(splitPkgname(c).version);
    // Both directions are asked, as pkg_order does: with C's wrapping
    // subtraction neither may be "greater".
    if (best !== undefined) {
      if (vcmp(bestVersion, version) > 0) continue;
      if (!(vcmp(version, bestVersion) > 0) && best > c) continue;
    }
    best = c;
    bestVersion = version;
  }
  return best;
}
