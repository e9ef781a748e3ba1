import { Buffer } from "node:buffer";
import { InvalidScanRecord } from "./errors.js";
import { quote } from "../../shared/quote.js";

/** DependencyPattern is one ALL_DEPENDS entry: a pattern and where to find it. */
export interface DependencyPattern {
  /** pkg_match pattern, e.g. "gmake>=3.81" or "{py313-foo,py313-bar}-[0-9]*". */
  readonly pattern: string;
  /** Location the dependency is built from, e.g. "devel/gmake". */
  readonly location: string;
}

/**
 * ScanVars are the keys of a record pkgfarm does not model itself, as printed
 * (USE_DESTDIR, BOOTSTRAP_PKG, USERGROUP_PHASE, NO_BIN_ON_FTP, RESTRICTED,
 * PKGREVISION ...): a build needs them, and a scan must not lose them.
 * Records with the same set share one frozen object (see internVars).
 */
export type ScanVars = Readonly<Record<string, string>>;

export const NO_SCAN_VARS: ScanVars = Object.freeze({});

/**
 * ScanRecord is what `bmake pbulk-index` says about one package. The keys
 * pkgfarm uses have fields; every other key is kept in vars. SCAN_DEPENDS
 * stays one string because it is most of the scan's bytes and is only split
 * when a tree file changes.
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
  /** Every other key the scan printed, value as printed. */
  readonly vars: ScanVars;
  /** Line of the input where the record starts. */
  readonly line: number;
}

export const DEFAULT_PBULK_WEIGHT = 100;

/** Longest line the parser takes by default; the longest in a full pkgsrc scan is about 19 KB. */
export const DEFAULT_MAX_LINE_BYTES = 1 << 20;
/** Most keys one record may have; pbulk-index prints 15. */
export const MAX_KEYS_PER_RECORD = 256;

