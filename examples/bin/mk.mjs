// mk.mjs: the small subset of pkgsrc make syntax the example tree is written
// in, and the pbulk-index records it yields. Shared by scan-one.mjs and
// build-one.mjs. Plain ESM JavaScript for Node 20+, no dependencies.
//
// A package is a directory <tree>/<category>/<package>/ holding a Makefile
// and a build.sh. The Makefile may contain only:
//   - blank lines and comments (# to the end of the line; \# is a literal #),
//   - assignments   VAR= value   VAR+= value   VAR?= value,
//   - includes      .include "../../lang/python/pyversion.mk"
// with lines continued by a trailing backslash. Values may refer to other
// variables as ${VAR} or $(VAR) (expanded lazily, as make does; $$ is a
// literal $). Referring to an undefined variable, modifiers (${VAR:...}),
// conditionals and := / != assignments are errors, so a typo cannot
// silently produce a wrong record.
//
// Variables the scanner understands:
//   DISTNAME, PKGNAME (defaults to DISTNAME), PKGREVISION (adds "nbN"),
//   CATEGORIES (defaults to the location's category), MAINTAINER, COMMENT,
//   DEPENDS, BUILD_DEPENDS, TOOL_DEPENDS (pattern:../../category/package ...),
//   PKG_FAIL_REASON, PKG_SKIP_REASON, NO_BIN_ON_FTP, RESTRICTED,
//   BOOTSTRAP_PKG, USERGROUP_PHASE, PBULK_WEIGHT,
//   MULTI_VERSION_VAR and MULTI_VERSION_VALUES: the package is scanned once
//   per value, with MULTI_VERSION_VAR set to it (one record each, carrying
//   "MULTI_VERSION= VAR=value"), as pbulk does for PYTHON_VERSION_REQD.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** A location is "category/package": two plain path segments, no "..". */
export const LOCATION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*\/[A-Za-z0-9][A-Za-z0-9._+-]*$/;
/** A PKGNAME is "name-version" with the version starting with a digit. */
export const PKGNAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*-[0-9][A-Za-z0-9._+]*$/;
const VARNAME_RE = /^[A-Za-z_][A-Za-z0-9_.]*$/;
const MV_VALUE_RE = /^[A-Za-z0-9._-]+$/;
const MAX_INCLUDE_DEPTH = 8;
const MAX_EXPANSION_DEPTH = 32;

/** The bundled tree: examples/tree beside this file's directory. */
export const BUNDLED_TREE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "tree");

/** MakefileError: a Makefile the scanner cannot read; the message names file and line. */
export class MakefileError extends Error {
  name = "MakefileError";
}

/** UnknownLocation: the tree has no package directory at that location. */
export class UnknownLocation extends Error {
  name = "UnknownLocation";
}

/** The order pbulk-index prints its keys in (mk/pbulk/pbulk-index.mk). */
export const RECORD_KEYS = [
  "PKGNAME", "PKG_LOCATION", "ALL_DEPENDS", "PKG_SKIP_REASON", "PKG_FAIL_REASON", "NO_BIN_ON_FTP",
  "RESTRICTED", "CATEGORIES", "MAINTAINER", "USE_DESTDIR", "BOOTSTRAP_PKG", "USERGROUP_PHASE",
  "SCAN_DEPENDS", "PBULK_WEIGHT", "MULTI_VERSION",
];

/** checkLocation throws unless location is a well-formed "category/package". */
export function checkLocation(location) {
  if (typeof location !== "string" || !LOCATION_RE.test(location) || location.split("/").some((s) => s === "." || s === "..")) {
    throw new UnknownLocation(`"${location}" is not a location (category/package)`);
  }
}

/** packageDir returns the directory of a location, or throws UnknownLocation. */
export function packageDir(treeRoot, location) {
  checkLocation(location);
  const dir = path.join(treeRoot, location);
  if (!existsSync(path.join(dir, "Makefile"))) {
    throw new UnknownLocation(`the tree ${treeRoot} has no package at ${location} (no ${location}/Makefile)`);
  }
  return dir;
}

/** listLocations returns every category/package directory with a Makefile, sorted. */
export function listLocations(treeRoot) {
  if (!isDirectory(treeRoot)) throw new UnknownLocation(`the tree ${treeRoot} is not a directory`);
  const locations = [];
  for (const category of readdirSync(treeRoot).sort()) {
    const categoryDir = path.join(treeRoot, category);
    if (category.startsWith(".") || !isDirectory(categoryDir)) continue;
    for (const pkg of readdirSync(categoryDir).sort()) {
      const location = `${category}/${pkg}`;
      if (!LOCATION_RE.test(location)) continue;
      if (existsSync(path.join(categoryDir, pkg, "Makefile"))) locations.push(location);
    }
  }
  return locations;
}

