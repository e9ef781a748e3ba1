// The dispatcher's build publisher end to end: real depgraph and dispatcher
// on loopback; builds of the example tree by real command agents, and a
// build of real pkgsrc packages (test/fixtures/pkgsrc) by a raw agent that
// uploads them through UploadPackage. After each build ends, its reports
// are in <data-dir>/reports/<build>/ and, for pkgsrc packages, the
// platform's repository is at <data-dir>/repository/<platform>.

import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Writable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { BuildState, DepGraphService, JobOutcome, JobState, type Job } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { parseSummary } from "../../services/shared/pkgsrc/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";
import { connectRawAgent } from "../support/raw-agent.js";
import { waitForBuild } from "../support/builds.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const TREE = join(ROOT, "examples", "tree");
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const BUILD_ONE = [process.execPath, join(ROOT, "examples", "bin", "build-one.mjs")];
const FIXTURES = join(ROOT, "test", "fixtures", "pkgsrc");

const STATE_NAMES: Record<number, string> = {
  [JobState.SUCCEEDED]: "succeeded", [JobState.UP_TO_DATE]: "up-to-date", [JobState.FAILED]: "failed", [JobState.PREFAILED]: "prefailed",
  [JobState.INDIRECT_FAILED]: "indirect-failed", [JobState.CYCLE]: "cycle", [JobState.CANCELLED]: "cancelled",
};

interface ReportJsonFile {
  buildId: string;
  platform: string;
  packages: Array<{ pkgname: string; location: string; state: string; failedPhase: string; blockedBy: string; maintainer: string; logs: Array<{ phase: string; href: string }> }>;
  diff: null | { previousBuildId: string; newlyFailing: Array<{ pkgname: string }>; fixed: Array<{ pkgname: string }>; stillFailing: Array<{ pkgname: string }> };
}

/** The build's report.json, once the publisher wrote it (it is written last of the three). */
function waitForReport(dataDir: string, buildId: string, timeoutMs = 20_000): Promise<ReportJsonFile> {
  return eventually(`the report of ${buildId}`, async () => {
    const file = join(dataDir, "reports", buildId, "report.json");
    return existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) as ReportJsonFile : undefined;
  }, timeoutMs);
}

/** report.json's packages equal the build's jobs: name, location, state, failed phase, blocked by. */
function assertReportMatchesJobs(report: ReportJsonFile, jobs: readonly Job[]): void {
  const fromJobs = jobs.map((j) => ({ pkgname: j.pkgname, location: j.location, state: STATE_NAMES[j.state], failedPhase: j.failedPhase, blockedBy: j.blockedBy }))
    .sort((a, b) => a.pkgname.localeCompare(b.pkgname));
  const fromReport = report.packages.map((p) => ({ pkgname: p.pkgname, location: p.location, state: p.state, failedPhase: p.failedPhase, blockedBy: p.blockedBy }))
    .sort((a, b) => a.pkgname.localeCompare(b.pkgname));
  assert.deepEqual(fromReport, fromJobs);
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The dispatcher's log lines, parsed, as they come. */
function collectLogs(): { lines: Array<Record<string, unknown>>; logger: Logger } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: pino({ level: "info" }, stream) };
}

async function startDispatcher(dataDir: string, depgraphUrl: string, logger: Logger = pino({ level: "silent" })): Promise<RunningDispatcher> {
  return startDispatcherServer({
    host: "127.0.0.1",
    port: 0,
    depgraphUrl,
    packagesRoot: join(dataDir, "packages"),
    logsRoot: dataDir,
    reportsRoot: join(dataDir, "reports"),
    repositoryRoot: join(dataDir, "repository"),
    heartbeatIntervalMs: 1000,
    heartbeatTimeoutMs: 30_000,
    leaseMs: 30_000,
    logLevel: "silent",
    publishIntervalMs: 200,
  }, logger);
}