const LF = 0x0a;
const EQUALS = 0x3d;
const LOCATION_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._+-]*\/[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const PKGNAME_SHAPE = /^[^\s/]+-[0-9][^\s/]*$/;
const KEY_SHAPE = /^[A-Z][A-Z0-9_]*$/;
const KEPT_KEYS = new Set([
  "PKGNAME", "PKG_LOCATION", "ALL_DEPENDS", "PKG_FAIL_REASON", "PKG_SKIP_REASON", "MULTI_VERSION",
  "SCAN_DEPENDS", "PBULK_WEIGHT", "CATEGORIES", "MAINTAINER", "DEPENDS",
]);
/**
 * Keys pbulk-index prints for every package (pkgsrc mk/pbulk/pbulk-index.mk),
 * PKG_LOCATION added by pbulk's scanner. The last record of an input that
 * lacks one of these although every earlier record had it was cut off.
 */
const ALWAYS_PRINTED = [
  "PKG_LOCATION", "ALL_DEPENDS", "PKG_SKIP_REASON", "PKG_FAIL_REASON", "NO_BIN_ON_FTP", "RESTRICTED",
  "CATEGORIES", "MAINTAINER", "USE_DESTDIR", "BOOTSTRAP_PKG", "USERGROUP_PHASE", "SCAN_DEPENDS",
];

/** Longest location or PKGNAME taken: each becomes a file name (logs, packages), and 255 bytes is the usual limit. */
const MAX_NAME_LENGTH = 240;

/** isValidLocation tells whether s looks like a pkgsrc location ("category/package"). */
export function isValidLocation(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && LOCATION_SHAPE.test(s);
}

/** isValidPkgname tells whether s looks like a PKGNAME ("name-version"). */
export function isValidPkgname(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && PKGNAME_SHAPE.test(s);
}

/**
 * ScanRecordParser reads pbulk-index text pushed in chunks of any size.
 * A bad record is reported through onProblem and dropped; parsing goes on at
 * the next PKGNAME= line, so one broken package never loses the rest. Nothing
 * is merged silently: a key given twice, lines with no PKGNAME= line before
 * them, a PKG_LOCATION= that follows another record's, a line over the
 * limit and a record the input ends inside of are each reported with the
 * line and location.
 */
export interface ScanRecordParser {
  push(chunk: string | Uint8Array): void;
  /** Flushes the last record; the parser takes no more input after it. */
  end(): void;
}

export interface ScanRecordParserOptions {
  /** Longest line taken (bytes, newline not counted); longer ones are reported and skipped, never buffered whole. */
  readonly maxLineBytes?: number;
}

interface RecordUnderConstruction {
  /** A run of lines that no PKGNAME= line opened: reported, never taken. */
  readonly orphan: boolean;
  line: number;
  lastLine: number;
  /** Values by key, and the line each came from. */
  readonly fields: Map<string, string>;
  readonly lines: Map<string, number>;
  problem: string | undefined;
  /** The input ends inside this record. */
  cutOff?: boolean;
}

export function createScanRecordParser(
  onRecord: (record: ScanRecord) => void,
  onProblem: (problem: InvalidScanRecord) => void,
  options: ScanRecordParserOptions = {},
): ScanRecordParser {
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  let carry: Buffer | undefined;
  let lineNumber = 0;
  let current: RecordUnderConstruction | undefined;
  let ended = false;
  /** Set while the rest of an over-long line is thrown away. */
  let longLine: { head: string; bytes: number } | undefined;
  /** ALWAYS_PRINTED keys every record so far had; undefined before the first record. */
  let everyRecordHad: Set<string> | undefined;

  const open = (orphan: boolean, problem?: string): RecordUnderConstruction =>
    (current = { orphan, line: lineNumber, lastLine: lineNumber, fields: new Map(), lines: new Map(), problem });

  const finishRecord = (last: boolean): void => {
    if (current === undefined) return;
    const building = current;
    current = undefined;
    if (building.orphan) {
      const location = building.fields.get("PKG_LOCATION") ?? "";
      const span = building.lastLine > building.line ? ` (lines ${building.line}-${building.lastLine} skipped)` : "";
      onProblem(new InvalidScanRecord(building.line, location, "", building.problem! + span, building.cutOff));
      return;
    }
    if (last && everyRecordHad !== undefined && building.problem === undefined) {
      const missing = [...everyRecordHad].filter((key) => !building.fields.has(key));
      if (missing.length > 0) {
        building.cutOff = true;
        building.problem = `the input ends inside this record, which has no ${missing.map((k) => `${k}=`).join(", ")} line although every record before it has: the input was cut off`;
      }
    }
    const had = new Set(ALWAYS_PRINTED.filter((key) => building.fields.has(key)));
    everyRecordHad = everyRecordHad === undefined ? had : new Set([...everyRecordHad].filter((key) => had.has(key)));
    const result = toScanRecord(building);
    if (result instanceof InvalidScanRecord) onProblem(result);
    else onRecord(result);
  };

  /** Where a line goes that no record claims: a new orphan run, or the one already open. */
  const orphanLine = (problem: string): RecordUnderConstruction => current ?? open(true, problem);

  const takeLine = (buf: Buffer, start: number, end: number): void => {
    lineNumber++;
    if (end > start && buf[end - 1] === 0x0d) end--;
    if (end === start) return;
    const eq = buf.indexOf(EQUALS, start);
    const key = eq === -1 || eq >= end ? undefined : buf.toString("latin1", start, Math.min(eq, start + 100));
    if (key === undefined || !KEY_SHAPE.test(key)) {
      const problem = `line ${lineNumber}: not a KEY=value line: ${quote(buf.toString("utf8", start, Math.min(end, start + 60)), 60)}`;
      const into = orphanLine(problem);
      into.problem ??= problem;
      into.lastLine = lineNumber;
      return;
    }
    let into: RecordUnderConstruction;
    if (key === "PKGNAME") {
      finishRecord(false);
      into = open(false);
    } else if (current === undefined) {
      into = open(true, `${key}= (line ${lineNumber}) comes before any PKGNAME= line: the record's PKGNAME= line is missing`);
    } else if (key === "PKG_LOCATION" && current.fields.has(key)) {
      // pbulk puts PKG_LOCATION right after PKGNAME, so a second one is the
      // start of a record whose PKGNAME= line is missing; the record before
      // it is complete and taken on its own merits.
      const before = current;
      finishRecord(false);
      into = open(true, `PKG_LOCATION= (line ${lineNumber}) follows the PKG_LOCATION= of ${before.fields.get("PKGNAME") ?? "the record"} (line ${before.lines.get("PKG_LOCATION")}) with no PKGNAME= line between: this record's PKGNAME= line is missing`);
    } else {
      into = current;
      const first = into.lines.get(key);
      if (first !== undefined) into.problem ??= `${key}= is given twice in one record (lines ${first} and ${lineNumber}): a PKGNAME= line is missing, or the record is garbled`;
    }
    into.lastLine = lineNumber;
    if (into.fields.has(key)) return;
    if (into.fields.size >= MAX_KEYS_PER_RECORD) {
      into.problem ??= `the record has more than ${MAX_KEYS_PER_RECORD} keys (line ${lineNumber})`;
      return;
    }
    // Decoding copies, so no kept field pins the whole input chunk in memory.
    const raw = buf.toString("utf8", eq + 1, end);
    into.fields.set(key, KEPT_KEYS.has(key) ? raw.trim() : raw);
    into.lines.set(key, lineNumber);
  };

  /** An over-long line ends: it is reported on its record (a PKGNAME= one starts the record it spoils). */
  const takeLongLine = (): void => {
    const { head, bytes } = longLine!;
    longLine = undefined;
    lineNumber++;
    const eq = head.indexOf("=");
    const key = eq === -1 ? "" : head.slice(0, eq);
    const what = KEY_SHAPE.test(key) ? `the ${key}= line` : "the line";
    const problem = `line ${lineNumber}: ${what} is ${bytes} bytes long, over the limit of ${maxLineBytes}`;
    let into: RecordUnderConstruction;
    if (key === "PKGNAME") {
      finishRecord(false);
      into = open(false, problem);
    } else {
      into = orphanLine(problem);
    }
    into.problem ??= problem;
    into.lastLine = lineNumber;
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
        if (longLine !== undefined) {
          longLine.bytes += (nl === -1 ? buf.length : nl) - start;
          if (nl === -1) return;
          takeLongLine();
        } else if (nl === -1) {
          break;
        } else if (nl - start > maxLineBytes) {
          longLine = { head: buf.toString("latin1", start, start + 100), bytes: nl - start };
          takeLongLine();
        } else {
          takeLine(buf, start, nl);
        }
        start = nl + 1;
      }
      const rest = buf.length - start;
      if (rest > maxLineBytes) longLine = { head: buf.toString("latin1", start, start + 100), bytes: rest };
      else if (rest > 0) carry = Buffer.from(buf.subarray(start));
    },
    end() {
      if (ended) return;
      ended = true;
      let cutLine: number | undefined;
      if (longLine !== undefined) {
        takeLongLine();
        cutLine = lineNumber;
      } else if (carry !== undefined) {
        const last = carry;
        carry = undefined;
        takeLine(last, 0, last.length);
        cutLine = lineNumber;
      }
      // Said over any other problem: whatever else is wrong with the last
      // line (half a key, say) is because it was cut.
      if (cutLine !== undefined && current !== undefined) {
        current.cutOff = true;
        current.problem = `the input ends in the middle of line ${cutLine} (no newline after it): the record was cut off`;
      }
      finishRecord(true);
    },
  };
}

