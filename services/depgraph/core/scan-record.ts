import { Buffer } from "node:buffer";
import { InvalidScanRecord } from "./errors.js";

/** DependencyPattern is one ALL_DEPENDS entry: a pattern and where to find it. */
export interface DependencyPattern {
  /** pkg_match pattern, e.g. "gmake>=3.81" or "{py313-foo,py313-bar}-[0-9]*". */
  readonly pattern: string;
  /** Location the dependency is built from, e.g. "devel/gmake". */
  readonly location: string;
}

/**
 * ScanRecord is what `bmake pbulk-index` says about one package. Only the keys
 * pkgfarm uses are kept; SCAN_DEPENDS stays one string because it is most of
 * the scan's bytes and is only split when a tree file changes.
 */
export interface ScanRecord {
  readonly pkgname: string;
  readonly location: string;
  readonly dependencies: readonly DependencyPattern[];
  readonly failReason: string;
  readonly skipReason: string;
  /** MULTI_VERSION settings, e.g. "PYTHON_VERSION_REQD=313"; "" for none. */
  readonly multiVersion: string;
  /** SCAN_DEPENDS, space separated, as scanned. */
  readonly scanDepends: string;
  /** PBULK_WEIGHT; 100 where the record has none, as pbulk assumes. */
  readonly pbulkWeight: number;
  readonly categories: readonly string[];
  readonly maintainer: string;
  /** pbulk's own resolution (DEPENDS), when the input is a resolved scan. */
  readonly resolvedByPbulk: readonly string[] | undefined;
  /** Line of the input where the record starts. */
  readonly line: number;
}

export const DEFAULT_PBULK_WEIGHT = 100;

const LF = 0x0a;
const EQUALS = 0x3d;
const LOCATION_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._+-]*\/[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const PKGNAME_SHAPE = /^[^\s/]+-[0-9][^\s/]*$/;
const KEY_SHAPE = /^[A-Z][A-Z0-9_]*$/;
const KEPT_KEYS = new Set([
  "PKGNAME", "PKG_LOCATION", "ALL_DEPENDS", "PKG_FAIL_REASON", "PKG_SKIP_REASON", "MULTI_VERSION",
  "SCAN_DEPENDS", "PBULK_WEIGHT", "CATEGORIES", "MAINTAINER", "DEPENDS",
]);

/** isValidLocation tells whether s looks like a pkgsrc location ("category/package"). */
export function isValidLocation(s: string): boolean {
  return LOCATION_SHAPE.test(s);
}

/** isValidPkgname tells whether s looks like a PKGNAME ("name-version"). */
export function isValidPkgname(s: string): boolean {
  return PKGNAME_SHAPE.test(s);
}

/**
 * ScanRecordParser reads pbulk-index text pushed in chunks of any size.
 * A bad record is reported through onProblem and dropped; parsing goes on at
 * the next PKGNAME= line, so one broken package never loses the rest.
 */
export interface ScanRecordParser {
  push(chunk: string | Uint8Array): void;
  /** Flushes the last record; the parser takes no more input after it. */
  end(): void;
}

interface RecordUnderConstruction {
  line: number;
  fields: Map<string, string>;
  problem: string | undefined;
}

export function createScanRecordParser(
  onRecord: (record: ScanRecord) => void,
  onProblem: (problem: InvalidScanRecord) => void,
): ScanRecordParser {
  let carry: Buffer | undefined;
  let lineNumber = 0;
  let current: RecordUnderConstruction | undefined;
  let ended = false;

  const finishRecord = (): void => {
    if (current === undefined) return;
    const building = current;
    current = undefined;
    const result = toScanRecord(building);
    if (result instanceof InvalidScanRecord) onProblem(result);
    else onRecord(result);
  };

  const takeLine = (buf: Buffer, start: number, end: number): void => {
    lineNumber++;
    if (end > start && buf[end - 1] === 0x0d) end--;
    if (end === start) return;
    const eq = buf.indexOf(EQUALS, start);
    const key = eq === -1 || eq >= end ? undefined : buf.toString("latin1", start, eq);
    if (key === undefined || !KEY_SHAPE.test(key)) {
      const text = buf.toString("utf8", start, Math.min(end, start + 60));
      const problem = `not a KEY=value line: "${text}"`;
      if (current !== undefined) current.problem ??= `line ${lineNumber}: ${problem}`;
      else onProblem(new InvalidScanRecord(lineNumber, "", "", problem));
      return;
    }
    if (key === "PKGNAME") {
      finishRecord();
      current = { line: lineNumber, fields: new Map(), problem: undefined };
    } else if (current === undefined) {
      onProblem(new InvalidScanRecord(lineNumber, "", "", `${key}= before any PKGNAME= line`));
      return;
    }
    // Decoding copies, so no kept field pins the whole input chunk in memory.
    if (KEPT_KEYS.has(key)) current.fields.set(key, buf.toString("utf8", eq + 1, end).trim());
  };

  return {
    push(chunk) {
      if (ended) throw new Error("scan record parser: push after end");
      let buf = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (carry !== undefined) {
        buf = Buffer.concat([carry, buf]);
        carry = undefined;
      }
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(LF, start);
        if (nl === -1) break;
        takeLine(buf, start, nl);
        start = nl + 1;
      }
      if (start < buf.length) carry = Buffer.from(buf.subarray(start));
    },
    end() {
      if (ended) return;
      ended = true;
      if (carry !== undefined) {
        const last = carry;
        carry = undefined;
        takeLine(last, 0, last.length);
      }
      finishRecord();
    },
  };
}