function isDirectory(p) {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * readMakefile parses a package's Makefile and everything it includes.
 * Returns the raw (unexpanded) variables and the files read, as
 * SCAN_DEPENDS spells them (../../category/package/Makefile).
 */
export function readMakefile(treeRoot, location) {
  const dir = packageDir(treeRoot, location);
  const vars = new Map();
  const files = [];
  const root = path.resolve(treeRoot);
  const readFile = (file, depth, includedFrom) => {
    const rel = path.relative(root, file);
    if (rel.startsWith("..") || path.isAbsolute(rel)) {
      throw new MakefileError(`${includedFrom}: include of ${file} leaves the tree`);
    }
    const scanName = `../../${rel.split(path.sep).join("/")}`;
    if (files.includes(scanName)) throw new MakefileError(`${includedFrom}: ${scanName} is included twice (include loop?)`);
    if (depth > MAX_INCLUDE_DEPTH) throw new MakefileError(`${includedFrom}: includes nest deeper than ${MAX_INCLUDE_DEPTH}`);
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new MakefileError(`${includedFrom}: cannot read ${scanName}: ${err.code ?? err.message}`);
    }
    files.push(scanName);
    for (const { lineNo, line } of logicalLines(text)) {
      const where = `${scanName}:${lineNo}`;
      const include = /^\.\s*include\s+"([^"]+)"$/.exec(line);
      if (include) {
        const target = include[1];
        if (path.isAbsolute(target)) throw new MakefileError(`${where}: .include needs a relative path, not ${target}`);
        readFile(path.resolve(path.dirname(file), target), depth + 1, where);
        continue;
      }
      if (line.startsWith(".")) {
        throw new MakefileError(`${where}: directive "${line.split(/\s+/)[0]}" is not supported (only .include "file")`);
      }
      const assign = /^([^\s=:!?+]+)\s*(\+=|\?=|:=|!=|=)\s*(.*)$/.exec(line);
      if (!assign) throw new MakefileError(`${where}: not a variable assignment: ${abbreviate(line)}`);
      const [, name, op, value] = assign;
      if (!VARNAME_RE.test(name)) throw new MakefileError(`${where}: "${name}" is not a variable name`);
      if (op === ":=" || op === "!=") throw new MakefileError(`${where}: "${op}" assignments are not supported (use = or +=)`);
      if (op === "=") vars.set(name, value);
      else if (op === "?=") {
        if (!vars.has(name)) vars.set(name, value);
      } else {
        const old = vars.get(name);
        vars.set(name, old === undefined || old === "" ? value : value === "" ? old : `${old} ${value}`);
      }
    }
  };
  readFile(path.join(dir, "Makefile"), 0, location);
  return { vars, files };
}

/** logicalLines joins backslash continuations and strips comments. */
function* logicalLines(text) {
  const physical = text.split(/\r?\n/);
  for (let i = 0; i < physical.length; i++) {
    const lineNo = i + 1;
    let line = physical[i];
    while (/(^|[^\\])(\\\\)*\\$/.test(line) && i + 1 < physical.length) {
      line = `${line.slice(0, -1)} ${physical[++i]}`;
    }
    line = stripComment(line).trim();
    if (line !== "") yield { lineNo, line };
  }
}

function stripComment(line) {
  let out = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && line[i + 1] === "#") {
      out += "#";
      i++;
    } else if (c === "#") {
      break;
    } else {
      out += c;
    }
  }
  return out;
}

function abbreviate(s) {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** expand replaces ${VAR} / $(VAR) references, recursively, as make does. */
function expand(value, lookup, where, depth = 0, stack = []) {
  if (depth > MAX_EXPANSION_DEPTH) throw new MakefileError(`${where}: variables nest too deeply`);
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c !== "$") {
      out += c;
      continue;
    }
    const next = value[i + 1];
    if (next === "$") {
      out += "$";
      i++;
      continue;
    }
    if (next !== "{" && next !== "(") {
      throw new MakefileError(`${where}: "$${next ?? ""}" is not a variable reference (write \${VAR}, or $$ for a literal $)`);
    }
    const close = next === "{" ? "}" : ")";
    const end = value.indexOf(close, i + 2);
    if (end === -1) throw new MakefileError(`${where}: unterminated variable reference in "${abbreviate(value)}"`);
    const name = value.slice(i + 2, end);
    if (name.includes(":")) throw new MakefileError(`${where}: variable modifiers are not supported: \${${name}}`);
    if (!VARNAME_RE.test(name)) throw new MakefileError(`${where}: "${name}" is not a variable name`);
    if (stack.includes(name)) throw new MakefileError(`${where}: variable ${name} refers to itself`);
    const raw = lookup(name);
    if (raw === undefined) throw new MakefileError(`${where}: variable ${name} is not defined`);
    out += expand(raw, lookup, where, depth + 1, [...stack, name]);
    i = end;
  }
  return out;
}

