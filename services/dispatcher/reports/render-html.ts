/**
 * report.html: pbulk's report.html (create-report-html.awk) in layout: the
 * totals, "packages causing the most breakage", then every unsuccessful
 * build with its reason, each row linking to the phase logs, the failing
 * phase first. Plus the changes since the previous build and, for
 * incremental builds, why each package was rebuilt.
 *
 * Every string that comes from a package, a scan or a log path is escaped:
 * a PKG_FAIL_REASON is text written by whoever wrote the Makefile, and
 * a report is opened in operators' browsers. Links are made only of
 * relative paths and http(s) URLs, so no `javascript:` ever becomes one.
 */

import type { DiffEntry, Report, ReportPackage } from "./model.js";
import { describeDiff, stamp } from "./render-text.js";

/** escapeHtml makes text safe in element content and in quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** safeHref is the href to use for a log link, or undefined when it must not be a link. */
export function safeHref(href: string): string | undefined {
  if (/[\u0000-\u001f\u007f\\]/.test(href) || href === "") return undefined;
  if (/^https?:\/\/[^/]/i.test(href)) return href;
  // A scheme ("javascript:", "data:"), or "//host": not a relative path.
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(href) || href.startsWith("//")) return undefined;
  return href.split("/").map((part) => encodeURIComponent(part)).join("/");
}

/** renderHtml is report.html's text. */
export function renderHtml(report: Report, links: { text: string; json: string } = { text: "report.txt", json: "report.json" }): string {
  const e = escapeHtml;
  const t = report.totals;
  const out: string[] = [];
  const title = `pkgsrc bulk build for ${report.platform}`;
  out.push(
    "<!DOCTYPE html>",
    "<html>",
    "  <head>",
    '    <meta charset="utf-8" />',
    `    <title>${e(title)} from ${e(stamp(report.startedAt))}</title>`,
    "    <style>",
    "      table { border-collapse: collapse; } td, th { padding: 0.1em 0.6em; text-align: left; vertical-align: top; }",
    "      tr.failed { background: #fcc; } tr.indirect-failed { background: #fec; } tr.prefailed { background: #eee; }",
    "      tr.cycle { background: #fcf; } tr.fixed, tr.succeeded, tr.up-to-date { background: #cfc; } td.n { text-align: right; }",
    "    </style>",
    "  </head>",
    "  <body>",
    `    <h1>${e(title)}</h1>`,
    `    <p>Build ${e(report.buildId)}; <a href="${e(safeHref(links.text) ?? "")}">plain text</a>, <a href="${e(safeHref(links.json) ?? "")}">machine readable</a></p>`,
    `    <h2>Build start: ${e(stamp(report.startedAt))}</h2>`,
    `    <h2>Build end: ${e(stamp(report.finishedAt))}</h2>`,
    "    <hr />",
    "    <table>",
  );
  const total = (label: string, n: number) => out.push(`      <tr><td>${e(label)}</td><td class="n">${n}</td></tr>`);
  total("Total number of packages:", t.packages);
  total("Successfully built:", t.succeeded);
  if (t.upToDate > 0) total("Up to date:", t.upToDate);
  total("Failed build:", t.failed);
  total("Depending on failed package:", t.dependingOnFailed);
  total("Explicitly broken or masked:", t.prefailed);
  total("Depending on masked package:", t.dependingOnPrefailed);
  if (t.cycle > 0) total("In a dependency cycle:", t.cycle);
  if (t.cancelled + t.unfinished > 0) total("Cancelled or not finished:", t.cancelled + t.unfinished);
  out.push("    </table>", "    <hr />");

  if (report.diff !== undefined) {
    const d = report.diff;
    out.push(`    <h2>Changes since build ${e(d.previousBuildId)} (ended ${e(stamp(new Date(d.previousFinishedAt)))})</h2>`);
    out.push("    <table>");
    total("Newly failing:", d.newlyFailing.length);
    total("Fixed:", d.fixed.length);
    total("Still failing:", d.stillFailing.length);
    out.push("    </table>");
    diffTable(out, "Newly failing", d.newlyFailing, false);
    diffTable(out, "Fixed", d.fixed, false);
    diffTable(out, "Still failing", d.stillFailing, true);
    out.push("    <hr />");
  }

  if (report.topBreakers.length > 0) {
    out.push("    <h2>Packages causing the most breakage</h2>");
    packageTable(out, report.topBreakers, false);
    out.push("    <hr />");
  }
  out.push("    <h2>All unsuccessful builds</h2>");
  packageTable(out, report.unsuccessful, true);

  const rebuilt = report.packages.filter((p) => p.decision !== undefined && p.decision !== "" && p.decision !== "up to date");
  if (rebuilt.length > 0) {
    out.push("    <hr />", "    <h2>Why packages were rebuilt</h2>", "    <table>", "      <tr><th>Location</th><th>Package</th><th>Decision</th><th>State</th></tr>");
    for (const p of rebuilt) {
      out.push(`      <tr class="${e(p.state)}"><td>${e(p.location)}</td><td>${e(p.pkgname)}</td><td>${e(p.decision!)}</td><td>${e(p.state)}</td></tr>`);
    }
    out.push("    </table>");
  }
  out.push("  </body>", "</html>", "");
  return out.join("\n");
}