function toScanRecord(building: RecordUnderConstruction): ScanRecord | InvalidScanRecord {
  const { fields, line } = building;
  const pkgname = fields.get("PKGNAME") ?? "";
  const location = fields.get("PKG_LOCATION") ?? "";
  const invalid = (problem: string) => new InvalidScanRecord(line, location, pkgname, problem, building.cutOff);
  if (building.problem !== undefined) return invalid(building.problem);
  if (!isValidPkgname(pkgname)) return invalid(`PKGNAME ${quote(pkgname)} is not name-version`);
  if (location === "") return invalid(`record for ${pkgname} has no PKG_LOCATION`);
  if (!isValidLocation(location)) return invalid(`PKG_LOCATION ${quote(location)} is not category/package`);

  const dependencies: DependencyPattern[] = [];
  for (const entry of splitWords(fields.get("ALL_DEPENDS") ?? "")) {
    const colon = entry.lastIndexOf(":");
    const dir = colon === -1 ? "" : entry.slice(colon + 1);
    const depLocation = dir.startsWith("../../") ? dir.slice(6) : "";
    const pattern = colon === -1 ? "" : entry.slice(0, colon);
    if (pattern === "" || !isValidLocation(depLocation)) {
      return invalid(`ALL_DEPENDS entry ${quote(entry)} is not pattern:../../category/package`);
    }
    dependencies.push({ pattern, location: depLocation });
  }

  let pbulkWeight = DEFAULT_PBULK_WEIGHT;
  const weight = fields.get("PBULK_WEIGHT");
  if (weight !== undefined && weight !== "") {
    if (!/^[0-9]{1,9}$/.test(weight)) return invalid(`PBULK_WEIGHT ${quote(weight)} is not a whole number`);
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
    vars: varsOf(fields),
    line,
  };
}

function varsOf(fields: ReadonlyMap<string, string>): ScanVars {
  const entries: [string, string][] = [];
  for (const [key, value] of fields) if (!KEPT_KEYS.has(key)) entries.push([key, value]);
  return internVars(entries);
}

/**
 * Nearly every record of a tree has the same vars (USE_DESTDIR=user-destdir
 * and four empty ones), so one frozen object per distinct set is kept and
 * shared: the 29,022 records of the shared scan have 104 distinct sets, not 29,022 objects. The
 * table is bounded, so hostile input cannot grow it without end; past the
 * bound, records get objects of their own.
 */
const VARS_TABLE_LIMIT = 4096;
const varsTable = new Map<string, ScanVars>();

function internVars(entries: readonly (readonly [string, string])[]): ScanVars {
  if (entries.length === 0) return NO_SCAN_VARS;
  const id = entries.map(([k, v]) => `${k}=${v}`).join("\n");
  const known = varsTable.get(id);
  if (known !== undefined) return known;
  const vars: ScanVars = Object.freeze(Object.fromEntries(entries));
  if (id.length <= 4096 && varsTable.size < VARS_TABLE_LIMIT) varsTable.set(id, vars);
  return vars;
}

/** scanVars makes the vars of a record from key/value pairs (e.g. read back from the wire), shared as the parser shares them. */
export function scanVars(entries: Iterable<readonly [string, string]>): ScanVars {
  return internVars([...entries].filter(([key]) => !KEPT_KEYS.has(key)));
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
  // Only keys the parser would take back as vars: a var that collides with a
  // modelled key, or is no KEY, would print a second (or garbled) line.
  for (const [key, value] of Object.entries(record.vars)) {
    if (KEY_SHAPE.test(key) && !KEPT_KEYS.has(key) && !value.includes("\n")) lines.push(`${key}=${value}`);
  }
  return lines.join("\n") + "\n";
}