function toScanRecord(building: RecordUnderConstruction): ScanRecord | InvalidScanRecord {
  const { fields, line } = building;
  const pkgname = fields.get("PKGNAME") ?? "";
  const location = fields.get("PKG_LOCATION") ?? "";
  const invalid = (problem: string) => new InvalidScanRecord(line, location, pkgname, problem);
  if (building.problem !== undefined) return invalid(building.problem);
  if (!isValidPkgname(pkgname)) return invalid(`PKGNAME "${pkgname}" is not name-version`);
  if (location === "") return invalid(`record for ${pkgname} has no PKG_LOCATION`);
  if (!isValidLocation(location)) return invalid(`PKG_LOCATION "${location}" is not category/package`);

  const dependencies: DependencyPattern[] = [];
  for (const entry of splitWords(fields.get("ALL_DEPENDS") ?? "")) {
    const colon = entry.lastIndexOf(":");
    const dir = colon === -1 ? "" : entry.slice(colon + 1);
    const depLocation = dir.startsWith("../../") ? dir.slice(6) : "";
    const pattern = colon === -1 ? "" : entry.slice(0, colon);
    if (pattern === "" || !isValidLocation(depLocation)) {
      return invalid(`ALL_DEPENDS entry "${entry}" is not pattern:../../category/package`);
    }
    dependencies.push({ pattern, location: depLocation });
  }

  let pbulkWeight = DEFAULT_PBULK_WEIGHT;
  const weight = fields.get("PBULK_WEIGHT");
  if (weight !== undefined && weight !== "") {
    if (!/^[0-9]{1,9}$/.test(weight)) return invalid(`PBULK_WEIGHT "${weight}" is not a whole number`);
    pbulkWeight = Number(weight);
  }

  const depends = fields.get("DEPENDS");
  return {
    pkgname,
    location,
    dependencies,
    failReason: unquote(fields.get("PKG_FAIL_REASON") ?? ""),
    skipReason: unquote(fields.get("PKG_SKIP_REASON") ?? ""),
    multiVersion: fields.get("MULTI_VERSION") ?? "",
    scanDepends: fields.get("SCAN_DEPENDS") ?? "",
    pbulkWeight,
    categories: splitWords(fields.get("CATEGORIES") ?? ""),
    maintainer: fields.get("MAINTAINER") ?? "",
    resolvedByPbulk: depends === undefined ? undefined : splitWords(depends),
    line,
  };
}

function splitWords(s: string): string[] {
  return s === "" ? [] : s.split(/\s+/).filter((w) => w !== "");
}

// pbulk-index prints make variables as given; fail reasons usually arrive
// wrapped in one pair of double quotes that is not part of the message.
function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
}

/** formatScanRecord prints a record back as pbulk-index text, for publishers and tests. */
export function formatScanRecord(record: ScanRecord): string {
  const lines = [
    `PKGNAME=${record.pkgname}`,
    `PKG_LOCATION=${record.location}`,
    `ALL_DEPENDS=${record.dependencies.map((d) => `${d.pattern}:../../${d.location}`).join(" ")}`,
    `PKG_SKIP_REASON=${record.skipReason}`,
    `PKG_FAIL_REASON=${record.failReason}`,
    `CATEGORIES=${record.categories.join(" ")}`,
    `MAINTAINER=${record.maintainer}`,
    `SCAN_DEPENDS=${record.scanDepends}`,
  ];
  if (record.multiVersion !== "") lines.push(`MULTI_VERSION=${record.multiVersion}`);
  if (record.pbulkWeight !== DEFAULT_PBULK_WEIGHT) lines.push(`PBULK_WEIGHT=${record.pbulkWeight}`);
  if (record.resolvedByPbulk !== undefined) lines.push(`DEPENDS=${record.resolvedByPbulk.join(" ")}`);
  return lines.join("\n") + "\n";
}
