/**
 * pkg_summary entries, byte for byte as `pkg_info -X` of this tree's
 * pkg_install (20130131, info/show.c show_summary) writes them, because
 * that is what pbulk puts in pkg_summary and what pkgin parses:
 *
 *   1. from +CONTENTS, in packing-list order: @name as PKGNAME=, @pkgdep
 *      as DEPENDS=, @pkgcfl as CONFLICTS= (so CONFLICTS may come first);
 *   2. COMMENT= for each line of +COMMENT; SIZE_PKG= when +SIZE_PKG exists;
 *   3. the +BUILD_INFO lines of PKGPATH, CATEGORIES, PROVIDES, REQUIRES,
 *      PKG_OPTIONS, OPSYS, OS_VERSION, MACHINE_ARCH, LICENSE, HOMEPAGE,
 *      PKGTOOLS_VERSION, BUILD_DATE, PREV_PKGPATH, SUPERSEDES, verbatim and
 *      in the file's order;
 *   4. FILE_NAME= and FILE_SIZE= of the package file (this version prints
 *      no FILE_CKSUM: its code says "XXX: DIGETS");
 *   5. DESCRIPTION= for each line of +DESC, then an empty line.
 */

import { parsePackingList, type BinaryPackageMetadata } from "./binary-package.js";

/** The +BUILD_INFO variables pkg_info -X copies (show.c bi_vars). */
export const SUMMARY_BUILD_INFO_VARS: readonly string[] = [
  "PKGPATH", "CATEGORIES", "PROVIDES", "REQUIRES", "PKG_OPTIONS", "OPSYS", "OS_VERSION", "MACHINE_ARCH",
  "LICENSE", "HOMEPAGE", "PKGTOOLS_VERSION", "BUILD_DATE", "PREV_PKGPATH", "SUPERSEDES",
];
const BUILD_INFO_VARS = new Set(SUMMARY_BUILD_INFO_VARS);

/** The package file an entry describes. */
export interface SummaryFile {
  /** Base name, e.g. "digest-20121220.tgz". */
  readonly fileName: string;
  readonly sizeBytes: number | bigint;
}

/** formatSummaryEntry is `pkg_info -X FILE` for one package, ending with its empty line. */
export function formatSummaryEntry(meta: BinaryPackageMetadata, file: SummaryFile): string {
  const out: string[] = [];
  for (const entry of parsePackingList(meta.contents).entries) {
    if (entry.command === "name") out.push(`PKGNAME=${entry.argument}`);
    else if (entry.command === "pkgdep") out.push(`DEPENDS=${entry.argument}`);
    else if (entry.command === "pkgcfl") out.push(`CONFLICTS=${entry.argument}`);
  }
  asVar(out, "COMMENT", meta.comment);
  if (meta.sizePkg !== undefined) asVar(out, "SIZE_PKG", meta.sizePkg);
  for (const line of (meta.buildInfo ?? "").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0 && BUILD_INFO_VARS.has(line.slice(0, eq))) out.push(line);
  }
  out.push(`FILE_NAME=${file.fileName}`, `FILE_SIZE=${file.sizeBytes}`);
  asVar(out, "DESCRIPTION", meta.desc);
  return `${out.join("\n")}\n\n`;
}

/** print_string_as_var: one VAR= per line; a last line without a newline counts only if not empty. */
function asVar(out: string[], name: string, text: string): void {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) out.push(`${name}=${line}`);
}

/** SummaryEntry is one parsed pkg_summary entry: every VAR=value in order, and the values by name. */
export interface SummaryEntry {
  readonly fields: ReadonlyArray<readonly [string, string]>;
  /** The first value of a variable. */
  get(name: string): string | undefined;
  /** Every value of a variable (DEPENDS, CONFLICTS, REQUIRES, DESCRIPTION ...). */
  all(name: string): string[];
}

/** InvalidSummary: text that is not a pkg_summary (a line without `=`, an entry without PKGNAME). */
export class InvalidSummary extends Error {
  override readonly name = "InvalidSummary";
  constructor(
    readonly line: number,
    readonly problem: string,
  ) {
    super(`pkg_summary line ${line}: ${problem}`);
  }
}

/** parseSummary splits a pkg_summary into entries, as pkgin reads it; every entry must have a PKGNAME. */
export function parseSummary(text: string): SummaryEntry[] {
  const entries: SummaryEntry[] = [];
  let fields: Array<readonly [string, string]> = [];
  let startLine = 1;
  const flush = () => {
    if (fields.length === 0) return;
    const own = fields;
    if (!own.some(([k]) => k === "PKGNAME")) throw new InvalidSummary(startLine, "entry has no PKGNAME");
    entries.push({
      fields: own,
      get: (name) => own.find(([k]) => k === name)?.[1],
      all: (name) => own.filter(([k]) => k === name).map(([, v]) => v),
    });
    fields = [];
  };
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  lines.forEach((line, i) => {
    if (line === "") {
      flush();
      startLine = i + 2;
      return;
    }
    const eq = line.indexOf("=");
    if (eq <= 0) throw new InvalidSummary(i + 1, `${JSON.stringify(line.slice(0, 80))} is not VAR=value`);
    fields.push([line.slice(0, eq), line.slice(eq + 1)]);
  });
  flush();
  return entries;
}
