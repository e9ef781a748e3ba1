// Reports of a finished build, from the real outcome of pbulk's build of the
// limited list (expected/outcomes.tsv) and checked against pbulk's own
// report of it (expected/pbulk-report/); the diff with a previous build; the
// HTML escaping, checked with a real HTML parser.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import {
  buildReport,
  findPreviousReport,
  InvalidReport,
  parseReportJson,
  renderHtml,
  renderJson,
  renderText,
  safeHref,
  writeReports,
  type FinishedBuild,
  type ReportPackageInput,
  type ReportState,
} from "../../services/dispatcher/reports/index.js";
import { EXPECTED_DIR } from "../support/pkgsrc.js";

const PHASES = ["pre-clean", "depends", "checksum", "configure", "build", "install", "package", "test-install", "clean"];
const PLATFORM = "Linux-6.18.44-x86_64";
const scratch = mkdtempSync(path.join(tmpdir(), "pkgfarm-reports-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Maintainers as pbulk's report.html shows them, by PKGNAME, with its Breaks column. */
function pbulkHtmlRows(): Map<string, { location: string; breaks: number; maintainer: string; status: string }> {
  const html = readFileSync(path.join(EXPECTED_DIR, "pbulk-report/report.html"), "utf8");
  const all = html.slice(html.indexOf("All unsuccessful builds"));
  const rows = new Map<string, { location: string; breaks: number; maintainer: string; status: string }>();
  for (const m of all.matchAll(/<tr class="[^"]+">\n<td>(?:<a [^>]*>)?\s*([^<]+?)(?:<\/a>)?<\/td>\n<td>([^<]+)<\/td>\n(?:<td>(\d+|&nbsp;)<\/td>\n)?<td>([^<]*)<\/td>\n<td>([^<]+)<\/td>/g)) {
    rows.set(m[2]!, { location: m[1]!, breaks: m[3] === undefined || m[3] === "&nbsp;" ? 0 : Number(m[3]), maintainer: m[4]!, status: m[5]! });
  }
  return rows;
}

/** The finished build pbulk ran, as pkgfarm's report input: outcomes.tsv plus maintainers from pbulk's report. */
function pbulkBuild(): FinishedBuild {
  const rows = pbulkHtmlRows();
  const lines = readFileSync(path.join(EXPECTED_DIR, "outcomes.tsv"), "utf8").trim().split("\n").slice(1);
  const parsed = lines.map((l) => {
    const [pkgname, location, , state, failedPhase, depends] = l.split("\t");
    return { pkgname: pkgname!, location: location!, state: state as ReportState, failedPhase: failedPhase ?? "", dependencies: (depends ?? "").split(" ").filter((d) => d !== "") };
  });
  const byName = new Map(parsed.map((p) => [p.pkgname, p]));
  // blocked_by: the first failed or prefailed package found below it.
  const root = (name: string, seen = new Set<string>()): string | undefined => {
    for (const dep of byName.get(name)?.dependencies ?? []) {
      if (seen.has(dep)) continue;
      seen.add(dep);
      const d = byName.get(dep);
      if (d?.state === "failed" || d?.state === "prefailed") return dep;
      const deeper = root(dep, seen);
      if (deeper !== undefined) return deeper;
    }
    return undefined;
  };
  const packages: ReportPackageInput[] = parsed.map((p) => ({
    pkgname: p.pkgname,
    location: p.location,
    state: p.state,
    dependencies: p.dependencies,
    maintainer: rows.get(p.pkgname)?.maintainer ?? "pkgsrc-users@NetBSD.org",
    durationMs: p.state === "succeeded" || p.state === "failed" ? 17_000 : undefined,
    ...(p.failedPhase === "" ? {} : { failedPhase: p.failedPhase }),
    ...(p.state === "indirect-failed" ? { blockedBy: root(p.pkgname)! } : {}),
    ...(p.state === "prefailed" ? { reason: `${p.pkgname} is not available for ${PLATFORM}` } : {}),
    ...(p.state === "failed" || p.state === "succeeded"
      ? { logs: PHASES.slice(0, p.state === "failed" ? PHASES.indexOf(p.failedPhase) + 1 : PHASES.length).map((phase) => ({ phase, href: `../../logs/b1/${p.pkgname}/${phase}.log` })) }
      : {}),
  }));
  return { buildId: "b1", platform: PLATFORM, startedAt: new Date("2026-12-01T20:39:00Z"), finishedAt: new Date("2026-12-01T20:54:00Z"), packages };
}

test("totals, the packages breaking the most and each package's breaks equal pbulk's report of the same build", () => {
  const report = buildReport(pbulkBuild());
  assert.deepEqual(
    [report.totals.packages, report.totals.succeeded, report.totals.failed, report.totals.dependingOnFailed, report.totals.prefailed, report.totals.dependingOnPrefailed],
    [92, 46, 6, 14, 26, 0],
  );
  assert.deepEqual(report.topBreakers.map((p) => [p.location, p.breaks]), [["lang/perl5", 14], ["archivers/pax", 1]]);
  assert.deepEqual(report.failures.map((p) => p.location), ["archivers/pax", "lang/perl5", "pkgtools/mtree", "regress/print-plist", "shells/pdksh", "sysutils/mtscan"]);
  const rows = pbulkHtmlRows();
  assert.equal(rows.size, 46, "every unsuccessful package of pbulk's report was read");
  for (const p of report.unsuccessful) {
    assert.equal(p.breaks, rows.get(p.pkgname)?.breaks, `${p.pkgname}: breaks`);
    assert.equal(p.state === "succeeded" ? "done" : p.state, rows.get(p.pkgname)?.status, `${p.pkgname}: status`);
  }
  assert.equal(report.unsuccessful.length, rows.size);
  const perl = report.failures.find((p) => p.pkgname === "perl-5.16.2nb4")!;
  assert.equal(perl.failedPhase, "checksum");
  assert.equal(perl.blocks.length, 14);
  assert.ok(perl.blocks.includes("p5-Data-Dump-1.21nb1"));
});

test("report.txt has pbulk's lines for the totals and both tables, and each failure's phase, log and what it blocks", () => {
  const ours = renderText(buildReport(pbulkBuild())).split("\n");
  const pbulk = readFileSync(path.join(EXPECTED_DIR, "pbulk-report/report.txt"), "utf8").split("\n");
  const from = pbulk.indexOf(pbulk.find((l) => l.startsWith("Total number of packages"))!);
  const wanted = pbulk.slice(from).filter((l) => l !== "");
  // pbulk's lines appear in ours, in the same order (ours has more between them).
  let at = 0;
  for (const line of wanted) {
    const found = ours.indexOf(line, at);
    assert.ok(found !== -1, `missing or out of order: ${JSON.stringify(line)}`);
    at = found + 1;
  }
  const text = ours.join("\n");
  assert.match(text, /\n {4}perl-5\.16\.2nb4: failed in checksum\n {4}log: \.\.\/\.\.\/logs\/b1\/perl-5\.16\.2nb4\/checksum\.log\n {4}blocks: /);
  assert.match(text, /\n {4}pax-20080110nb2: failed in build\n {4}log: \.\.\/\.\.\/logs\/b1\/pax-20080110nb2\/build\.log\n {4}blocks: x11-links-0\.73\n/);
  for (const line of ours) assert.ok(line.length <= 80 || !line.startsWith("            "), `wrapped: ${line}`);
});

test("report.json lists every package with pkgname, location, state, failing phase, blocked_by, duration and reason, and reads back", () => {
  const report = buildReport(pbulkBuild());
  const json = JSON.parse(renderJson(report));
  assert.equal(json.format, "pkgfarm-report/1");
  assert.equal(json.packages.length, 92);
  assert.deepEqual(Object.keys(json.packages[0]).slice(0, 7), ["pkgname", "location", "state", "failedPhase", "blockedBy", "durationMs", "reason"]);
  const dump = json.packages.find((p: { pkgname: string }) => p.pkgname === "p5-Data-Dump-1.21nb1");
  assert.deepEqual([dump.state, dump.blockedBy, dump.failedPhase, dump.durationMs, dump.breaks], ["indirect-failed", "perl-5.16.2nb4", "", null, 2]);
  const pax = json.packages.find((p: { pkgname: string }) => p.pkgname === "pax-20080110nb2");
  assert.deepEqual([pax.state, pax.failedPhase, pax.durationMs], ["failed", "build", 17000]);
  assert.equal(json.diff, null);
  const back = parseReportJson(renderJson(report));
  assert.equal(back.packages.length, 92);
  assert.equal(back.platform, PLATFORM);
  for (const [bad, why] of [["{", /not JSON/], ["[]", /not a JSON object/], ['{"format":"x"}', /format is "x"/], [JSON.stringify({ ...json, packages: [{ pkgname: "a-1", location: "x/a", state: "weird" }] }), /state "weird"/]] as const) {
    assert.throws(() => parseReportJson(bad, "prev.json"), (e: unknown) => e instanceof InvalidReport && e.source === "prev.json" && why.test(e.message));
  }
});

test("the diff with the previous build names what newly fails, what was fixed and what still fails, matching across version bumps", () => {
  const previous = parseReportJson(renderJson(buildReport(pbulkBuild())));
  const next = pbulkBuild();
  const packages = next.packages.map((p): ReportPackageInput => {
    if (p.pkgname === "perl-5.16.2nb4") return { ...p, pkgname: "perl-5.16.2nb5", state: "succeeded", failedPhase: undefined };
    if (p.state === "indirect-failed" && p.blockedBy === "perl-5.16.2nb4") return { ...p, state: "succeeded", blockedBy: undefined };
    if (p.pkgname === "binpatch-1.0") return { ...p, state: "failed", failedPhase: "build" };
    return p;
  });
  packages.push({ pkgname: "newpkg-1.0", location: "misc/newpkg", state: "failed", failedPhase: "configure" });
  const report = buildReport({ ...next, buildId: "b2", finishedAt: new Date("2026-12-02T10:00:00Z"), packages }, previous);
  const d = report.diff!;
  assert.equal(d.previousBuildId, "b1");
  assert.deepEqual(d.newlyFailing.map((e) => [e.pkgname, e.failedPhase, e.previousState]), [["newpkg-1.0", "configure", undefined], ["binpatch-1.0", "build", "succeeded"]]);
  assert.equal(d.fixed.length, 15);
  assert.deepEqual(d.fixed.find((e) => e.location === "lang/perl5"), { pkgname: "perl-5.16.2nb5", location: "lang/perl5", state: "succeeded", previousPkgname: "perl-5.16.2nb4", previousState: "failed" });
  assert.equal(d.stillFailing.length, 46 - 15);
  assert.ok(d.stillFailing.some((e) => e.pkgname === "pax-20080110nb2" && e.failedPhase === "build"));

  const text = renderText(report);
  assert.match(text, /Changes since build b1 \(ended 2026-12-01 20:54 UTC\)\n\n {2}Newly failing: +2\n {2}Fixed: +15\n {2}Still failing: +31\n/);
  assert.match(text, /\n {2}pkgtools\/binpatch +binpatch-1\.0: failed in build, was succeeded\n/);
  assert.match(text, /\n {2}lang\/perl5 +perl-5\.16\.2nb5: succeeded, was failed as perl-5\.16\.2nb4\n/);
  assert.match(text, /misc\/newpkg +newpkg-1\.0: failed in configure, not in the previous build/);
  const html = renderHtml(report);
  assert.match(html, /<h2>Changes since build b1 /);
  const withDecision = buildReport({ ...next, packages: [...packages, { pkgname: "digest-20121220", location: "pkgtools/digest", state: "succeeded", decision: "rebuilt: no binary package" }] });
  assert.match(renderText(withDecision), /\nWhy packages were rebuilt\n\n {2}pkgtools\/digest +digest-20121220: rebuilt: no binary package\n/);
  assert.match(renderHtml(withDecision), /<td>digest-20121220<\/td><td>rebuilt: no binary package<\/td>/);
  assert.match(html, /<td>pkgtools\/binpatch<\/td><td>binpatch-1\.0<\/td><td>failed in build, was succeeded<\/td>/);
  assert.equal(JSON.parse(renderJson(report)).diff.fixed.length, 15);
});

test("report.html escapes every field and links only relative paths and http(s) URLs (checked with Python's HTML parser)", { skip: spawnSync("python3", ["-c", "import html.parser"]).status === 0 ? false : "no python3" }, () => {
  const evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>&amp;';
  const build: FinishedBuild = {
    buildId: `b<1>`,
    platform: `Linux"<x>`,
    startedAt: new Date("2026-12-01T00:00:00Z"),
    finishedAt: new Date("2026-12-01T01:00:00Z"),
    packages: [
      {
        pkgname: `evil-1.0${evil}`,
        location: `cat/evil${evil}`,
        state: "failed",
        failedPhase: `build${evil}`,
        reason: evil,
        maintainer: evil,
        logs: [
          { phase: `build${evil}`, href: "javascript:alert(3)" },
          { phase: "configure", href: `../logs/"><script>x</script>.log` },
          { phase: "checksum", href: "//evil.example/x" },
          { phase: "depends", href: "https://logs.example/b1/evil/depends.log?a=1&b=2" },
        ],
      },
      { pkgname: "victim-1.0", location: "cat/victim", state: "indirect-failed", blockedBy: `evil-1.0${evil}`, reason: evil, decision: `rebuilt: file ${evil} changed` },
    ],
  };
  const html = renderHtml(buildReport(build));
  const parser = `
import html.parser, json, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.tags = []; self.text = []
    def handle_starttag(self, tag, attrs): self.tags.append([tag, attrs])
    def handle_data(self, data): self.text.append(data)
p = P(); p.feed(sys.stdin.read()); print(json.dumps({"tags": p.tags, "text": "".join(p.text)}))
`;
  const r = spawnSync("python3", ["-c", parser], { input: html, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const parsed = JSON.parse(r.stdout) as { tags: Array<[string, Array<[string, string]>]>; text: string };
  const allowed = new Set(["html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "hr", "table", "tr", "th", "td", "a", "strong", "br", "details", "summary"]);
  for (const [tag, attrs] of parsed.tags) {
    assert.ok(allowed.has(tag), `unexpected element <${tag}>`);
    for (const [name, value] of attrs) {
      assert.ok(["class", "href", "colspan", "charset"].includes(name), `unexpected attribute ${name} on <${tag}>`);
      if (name === "href") assert.ok(!/^(javascript:|\/\/)/i.test(value) && !value.includes('"'), `unsafe href ${value}`);
    }
  }
  const hrefs = parsed.tags.filter(([t]) => t === "a").map(([, a]) => a.find(([n]) => n === "href")?.[1]);
  assert.ok(hrefs.includes("https://logs.example/b1/evil/depends.log?a=1&b=2"), JSON.stringify(hrefs));
  assert.ok(hrefs.includes("../logs/%22%3E%3Cscript%3Ex%3C/script%3E.log"), JSON.stringify(hrefs));
  // The text a browser shows is the fields as they were.
  assert.ok(parsed.text.includes(evil), "the reason reads as written");
  assert.ok(parsed.text.includes(`rebuilt: file ${evil} changed`));
  assert.equal(safeHref("data:text/html,x"), undefined);
  assert.equal(safeHref("a\nb"), undefined);
});

test("writeReports writes the three files; findPreviousReport picks the same platform's latest earlier build and passes over damaged ones", async () => {
  const root = path.join(scratch, "reports");
  const b1 = pbulkBuild();
  await writeReports({ dir: path.join(root, "b1"), build: b1 });
  await writeReports({ dir: path.join(root, "b0"), build: { ...b1, buildId: "b0", finishedAt: new Date("2026-11-30T00:00:00Z") } });
  await writeReports({ dir: path.join(root, "other"), build: { ...b1, buildId: "other", platform: "NetBSD-10.0-x86_64", finishedAt: new Date("2026-12-01T23:00:00Z") } });
  await writeReports({ dir: path.join(root, "later"), build: { ...b1, buildId: "later", finishedAt: new Date("2026-12-03T00:00:00Z") } });
  mkdirSync(path.join(root, "broken"));
  writeFileSync(path.join(root, "broken", "report.json"), "{ not json");
  mkdirSync(path.join(root, "empty"));

  const finishedAt = new Date("2026-12-02T10:00:00Z");
  const found = await findPreviousReport({ reportsRoot: root, platform: PLATFORM, buildId: "b2", finishedBefore: finishedAt });
  assert.equal(found.previous?.buildId, "b1");
  assert.equal(found.previous?.path, path.join(root, "b1", "report.json"));
  assert.deepEqual(found.unreadable.map((u) => u.path), [path.join(root, "broken", "report.json")]);

  const written = await writeReports({ dir: path.join(root, "b2"), build: { ...b1, buildId: "b2", finishedAt }, previous: found.previous! });
  assert.deepEqual(readdirSync(path.join(root, "b2")).sort(), ["report.html", "report.json", "report.txt"]);
  assert.match(readFileSync(written.text, "utf8"), /Changes since build b1 /);
  assert.match(readFileSync(written.html, "utf8"), /Changes since build b1 /);
  assert.equal(JSON.parse(readFileSync(written.json, "utf8")).diff.previousBuildId, "b1");
  assert.equal(JSON.parse(readFileSync(written.json, "utf8")).diff.stillFailing.length, 46);
  assert.deepEqual(await findPreviousReport({ reportsRoot: path.join(scratch, "none"), platform: PLATFORM, buildId: "x", finishedBefore: finishedAt }), { previous: undefined, unreadable: [] });
});