describe("reports of example-tree builds (command agents)", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;
  const children: ChildProcess[] = [];
  const logs = collectLogs();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-publisher-"));
    const scan = execFileSync(process.execPath, [join(ROOT, "examples", "bin", "scan-one.mjs"), "--all"], { encoding: "utf8" });
    writeFileSync(join(dir, "scan.txt"), scan);
    depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt") });
    dispatcher = await startDispatcher(dir, depgraphServer.url, logs.logger);
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
  });
  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a finished build gets report.txt, .html and .json equal to its jobs; the next build's report has the diff; no repository for non-pkgsrc packages", async () => {
    const platform = "Example-1.0-x86_64";
    for (const id of ["p1", "p2"]) {
      children.push(spawn(process.execPath, [CLI, "agent", "--dispatcher", dispatcher.url, "--id", id, "--platform", platform, "--tree", TREE,
        "--build-command", JSON.stringify(BUILD_ONE), "--work-dir", join(dir, id, "work"), "--cache-dir", join(dir, id, "cache"), "--log-level", "warn"],
      { stdio: ["ignore", "ignore", "inherit"] }));
    }
    const { build } = await depgraph.createBuild({ platform });
    const first = await waitForBuild(depgraph, build!.id, 120_000);
    assert.equal(first.state, BuildState.FINISHED);
    const jobs = (await depgraph.listJobs({ buildId: first.id })).jobs;
    const report = await waitForReport(dir, first.id);
    for (const name of ["report.txt", "report.html", "report.json"]) assert.ok(existsSync(join(dir, "reports", first.id, name)), name);
    assert.equal(report.buildId, first.id);
    assert.equal(report.platform, platform);
    assertReportMatchesJobs(report, jobs);
    assert.equal(report.diff, null, "the first build of the platform has nothing to compare with");
    const failed = jobs.filter((j) => j.state === JobState.FAILED);
    assert.ok(failed.length > 0 && jobs.some((j) => j.state === JobState.SUCCEEDED), "the example tree builds some and fails some");
    // Every log link of a package that ran resolves, relative to the report's directory, to its log.
    const reportDir = join(dir, "reports", first.id);
    for (const p of report.packages.filter((x) => x.state === "succeeded" || x.state === "failed")) {
      assert.ok(p.logs.length > 0, `${p.pkgname} links its log`);
      for (const l of p.logs) assert.ok(existsSync(resolve(reportDir, l.href)), `${p.pkgname}: ${l.href}`);
    }
    const text = readFileSync(join(reportDir, "report.txt"), "utf8");
    for (const j of failed) assert.ok(text.includes(j.pkgname), `report.txt names the failure ${j.pkgname}`);
    assert.match(readFileSync(join(reportDir, "report.html"), "utf8"), /^<!DOCTYPE html>/);
    // build-one.mjs packs no +DESC: these are not pkgsrc binary packages, so
    // the publisher says so in one line and leaves no repository.
    const skipped = (id: string) => logs.lines.filter((l) => l["buildId"] === id && String(l["msg"]).startsWith("repository not published"));
    await eventually("the line saying there is no repository", async () => (skipped(first.id).length > 0 ? true : undefined));
    assert.equal(skipped(first.id).length, 1);
    assert.equal(existsSync(join(dir, "repository", platform)), false);
    assert.deepEqual(logs.lines.filter((l) => Number(l["level"]) >= 40).map((l) => l["msg"]), [], "no warnings or errors");

    // A second, limited build with the failing package: its report diffs against the first.
    const bad = failed[0]!;
    const { build: again } = await depgraph.createBuild({ platform, limitTo: [bad.location] });
    const second = await waitForBuild(depgraph, again!.id, 60_000);
    const report2 = await waitForReport(dir, second.id);
    assertReportMatchesJobs(report2, (await depgraph.listJobs({ buildId: second.id })).jobs);
    assert.ok(report2.diff !== null);
    assert.equal(report2.diff.previousBuildId, first.id);
    assert.deepEqual(report2.diff.stillFailing.map((e) => e.pkgname), [bad.pkgname]);
    assert.deepEqual(report2.diff.newlyFailing, []);
    assert.match(readFileSync(join(dir, "reports", second.id, "report.txt"), "utf8"), new RegExp(`Changes since build ${first.id}`));
    // The first report was not rewritten.
    assert.deepEqual(JSON.parse(readFileSync(join(reportDir, "report.json"), "utf8")), report);
  });
});

// pkg_rolling-replace depends on pkg_chk and pkg_tarup; pkg_tarup is marked
// NO_BIN_ON_FTP, so it and pkg_rolling-replace are built but not published.
const PKGSRC_SCAN = `PKGNAME=pkg_chk-2.0.6
PKG_LOCATION=pkgtools/pkg_chk
ALL_DEPENDS=
CATEGORIES=pkgtools
MAINTAINER=pkgsrc-users@NetBSD.org
PKGNAME=pkg_tarup-1.9.1
PKG_LOCATION=pkgtools/pkg_tarup
ALL_DEPENDS=
CATEGORIES=pkgtools
NO_BIN_ON_FTP=not for mirrors (test)
PKGNAME=pkg_rolling-replace-0.24.1
PKG_LOCATION=pkgtools/pkg_rolling-replace
ALL_DEPENDS=pkg_chk>=1.76:../../pkgtools/pkg_chk pkg_tarup>=1.6.6:../../pkgtools/pkg_tarup
CATEGORIES=pkgtools
PKGNAME=sysexits-1.1
PKG_LOCATION=devel/sysexits
ALL_DEPENDS=
CATEGORIES=devel pkgtools
PKGNAME=broken-1.0
PKG_LOCATION=misc/broken
ALL_DEPENDS=
CATEGORIES=misc
MAINTAINER=someone@example.org
PKGNAME=needs-broken-1.0
PKG_LOCATION=misc/needs-broken
ALL_DEPENDS=broken>=1.0:../../misc/broken
CATEGORIES=misc
`;