function words(s) {
  return s.split(/\s+/).filter((w) => w !== "");
}

/**
 * scanPackage returns the pbulk-index records of one location: one, or one
 * per MULTI_VERSION value. Each record is
 *   { fields: Map<key, value> in pbulk's order, pkgname, location,
 *     multiVersion: [[VAR, value]] (empty for none), depends: { tool, build, run },
 *     comment }
 * Throws UnknownLocation or MakefileError.
 */
export function scanPackage(treeRoot, location) {
  const { vars, files } = readMakefile(treeRoot, location);
  const where = `${location}/Makefile`;
  const plain = (name) => vars.get(name);
  const mvVar = vars.has("MULTI_VERSION_VAR") ? expand(vars.get("MULTI_VERSION_VAR"), plain, where).trim() : "";
  const mvValuesRaw = vars.has("MULTI_VERSION_VALUES") ? words(expand(vars.get("MULTI_VERSION_VALUES"), plain, where)) : undefined;
  if (mvVar === "" && mvValuesRaw !== undefined) throw new MakefileError(`${where}: MULTI_VERSION_VALUES needs MULTI_VERSION_VAR`);
  if (mvVar !== "") {
    if (!VARNAME_RE.test(mvVar)) throw new MakefileError(`${where}: MULTI_VERSION_VAR "${mvVar}" is not a variable name`);
    if (mvValuesRaw === undefined || mvValuesRaw.length === 0) throw new MakefileError(`${where}: MULTI_VERSION_VAR needs MULTI_VERSION_VALUES`);
    for (const v of mvValuesRaw) {
      if (!MV_VALUE_RE.test(v)) throw new MakefileError(`${where}: MULTI_VERSION_VALUES entry "${v}" has odd characters`);
    }
    if (new Set(mvValuesRaw).size !== mvValuesRaw.length) throw new MakefileError(`${where}: MULTI_VERSION_VALUES lists a value twice`);
  }
  const variants = mvVar === "" ? [[]] : mvValuesRaw.map((v) => [[mvVar, v]]);
  return variants.map((mv) => recordFor(location, vars, files, mv, where));
}

function recordFor(location, vars, files, mv, where) {
  const bound = new Map(mv);
  const lookup = (name) => (bound.has(name) ? bound.get(name) : vars.get(name));
  const get = (name, fallback = "") => (vars.has(name) ? expand(vars.get(name), lookup, `${where} (${name})`).trim().replace(/\s+/g, " ") : fallback);

  let pkgname = get("PKGNAME", get("DISTNAME"));
  if (pkgname === "") throw new MakefileError(`${where}: neither PKGNAME nor DISTNAME is set`);
  const revision = get("PKGREVISION");
  if (revision !== "" && revision !== "0") {
    if (!/^[0-9]+$/.test(revision)) throw new MakefileError(`${where}: PKGREVISION "${revision}" is not a number`);
    pkgname += `nb${revision}`;
  }
  if (!PKGNAME_RE.test(pkgname)) throw new MakefileError(`${where}: PKGNAME "${pkgname}" is not name-version`);

  const depends = { tool: [], build: [], run: [] };
  for (const [kind, key] of [["tool", "TOOL_DEPENDS"], ["build", "BUILD_DEPENDS"], ["run", "DEPENDS"]]) {
    for (const entry of words(get(key))) {
      const colon = entry.lastIndexOf(":");
      const pattern = colon === -1 ? "" : entry.slice(0, colon);
      const dir = colon === -1 ? "" : entry.slice(colon + 1);
      const depLocation = dir.startsWith("../../") ? dir.slice(6) : "";
      if (pattern === "" || !LOCATION_RE.test(depLocation) || depLocation.includes("..")) {
        throw new MakefileError(`${where}: ${key} entry "${entry}" is not pattern:../../category/package`);
      }
      depends[kind].push({ pattern, location: depLocation });
    }
  }
  const all = [...depends.tool, ...depends.build, ...depends.run];

  const weight = get("PBULK_WEIGHT");
  if (weight !== "" && !/^[0-9]{1,9}$/.test(weight)) throw new MakefileError(`${where}: PBULK_WEIGHT "${weight}" is not a whole number`);

  const multiVersion = mv.map(([k, v]) => `${k}=${v}`).join(" ");
  const fields = new Map([
    ["PKGNAME", pkgname],
    ["PKG_LOCATION", location],
    ["ALL_DEPENDS", all.map((d) => `${d.pattern}:../../${d.location}`).join(" ")],
    ["PKG_SKIP_REASON", get("PKG_SKIP_REASON")],
    ["PKG_FAIL_REASON", get("PKG_FAIL_REASON")],
    ["NO_BIN_ON_FTP", get("NO_BIN_ON_FTP")],
    ["RESTRICTED", get("RESTRICTED")],
    ["CATEGORIES", get("CATEGORIES", location.split("/")[0])],
    ["MAINTAINER", get("MAINTAINER", "pkgsrc-users@NetBSD.org")],
    ["USE_DESTDIR", "user-destdir"],
    ["BOOTSTRAP_PKG", get("BOOTSTRAP_PKG")],
    ["USERGROUP_PHASE", get("USERGROUP_PHASE")],
    ["SCAN_DEPENDS", files.join(" ")],
  ]);
  if (weight !== "") fields.set("PBULK_WEIGHT", weight);
  // pbulk-index.mk prints MULTI_VERSION with a leading space (MULTI_VERSION= PYTHON_VERSION_REQD=313).
  if (mv.length > 0) fields.set("MULTI_VERSION", ` ${multiVersion}`);
  for (const [k, v] of fields) {
    if (/[\r\n]/.test(v)) throw new MakefileError(`${where}: ${k} would span lines`);
  }
  return { fields, pkgname, location, multiVersion: mv, depends, comment: get("COMMENT") };
}

