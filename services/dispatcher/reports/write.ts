/**
 * Writing a build's reports into its directory, and finding the previous
 * report of the same platform to diff against. Each file is written under a
 * temp name and renamed into place, so a reader (a web server, the next
 * build's diff) never sees half a report.
 */

import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { buildReport, type FinishedBuild, type PreviousReport, type Report } from "./model.js";
import { renderHtml } from "./render-html.js";
import { InvalidReport, parseReportJson, renderJson } from "./report-json.js";
import { renderText } from "./render-text.js";

export interface WriteReportsOptions {
  /** The build's report directory, e.g. `<data-dir>/reports/<build>`; created if missing. */
  readonly dir: string;
  readonly build: FinishedBuild;
  /** The previous finished build's report of the same platform (see findPreviousReport). */
  readonly previous?: PreviousReport;
}

export interface WrittenReports {
  readonly report: Report;
  /** Absolute paths of the three files. */
  readonly text: string;
  readonly html: string;
  readonly json: string;
}

/** writeReports renders and writes report.txt, report.html and report.json. */
export async function writeReports(options: WriteReportsOptions): Promise<WrittenReports> {
  const dir = path.resolve(options.dir);
  const report = buildReport(options.build, options.previous);
  await mkdir(dir, { recursive: true });
  const files = {
    text: path.join(dir, "report.txt"),
    html: path.join(dir, "report.html"),
    json: path.join(dir, "report.json"),
  };
  // JSON last: findPreviousReport looks for it, so a report.json means the
  // other two are there too.
  await writeAtomically(files.text, renderText(report));
  await writeAtomically(files.html, renderHtml(report));
  await writeAtomically(files.json, renderJson(report));
  return { report, ...files };
}

export interface FindPreviousReportOptions {
  /** The directory holding one directory per build (`<data-dir>/reports`). */
  readonly reportsRoot: string;
  readonly platform: string;
  /** The build being reported, which is not its own previous build. */
  readonly buildId: string;
  /** Only reports of builds that ended before this. */
  readonly finishedBefore: Date;
}

export interface FoundPreviousReport {
  /** The newest matching report, or undefined. */
  readonly previous: (PreviousReport & { readonly path: string }) | undefined;
  /** report.json files that could not be read, with why; they were passed over. */
  readonly unreadable: ReadonlyArray<{ readonly path: string; readonly problem: string }>;
}

/**
 * findPreviousReport picks, among `<reportsRoot>/<build>/report.json`, the
 * one of the same platform that ended last before this build. A damaged
 * report is passed over (and listed), never fatal: it must not stop the
 * new report from being written.
 */
export async function findPreviousReport(options: FindPreviousReportOptions): Promise<FoundPreviousReport> {
  let names: string[];
  try {
    names = await readdir(options.reportsRoot);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { previous: undefined, unreadable: [] };
    throw error;
  }
  const unreadable: Array<{ path: string; problem: string }> = [];
  let best: (PreviousReport & { path: string; ended: number }) | undefined;
  for (const name of names.sort()) {
    const file = path.join(options.reportsRoot, name, "report.json");
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") continue;
      unreadable.push({ path: file, problem: (error as Error).message });
      continue;
    }
    let parsed;
    try {
      parsed = parseReportJson(text, file);
    } catch (error) {
      if (!(error instanceof InvalidReport)) throw error;
      unreadable.push({ path: file, problem: error.problem });
      continue;
    }
    const ended = Date.parse(parsed.finishedAt);
    if (parsed.platform !== options.platform || parsed.buildId === options.buildId) continue;
    if (!(ended < options.finishedBefore.getTime())) continue;
    if (best === undefined || ended > best.ended) best = { ...parsed, path: file, ended };
  }
  if (best === undefined) return { previous: undefined, unreadable };
  const { ended: _ended, ...previous } = best;
  return { previous, unreadable };
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString("hex")}`);
  const handle = await open(temp, "wx", 0o644);
  try {
    await handle.writeFile(text, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}