/** A raw agent builds the pkgsrc test build: uploads the fixture of each job, fails broken-1.0 in its build phase. */
async function buildWithRawAgent(depgraph: Client<typeof DepGraphService>, dispatcherUrl: string, buildId: string, platform: string): Promise<void> {
  const build = { id: buildId };
    const agentId = "raw-pkgsrc";
    const agent = connectRawAgent(dispatcherUrl, { agentId, platform, slots: 4 });
    const handled = new Set<string>();
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { build: now } = await depgraph.getBuild({ buildId: build.id });
      if (now!.state !== BuildState.RUNNING) break;
      assert.ok(Date.now() < deadline, `build still running: ${JSON.stringify(now!.jobCounts)}`);
      for (const m of agent.received) {
        if (m.message.case !== "assign") continue;
        const job = (m.message.value as JobAssignment).job!;
        if (handled.has(job.pkgname)) continue;
        handled.add(job.pkgname);
        agent.send({ case: "accepted", value: { job } });
        agent.send({ case: "log", value: { job, data: Buffer.from(`cleaning ${job.pkgname}\n`), phase: "pre-clean" } });
        if (job.pkgname === "broken-1.0") {
          agent.send({ case: "log", value: { job, data: Buffer.from("cc: error: broken.c: no such file\n"), phase: "build" } });
          agent.send({ case: "finished", value: { job, outcome: JobOutcome.FAILED, failureReason: "bmake all exited with status 1", failedPhase: "build" } });
          continue;
        }
        const data = readFileSync(join(FIXTURES, `${job.pkgname}.tgz`));
        const header = { job, agentId, fileName: `${job.pkgname}.tgz`, sha256: sha256(data), sizeBytes: BigInt(data.length) };
        await agent.client.uploadPackage((async function* () {
          yield { part: { case: "header" as const, value: header } };
          yield { part: { case: "chunk" as const, value: data } };
        })());
        agent.send({ case: "finished", value: { job, outcome: JobOutcome.SUCCEEDED, binaryPackage: { fileName: header.fileName, sha256: header.sha256, sizeBytes: header.sizeBytes } } });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    agent.close();
}

describe("the repository of a pkgsrc build (raw agent uploading real packages)", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;
  const logs = collectLogs();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-publisher-pkgsrc-"));
    writeFileSync(join(dir, "scan.txt"), PKGSRC_SCAN);
    depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt") });
    dispatcher = await startDispatcher(dir, depgraphServer.url, logs.logger);
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
  });
  after(async () => {
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("pkg_summary.gz lists exactly the built packages minus NO_BIN_ON_FTP and its dependents; the failure's phase logs are linked", async () => {
    const platform = "Linux-6.1-x86_64";
    const { build } = await depgraph.createBuild({ platform });
    await buildWithRawAgent(depgraph, dispatcher.url, build!.id, platform);
    const jobs = (await depgraph.listJobs({ buildId: build!.id })).jobs;
    assert.deepEqual(jobs.filter((j) => j.state === JobState.SUCCEEDED).map((j) => j.pkgname).sort(),
      ["pkg_chk-2.0.6", "pkg_rolling-replace-0.24.1", "pkg_tarup-1.9.1", "sysexits-1.1"]);

    const report = await waitForReport(dir, build!.id);
    assertReportMatchesJobs(report, jobs);
    const broken = report.packages.find((p) => p.pkgname === "broken-1.0")!;
    assert.equal(broken.failedPhase, "build");
    assert.equal(broken.maintainer, "someone@example.org");
    assert.deepEqual(broken.logs.map((l) => l.phase), ["log", "pre-clean", "build"]);
    const reportDir = join(dir, "reports", build!.id);
    assert.match(readFileSync(resolve(reportDir, broken.logs[2]!.href), "utf8"), /no such file/);
    assert.equal(report.packages.find((p) => p.pkgname === "needs-broken-1.0")!.blockedBy, "broken-1.0");
    assert.match(readFileSync(join(reportDir, "report.html"), "utf8"), /<strong>build<\/strong>/);

    // The repository: a symlink to a complete generation.
    const target = join(dir, "repository", platform);
    const summary = await eventually("the repository", async () => {
      const file = join(target, "All", "pkg_summary.gz");
      return existsSync(file) ? gunzipSync(readFileSync(file)).toString("utf8") : undefined;
    });
    assert.ok(lstatSync(target).isSymbolicLink());
    assert.ok(existsSync(join(dirname(target), readlinkSync(target))));
    const published = ["pkg_chk-2.0.6", "sysexits-1.1"];
    assert.deepEqual(parseSummary(summary).map((e) => e.get("PKGNAME")), published);
    for (const e of parseSummary(summary)) {
      assert.equal(e.get("FILE_NAME"), `${e.get("PKGNAME")}.tgz`);
      assert.equal(Number(e.get("FILE_SIZE")), readFileSync(join(FIXTURES, `${e.get("PKGNAME")}.tgz`)).length);
    }
    assert.deepEqual(readdirSync(join(target, "All")).sort(), ["pkg_chk-2.0.6.tgz", "pkg_summary.bz2", "pkg_summary.gz", "sysexits-1.1.tgz"]);
    assert.ok(existsSync(join(target, "SHA512.bz2")));
    assert.deepEqual(readdirSync(join(target, "devel")), ["sysexits-1.1.tgz"]);
    assert.deepEqual(readdirSync(join(target, "pkgtools")).sort(), ["pkg_chk-2.0.6.tgz", "sysexits-1.1.tgz"]);
    assert.equal(execFileSync("bzip2", ["-dc", join(target, "All", "pkg_summary.bz2")], { encoding: "utf8" }), summary);
  });

  test("a publication that fails is tried again at the next poll, and the repository appears once it can", async () => {
    const platform = "Linux-6.1-aarch64";
    // A real directory where the repository's symlink goes: refused, since it cannot be switched atomically.
    const target = join(dir, "repository", platform);
    mkdirSync(target, { recursive: true });
    const { build } = await depgraph.createBuild({ platform });
    await buildWithRawAgent(depgraph, dispatcher.url, build!.id, platform);
    const failures = (n: number) => eventually(`${n} failed publications`, async () =>
      logs.lines.filter((l) => l["buildId"] === build!.id && l["msg"] === "repository publication failed; trying again at the next poll").length >= n ? true : undefined);
    await failures(1);
    assert.ok(existsSync(join(dir, "reports", build!.id, "report.json")), "the reports did not wait for the repository");
    rmSync(target, { recursive: true });
    const summary = await eventually("the repository after the retry", async () => {
      const file = join(target, "All", "pkg_summary.gz");
      return existsSync(file) ? gunzipSync(readFileSync(file)).toString("utf8") : undefined;
    });
    assert.deepEqual(parseSummary(summary).map((e) => e.get("PKGNAME")), ["pkg_chk-2.0.6", "sysexits-1.1"]);
    assert.ok(lstatSync(target).isSymbolicLink());
    // The switch is visible a moment before the publisher logs it.
    const published = await eventually("the publication's log line", async () => {
      const lines = logs.lines.filter((l) => l["buildId"] === build!.id && l["msg"] === "repository published");
      return lines.length > 0 ? lines : undefined;
    });
    assert.equal(published.length, 1);
    assert.ok(logs.lines.every((l) => l["msg"] !== "repository publication failed; giving up until the next build"));
  });

  test("a restarted dispatcher does not redo the builds it already reported", async () => {
    const before = readdirSync(join(dir, "reports")).sort();
    assert.ok(before.length >= 2);
    const json = new Map(before.map((id) => [id, readFileSync(join(dir, "reports", id, "report.json"), "utf8")]));
    await dispatcher.close();
    const restarted = collectLogs();
    dispatcher = await startDispatcher(dir, depgraphServer.url, restarted.logger);
    // A new build: once its report is there, the poll that wrote it has passed over the older builds.
    const platform = "Linux-6.1-riscv64";
    const { build } = await depgraph.createBuild({ platform });
    await buildWithRawAgent(depgraph, dispatcher.url, build!.id, platform);
    await waitForReport(dir, build!.id);
    const written = restarted.lines.filter((l) => l["msg"] === "build report written").map((l) => l["buildId"]);
    assert.deepEqual(written, [build!.id]);
    for (const [id, text] of json) assert.equal(readFileSync(join(dir, "reports", id, "report.json"), "utf8"), text, id);
  });
});