/** formatRecord prints one record as pbulk-index does: KEY=value lines. */
export function formatRecord(record) {
  let out = "";
  for (const [k, v] of record.fields) out += `${k}=${v}\n`;
  return out;
}

/** parseMultiVersion reads "VAR=value VAR2=value2" (as in MULTI_VERSION) into [[VAR, value]]. */
export function parseMultiVersion(text) {
  const pairs = [];
  for (const w of words(text ?? "")) {
    const eq = w.indexOf("=");
    const name = eq === -1 ? "" : w.slice(0, eq);
    const value = eq === -1 ? "" : w.slice(eq + 1);
    if (!VARNAME_RE.test(name) || !MV_VALUE_RE.test(value)) throw new Error(`"${w}" is not VAR=value`);
    pairs.push([name, value]);
  }
  return pairs;
}

// ---- pkg_match, enough for the example tree's patterns -------------------

/** pkgMatch tells whether pkgname (name-version) matches a pkgsrc dependency pattern. */
export function pkgMatch(pattern, pkgname) {
  const brace = /\{([^{}]*)\}/.exec(pattern);
  if (brace) {
    return brace[1].split(",").some((alt) => pkgMatch(pattern.slice(0, brace.index) + alt + pattern.slice(brace.index + brace[0].length), pkgname));
  }
  const dewey = /^([^<>=]+?)(?:(<=|<|>=|>|==?)([^<>=]+))(?:(<=|<)([^<>=]+))?$/.exec(pattern);
  if (dewey && !/[*?[]/.test(dewey[1])) {
    const dash = pkgname.lastIndexOf("-");
    if (dash === -1 || pkgname.slice(0, dash) !== dewey[1]) return false;
    const version = pkgname.slice(dash + 1);
    const ok = (op, v) => {
      const c = compareVersions(version, v);
      return op === ">=" ? c >= 0 : op === ">" ? c > 0 : op === "<=" ? c <= 0 : op === "<" ? c < 0 : c === 0;
    };
    return ok(dewey[2], dewey[3]) && (dewey[4] === undefined || ok(dewey[4], dewey[5]));
  }
  return globToRegExp(pattern).test(pkgname);
}

function globToRegExp(glob) {
  let re = "^";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 1);
      if (end === -1) re += "\\[";
      else {
        re += `[${glob.slice(i + 1, end).replace(/\\/g, "\\\\").replace(/^!/, "^")}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`${re}$`);
}

/** compareVersions compares pkgsrc versions ("1.2.3nb4") component by component. */
export function compareVersions(a, b) {
  const parse = (v) => {
    const m = /^(.*?)(?:nb([0-9]+))?$/.exec(v);
    const parts = (m[1].match(/[0-9]+|[a-z]+/gi) ?? []).map((p) => (/^[0-9]+$/.test(p) ? Number(p) : p));
    return { parts, nb: Number(m[2] ?? 0) };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < Math.max(x.parts.length, y.parts.length); i++) {
    const p = x.parts[i] ?? 0;
    const q = y.parts[i] ?? 0;
    if (p === q) continue;
    if (typeof p === "number" && typeof q === "number") return p < q ? -1 : 1;
    // A letter after a number is a pre-release-ish suffix in dewey order: 1.0a > 1.0.
    return String(p) < String(q) ? -1 : 1;
  }
  return x.nb === y.nb ? 0 : x.nb < y.nb ? -1 : 1;
}