function packageTable(out: string[], packages: readonly ReportPackage[], withReasons: boolean): void {
  const e = escapeHtml;
  out.push(
    "    <table>",
    "      <tr><th>Location</th><th>Package</th><th>Breaks</th><th>Maintainer</th><th>Status</th><th>Failed phase</th><th>Build log</th></tr>",
  );
  for (const p of packages) {
    const cls = e(p.state);
    const failing = p.logs?.find((l) => l.phase === p.failedPhase);
    const failingHref = failing === undefined ? undefined : safeHref(failing.href);
    const location = failingHref === undefined ? e(p.location) : `<a href="${e(failingHref)}">${e(p.location)}</a>`;
    const logs = (p.logs ?? [])
      .map((l) => {
        const href = safeHref(l.href);
        const label = l.phase === p.failedPhase ? `<strong>${e(l.phase)}</strong>` : e(l.phase);
        return href === undefined ? label : `<a href="${e(href)}">${label}</a>`;
      })
      .join(" ");
    out.push(
      `      <tr class="${cls}"><td>${location}</td><td>${e(p.pkgname)}</td><td class="n">${p.breaks === 0 ? "" : p.breaks}</td>` +
        `<td>${e(p.maintainer ?? "")}</td><td>${e(p.state)}</td><td>${e(p.failedPhase ?? "")}</td><td>${logs}</td></tr>`,
    );
    if (!withReasons) continue;
    const notes: string[] = [];
    if (p.state === "indirect-failed" && p.blockedBy) notes.push(`Failed: ${e(p.blockedBy)}`);
    if (p.reason) notes.push(e(p.reason));
    if (p.blocks.length > 0) notes.push(`Blocks: ${p.blocks.map(e).join(" ")}`);
    if (notes.length > 0) out.push(`      <tr class="${cls}"><td></td><td colspan="6">${notes.join("<br />")}</td></tr>`);
  }
  out.push("    </table>");
}

function diffTable(out: string[], title: string, entries: readonly DiffEntry[], collapsed: boolean): void {
  if (entries.length === 0) return;
  const e = escapeHtml;
  out.push(collapsed ? `    <details><summary>${e(title)} (${entries.length})</summary>` : `    <h3>${e(title)}</h3>`);
  out.push("    <table>", "      <tr><th>Location</th><th>Package</th><th>Now and before</th></tr>");
  for (const d of entries) {
    out.push(`      <tr class="${title === "Fixed" ? "fixed" : e(d.state)}"><td>${e(d.location)}</td><td>${e(d.pkgname)}</td><td>${e(describeDiff(d))}</td></tr>`);
  }
  out.push("    </table>");
  if (collapsed) out.push("    </details>");
}
