// Issue 10 on the real pkgsrc tree: a limited build chosen to cover every
// outcome (built, failed in build, failed in checksum, prefailed,
// indirect-failed) through a real dispatcher and a real agent with two slots
// in sandboxes. Each package ends as pbulk's did (state and failing phase),
// each built package holds the files pbulk's held, an incremental rebuild
// builds nothing, and a PKGREVISION bump rebuilds exactly the bumped
// package and what depends on it, each saying why.

import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import { BuildMode, BuildState, DepGraphService, JobState, ScanScope, ScanState, type Job, type Scan } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { BOOTSTRAP_KIT, EXPECTED_DIR, pkgsrcTree, pkgsrcUnavailable } from "../support/pkgsrc.js";
import { waitForBuild } from "../support/builds.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// digest and nbpatch build; rdigest needs digest; mtree fails in build;
// perl5 fails in checksum (no distfile); p5-pkgsrc-Dewey is blocked by perl;
// barrier is prefailed.
const SUBSET = ["pkgtools/digest", "pkgtools/rdigest", "pkgtools/mtree", "lang/perl5", "pkgtools/p5-pkgsrc-Dewey", "regress/barrier", "devel/nbpatch"];

const STATE_NAMES: Record<string, JobState> = {
  succeeded: JobState.SUCCEEDED, failed: JobState.FAILED, prefailed: JobState.PREFAILED, "indirect-failed": JobState.INDIRECT_FAILED,
};

function pbulkOutcomes(): Map<string, { state: JobState; phase: string }> {
  const [, ...rows] = readFileSync(join(EXPECTED_DIR, "outcomes.tsv"), "utf8").trimEnd().split("\n");
  return new Map(rows.map((row) => {
    const [pkgname, , , state, phase] = row.split("\t");
    return [pkgname!, { state: STATE_NAMES[state!]!, phase: phase ?? "" }];
  }));
}

async function waitForScan(depgraph: Client<typeof DepGraphService>, scanId: string, timeoutMs: number): Promise<Scan> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { scan } = await depgraph.getScan({ scanId });
    if (scan!.state !== ScanState.RUNNING) return scan!;
    assert.ok(Date.now() < deadline, `scan still running after ${timeoutMs} ms: ${scan!.locationsScanned}/${scan!.locationsTotal}`);
    await sleep(250);
  }
}

/**
 * bumpPkgrevision adds PKGREVISION=1 to a Makefile of a hard-linked tree
 * copy: the file is replaced, not written through, so the shared tree it is
 * linked to keeps its own.
 */
function bumpPkgrevision(makefile: string): void {
  const text = readFileSync(makefile, "utf8");
  assert.ok(!/^PKGREVISION/m.test(text), `${makefile} has no PKGREVISION yet`);
  const bumped = text.replace(/^(DISTNAME\??=.*)$/m, "$1\nPKGREVISION=\t1");
  assert.notEqual(bumped, text, `${makefile} has a DISTNAME line to bump after`);
  unlinkSync(makefile);
  writeFileSync(makefile, bumped);
}

async function jobsOf(depgraph: Client<typeof DepGraphService>, buildId: string): Promise<Map<string, Job>> {
  const { jobs, nextPageToken } = await depgraph.listJobs({ buildId, pageSize: 1000 });
  assert.equal(nextPageToken, "");
  return new Map(jobs.map((j) => [j.pkgname, j]));
}

const skip = pkgsrcUnavailable();

