/**
 * report.txt: pbulk's report.txt (scripts/create-report-txt.awk) with the
 * same sections and column layout, so an operator's eye and grep find what
 * they are used to, plus the failing phase, what each failure blocks, and the
 * changes since the previous build.
 */

import type { DiffEntry, Report, ReportDiff, ReportPackage } from "./model.js";

/** renderText is report.txt's text. */
export function renderText(report: Report, links: { html: string; json: string } = { html: "report.html", json: "report.json" }): string {
  const out: string[] = [];
  const t = report.totals;
  out.push("pkgsrc bulk build report", "========================", "");
  out.push(clean(report.platform), `Build: ${clean(report.buildId)}`, "");
  out.push(`Build start: ${stamp(report.startedAt)}`, `Build end:   ${stamp(report.finishedAt)}`, "");
  out.push(`Full report: ${clean(links.html)}`, `Machine readable version: ${clean(links.json)}`, "");
  const row = (label: string, n: number) => out.push(`${label.padEnd(31)}${String(n).padStart(5)}`);
  row("Total number of packages:", t.packages);
  row("  Successfully built:", t.succeeded);
  if (t.upToDate > 0) row("  Up to date:", t.upToDate);
  row("  Failed to build:", t.failed);
  row("  Depending on failed package:", t.dependingOnFailed);
  row("  Explicitly broken or masked:", t.prefailed);
  row("  Depending on masked package:", t.dependingOnPrefailed);
  if (t.cycle > 0) row("  In a dependency cycle:", t.cycle);
  if (t.cancelled + t.unfinished > 0) row("  Cancelled or not finished:", t.cancelled + t.unfinished);
  out.push("");

  if (report.diff !== undefined) {
    const d = report.diff;
    out.push(...renderDiffLines(`Changes since build ${clean(d.previousBuildId)}`, d, false));
  }

  const rule = "-".repeat(73);
  if (report.topBreakers.length > 0) {
    out.push("Packages breaking the most other packages", "", "Package                               Breaks Maintainer", rule);
    for (const p of report.topBreakers.slice(0, 10)) out.push(`${clean(p.location).padEnd(37)} ${String(p.breaks).padStart(6)} ${clean(p.maintainer ?? "")}`);
    out.push("");
  }

  out.push("Build failures", "", "Package                               Breaks Maintainer", rule);
  for (const p of report.failures) {
    out.push(p.breaks === 0 ? `${clean(p.location).padEnd(44)} ${clean(p.maintainer ?? "")}` : `${clean(p.location).padEnd(37)} ${String(p.breaks).padStart(6)} ${clean(p.maintainer ?? "")}`);
    out.push(...failureDetail(p));
  }
  out.push("");

  const rebuilt = report.packages.filter((p) => p.decision !== undefined && p.decision !== "" && p.decision !== "up to date");
  if (rebuilt.length > 0) {
    out.push("Why packages were rebuilt", "");
    for (const p of rebuilt) out.push(`  ${clean(p.location).padEnd(36)} ${clean(p.pkgname)}: ${clean(p.decision!)}`);
    out.push("");
  }
  return out.join("\n");
}

function failureDetail(p: ReportPackage): string[] {
  const lines = [`    ${clean(p.pkgname)}: ${p.state === "cycle" ? "in a dependency cycle" : `failed in ${clean(p.failedPhase || "an unknown phase")}`}${p.reason ? ` (${clean(p.reason)})` : ""}`];
  const log = p.logs?.find((l) => l.phase === p.failedPhase) ?? p.logs?.[p.logs.length - 1];
  if (log !== undefined) lines.push(`    log: ${clean(log.href)}`);
  if (p.blocks.length > 0) lines.push(...wrapList("    blocks:", p.blocks.map(clean), "            "));
  return lines;
}

/**
 * renderDiffLines words a diff against the previous build as report.txt
 * does: the counts, then the newly failing and fixed packages (and, when
 * asked, those still failing).
 */
export function renderDiffLines(heading: string, d: ReportDiff, withStillFailing: boolean): string[] {
  const out = [`${heading} (ended ${stamp(new Date(d.previousFinishedAt))})`, ""];
  const row = (label: string, n: number) => out.push(`${label.padEnd(31)}${String(n).padStart(5)}`);
  row("  Newly failing:", d.newlyFailing.length);
  row("  Fixed:", d.fixed.length);
  row("  Still failing:", d.stillFailing.length);
  out.push("");
  const list = (title: string, entries: readonly DiffEntry[]) => {
    if (entries.length === 0) return;
    out.push(title, "");
    for (const e of entries) out.push(`  ${clean(e.location).padEnd(36)} ${clean(e.pkgname)}: ${describeDiff(e)}`);
    out.push("");
  };
  list("Newly failing", d.newlyFailing);
  list("Fixed", d.fixed);
  if (withStillFailing) list("Still failing", d.stillFailing);
  return out;
}

export function describeDiff(e: DiffEntry): string {
  const now = e.state === "failed" && e.failedPhase ? `failed in ${e.failedPhase}` : e.state;
  const was = e.previousState === undefined ? "not in the previous build" : `was ${e.previousState}${e.previousPkgname !== e.pkgname ? ` as ${e.previousPkgname}` : ""}`;
  return clean(`${now}, ${was}`);
}

/** Line breaks and control characters in a field would forge report lines. */
function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim();
}

/** first + items joined by spaces, wrapped at width with the next lines indented. */
function wrapList(first: string, items: readonly string[], indent: string, width = 78): string[] {
  const lines: string[] = [];
  let line = first;
  let fresh = true;
  for (const item of items) {
    if (!fresh && line.length + 1 + item.length > width) {
      lines.push(line);
      line = indent + item;
    } else {
      line = `${line} ${item}`;
    }
    fresh = false;
  }
  lines.push(line);
  return lines;
}

/** pbulk's `%Y-%m-%d %H:%M`, in UTC and saying so. */
export function stamp(date: Date): string {
  return Number.isNaN(date.getTime()) ? "unknown" : `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}