describe("pbulk-style builds in sandboxes (real pkgsrc tree, real bmake, real packages)", { skip }, () => {
  let dir: string;
  let tree: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;
  let agentProcess: ChildProcess;
  let platform = "";
  let packagesDir = "";
  let builtFirst = new Map<string, Job>();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-pkgsrc-build-"));
    // USE_DESTDIR builds run as the agent's unprivileged build user, who must
    // reach the tree and the slot directories under here (mkdtemp makes 0700).
    chmodSync(dir, 0o755);
    // A hard-linked copy: the PKGREVISION bump below changes this one only.
    tree = join(dir, "pkgsrc");
    execFileSync("cp", ["-al", pkgsrcTree(), tree]);
    depgraphServer = await startTestDepGraph();
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 500, heartbeatTimeoutMs: 10_000, leaseMs: 600_000, logLevel: "silent",
    }, pino({ level: "silent" }));
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
    agentProcess = spawn(process.execPath, [CLI, "agent", "--dispatcher", dispatcher.url, "--id", "builder", "--slots", "2", "--executor", "pkgsrc",
      "--tree", tree, "--bootstrap-kit", BOOTSTRAP_KIT, "--sandbox-root", join(dir, "sandbox"), "--work-dir", join(dir, "work"), "--log-level", "warn"],
    { stdio: ["ignore", "ignore", "inherit"] });
    const agents = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url));
    const deadline = Date.now() + 120_000;
    while (platform === "") {
      assert.ok(Date.now() < deadline, "the agent did not connect");
      const [agent] = (await agents.listAgents({})).agents;
      if (agent !== undefined) platform = agent.platform;
      else await sleep(200);
    }
  });
  after(async () => {
    agentProcess.kill("SIGKILL");
    if (agentProcess.exitCode === null && agentProcess.signalCode === null) await new Promise((r) => agentProcess.once("exit", r));
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Real builds on a loaded 2-core machine take minutes, over the suite's default timeout.
  test("every outcome as pbulk's, file lists as pbulk's packages, an incremental rebuild builds nothing", { timeout: 1_200_000 }, async () => {
    const expected = pbulkOutcomes();
    const full = (await depgraph.createBuild({ platform: "", limitTo: SUBSET })).build!;
    assert.equal(full.state, BuildState.SCANNING, "the list is scanned (with its closure) first");
    const done = await waitForBuild(depgraph, full.id, 600_000, 500);
    assert.equal(done.state, BuildState.FINISHED);
    const jobs = await jobsOf(depgraph, full.id);
    for (const [pkgname, job] of jobs) {
      const pbulk = expected.get(pkgname);
      assert.ok(pbulk !== undefined, `${pkgname} is one of pbulk's 92`);
      assert.equal(JobState[job.state], JobState[pbulk.state], `${pkgname}: ${job.reason}`);
      assert.equal(job.failedPhase, pbulk.phase, `${pkgname} failed in pbulk's phase`);
      if (job.attempts > 0) assert.equal(job.agentId, "builder", `${pkgname} records the build host`);
    }
    for (const name of ["digest-20121220", "rdigest-20121220", "mtree-20120308", "perl-5.16.2nb4", "p5-pkgsrc-Dewey-1.1nb3", "barrier-1.0"]) assert.ok(jobs.has(name), name);

    packagesDir = dispatcher.packages.platformDir(platform);
    for (const job of jobs.values()) {
      if (job.state !== JobState.SUCCEEDED) continue;
      const listed = execFileSync("tar", ["-tzf", join(packagesDir, "All", job.binaryPackage!.fileName)], { encoding: "utf8" }).trim().split("\n").sort();
      const pbulk = readFileSync(join(EXPECTED_DIR, "contents", `${job.pkgname}.txt`), "utf8").trim().split("\n").sort();
      assert.deepEqual(listed, pbulk, `${job.pkgname} holds pbulk's files`);
    }

    const again = (await depgraph.createBuild({ platform, limitTo: SUBSET, mode: BuildMode.INCREMENTAL, packagesDir })).build!;
    assert.equal((await waitForBuild(depgraph, again.id, 300_000, 500)).state, BuildState.FINISHED);
    const second = await jobsOf(depgraph, again.id);
    for (const [pkgname, job] of jobs) {
      if (job.state === JobState.SUCCEEDED) assert.equal(JobState[second.get(pkgname)!.state], "UP_TO_DATE", `${pkgname}: ${second.get(pkgname)!.decision}`);
    }
    assert.equal([...second.values()].filter((j) => j.state === JobState.SUCCEEDED).length, 0, "an incremental rebuild builds nothing");
    builtFirst = jobs;
  });

  // pkgtools/rdigest includes pkgtools/digest's Makefile and depends on
  // digest: a bump there renames both. The rescan with reuse finds the two
  // locations whose SCAN_DEPENDS changed (as pbulk's incremental scan does);
  // perl5 depends on digest too, and fails in checksum again.
  test("a PKGREVISION bump rebuilds exactly the bumped package and what depends on it, with that reason", { timeout: 900_000 }, async (t) => {
    assert.ok(builtFirst.size > 0, "the first build ran");
    bumpPkgrevision(join(tree, "pkgtools", "digest", "Makefile"));
    const rescan = (await depgraph.startScan({ platform, scope: ScanScope.CLOSURE, locations: SUBSET, reuse: true })).scan!;
    const scanned = await waitForScan(depgraph, rescan.id, 300_000);
    assert.equal(scanned.state, ScanState.FINISHED, JSON.stringify(scanned.problems));
    assert.ok(scanned.locationsReused > 0, "locations whose SCAN_DEPENDS did not change are reused");

    const bumped = (await depgraph.createBuild({ platform, limitTo: SUBSET, mode: BuildMode.INCREMENTAL, packagesDir })).build!;
    assert.equal((await waitForBuild(depgraph, bumped.id, 600_000, 500)).state, BuildState.FINISHED);
    const third = await jobsOf(depgraph, bumped.id);
    const rebuilt = [...third.values()].filter((j) => j.state === JobState.SUCCEEDED).map((j) => j.pkgname).sort();
    assert.deepEqual(rebuilt, ["digest-20121220nb1", "rdigest-20121220nb1"]);
    for (const name of rebuilt) {
      t.diagnostic(`${name}: ${third.get(name)!.decision}`);
      assert.match(third.get(name)!.decision, /^rebuilt/, `${name} says why it was rebuilt`);
    }
    for (const job of third.values()) {
      if (rebuilt.includes(job.pkgname)) continue;
      const before = builtFirst.get(job.pkgname);
      assert.ok(before !== undefined, `${job.pkgname} was in the first build`);
      if (before.state === JobState.SUCCEEDED) assert.equal(JobState[job.state], "UP_TO_DATE", `${job.pkgname}: ${job.decision}`);
      else assert.equal(JobState[job.state], JobState[before.state], `${job.pkgname} ends as before: ${job.reason}`);
    }
  });
});
