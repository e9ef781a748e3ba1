// The pkgsrc executor on the real tree with real bmake, in namespace
// sandboxes: two slots building at once, a package installed against its
// dependencies' packages, a failure in checksum, and the host's /usr/pkg
// never touched.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { JobOutcome } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobAssignment } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { ensureBuildUser } from "../../services/builder-agent/executor/build-user.js";
import type { Executor, JobResult } from "../../services/builder-agent/executor/executor.js";
import { createPkgsrcExecutor } from "../../services/builder-agent/executor/pkgsrc-executor.js";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { JobAssignmentSchema } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createPkgsrcScanner } from "../../services/builder-agent/executor/pkgsrc-scanner.js";
import { createScanExecutor } from "../../services/builder-agent/executor/scan-executor.js";
import { withJobLog } from "../../services/builder-agent/executor/with-job-log.js";
import { createSlotSandbox, type SlotSandbox } from "../../services/builder-agent/executor/slot-sandbox.js";
import { prepareJobWorkdir } from "../../services/builder-agent/workdir.js";
import { BOOTSTRAP_KIT, EXPECTED_DIR, pkgsrcTree, pkgsrcUnavailable } from "../support/pkgsrc.js";
import { assignment, phaseLogs, scanVars, type PhaseLogs } from "../support/pkgsrc-jobs.js";

const skip = pkgsrcUnavailable();

function hostPrefix(): string[] {
  return existsSync("/usr/pkg") ? readdirSync("/usr/pkg").sort() : [];
}

function expectedContents(pkgname: string): string[] {
  return readFileSync(join(EXPECTED_DIR, "contents", `${pkgname}.txt`), "utf8").split("\n").filter((l) => l !== "").sort();
}

function tarList(file: string): string[] {
  return execFileSync("tar", ["-tzf", file], { encoding: "utf8" }).split("\n").filter((l) => l !== "").sort();
}

describe("pkgsrc executor on the real tree", { skip }, () => {
  let tree: string;
  let root: string;
  let sandbox: SlotSandbox;
  let executor: Executor;
  let hostBefore: string[];

  before(async () => {
    tree = pkgsrcTree();
    root = mkdtempSync("/var/tmp/pkgfarm-exec-test-");
    chmodSync(root, 0o755);
    sandbox = createSlotSandbox({ kind: "namespace", root: join(root, "sandbox") });
    executor = withJobLog(createPkgsrcExecutor({
      treeDir: tree,
      bootstrapKit: BOOTSTRAP_KIT,
      sandbox,
      mkConfLines: [],
      keepWrkdirDir: join(root, "kept"),
      buildUser: await ensureBuildUser("pkgfarm"),
      timeoutMs: 600_000,
      baseEnv: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", TMPDIR: "/tmp" },
    }), "test-agent");
    hostBefore = hostPrefix();
  });
  after(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  async function run(job: JobAssignment, slot: number, prepare?: (dependsDir: string) => void): Promise<{ result: JobResult; logs: PhaseLogs; startedAt: number; endedAt: number }> {
    const workdir = await prepareJobWorkdir(join(root, "work"), job.job!.buildId, job.job!.pkgname);
    prepare?.(workdir.dependsDir);
    const logs = phaseLogs();
    const startedAt = Date.now();
    const result = await executor.run(job, { workdir, slot, log: logs, signal: new AbortController().signal });
    return { result, logs, startedAt, endedAt: Date.now() };
  }

  /** The scan variables of a location, from bmake pbulk-index in a freshly reset slot. */
  async function varsOf(location: string, slot: number): Promise<Record<string, string>> {
    await sandbox.reset(slot, BOOTSTRAP_KIT, []);
    return scanVars(sandbox, slot, tree, location);
  }

  const built = new Map<string, string>();

  test("the scan executor scans with bmake pbulk-index in a slot sandbox and reuses what did not change", async () => {
    const scan = createScanExecutor(createPkgsrcScanner({ treeDir: tree, bootstrapKit: BOOTSTRAP_KIT, sandbox, mkConfLines: ["PKG_FAIL_REASON.test= yes"], mkConfMtimeMs: statSync(BOOTSTRAP_KIT).mtimeMs, timeoutMs: 120_000 }));
    const first = create(JobAssignmentSchema, { job: { buildId: "s", pkgname: "scan-0001", leaseId: "l" }, scan: { scanId: "s", jobName: "scan-0001", locations: [{ location: "pkgtools/digest" }, { location: "devel/nbpatch" }] } });
    const workdir = await prepareJobWorkdir(join(root, "work"), "s", "scan-0001");
    const r = await scan.run(first, { workdir, slot: 0, log: phaseLogs(), signal: new AbortController().signal });
    assert.equal(r.outcome, JobOutcome.SUCCEEDED, r.failureReason);
    const [digest, nbpatch] = r.scanOutput!.locations;
    assert.match(digest!.pbulkIndex, /^PKGNAME=digest-20121220\nPKG_LOCATION=pkgtools\/digest\n/);
    assert.match(nbpatch!.pbulkIndex, /^PKGNAME=nbpatch-20100124\n/);
    const scanDepends = (text: string) => /^SCAN_DEPENDS=(.*)$/m.exec(text)![1]!.split(" ");
    // Rescanned with reuse: digest as of now (nothing changed since), nbpatch as of 1970.
    const again = create(JobAssignmentSchema, { job: { buildId: "s", pkgname: "scan-0002", leaseId: "l" }, scan: { scanId: "s", jobName: "scan-0002", reuse: true, locations: [
      { location: "pkgtools/digest", lastScanned: timestampFromMs(Date.now()), scanDepends: scanDepends(digest!.pbulkIndex) },
      { location: "devel/nbpatch", lastScanned: timestampFromMs(1000), scanDepends: scanDepends(nbpatch!.pbulkIndex) },
    ] } });
    const r2 = await scan.run(again, { workdir, slot: 0, log: phaseLogs(), signal: new AbortController().signal });
    assert.deepEqual(r2.scanOutput!.locations.map((l) => [l.location, l.reused, l.pbulkIndex !== ""]), [["pkgtools/digest", true, false], ["devel/nbpatch", false, true]]);
  });

  test("builds digest in slot 0 and nbpatch in slot 1 at the same time; each package lists what pbulk's did", async () => {
    const digestVars = await varsOf("pkgtools/digest", 0);
    const nbpatchVars = await varsOf("devel/nbpatch", 1);
    assert.equal(digestVars["PKGNAME"], "digest-20121220");
    assert.equal(digestVars["USE_DESTDIR"], "user-destdir");
    const [a, b] = await Promise.all([
      run(assignment({ pkgname: "digest-20121220", location: "pkgtools/digest", scanVars: digestVars }), 0),
      run(assignment({ pkgname: "nbpatch-20100124", location: "devel/nbpatch", scanVars: nbpatchVars }), 1),
    ]);
    for (const [name, r] of [["digest-20121220", a], ["nbpatch-20100124", b]] as const) {
      assert.equal(r.result.outcome, JobOutcome.SUCCEEDED, `${name}: ${r.result.failureReason}\n${r.logs.whole().slice(-3000)}`);
      assert.equal(r.result.failedPhase, "");
      assert.deepEqual(tarList(r.result.outputPath), expectedContents(name));
      // One log per phase, as pbulk keeps them, in pkg-build's order.
      assert.deepEqual([...r.logs.phases.keys()].filter((p) => p !== ""), ["pre-clean", "checksum", "configure", "build", "install", "package", "clean", "deinstall"]);
      for (const phase of ["configure", "build", "install"]) assert.match(r.logs.phases.get(phase)!, /\(as pkgfarm\)/);
      const copy = join(root, `${name}.tgz`);
      copyFileSync(r.result.outputPath, copy);
      built.set(name, copy);
    }
    // The two builds overlapped: each started before the other ended.
    assert.ok(a.startedAt < b.endedAt && b.startedAt < a.endedAt, "the two slots did not build at the same time");
    console.log(`digest ${(a.result.durationMs / 1000).toFixed(1)} s, nbpatch ${(b.result.durationMs / 1000).toFixed(1)} s (concurrently)`);
    assert.deepEqual(hostPrefix(), hostBefore);
  });

  test("a package with dependencies gets them with pkg_add from their packages and builds, beside tnftp in the other slot", async (t) => {
    if (built.size < 2) return t.skip("needs the packages of the first test");
    const rdigestVars = await varsOf("pkgtools/rdigest", 0);
    const tnftpVars = await varsOf("net/tnftp", 1);
    const [r, f] = await Promise.all([
      run(assignment({ pkgname: "rdigest-20121220", location: "pkgtools/rdigest", scanVars: rdigestVars, dependencies: ["digest-20121220", "nbpatch-20100124"] }), 0,
        (dir) => { for (const [name, file] of built) copyFileSync(file, join(dir, `${name}.tgz`)); }),
      run(assignment({ pkgname: "tnftp-20070806", location: "net/tnftp", scanVars: tnftpVars }), 1),
    ]);
    assert.equal(r.result.outcome, JobOutcome.SUCCEEDED, `${r.result.failureReason}\n${r.logs.whole().slice(-3000)}`);
    assert.match(r.logs.phases.get("depends")!, /pkg_add -K \/usr\/pkg\/pkgdb digest-20121220 nbpatch-20100124/);
    assert.deepEqual(tarList(r.result.outputPath), expectedContents("rdigest-20121220"));
    assert.equal(f.result.outcome, JobOutcome.SUCCEEDED, `${f.result.failureReason}\n${f.logs.whole().slice(-3000)}`);
    assert.deepEqual(tarList(f.result.outputPath), expectedContents("tnftp-20070806"));
    const copy = join(root, "tnftp-20070806.tgz");
    copyFileSync(f.result.outputPath, copy);
    built.set("tnftp-20070806", copy);
    console.log(`rdigest ${(r.result.durationMs / 1000).toFixed(1)} s with 2 dependencies, tnftp ${(f.result.durationMs / 1000).toFixed(1)} s (concurrently)`);
    assert.deepEqual(hostPrefix(), hostBefore);
  });

  test("perl, whose distfile cannot be fetched, fails in checksum as with pbulk, with that phase's log, and its work directory is kept", async (t) => {
    if (!["digest-20121220", "nbpatch-20100124", "tnftp-20070806"].every((p) => built.has(p))) return t.skip("needs digest, nbpatch and tnftp from the tests before");
    const vars = await varsOf("lang/perl5", 1);
    assert.equal(vars["PKGNAME"], "perl-5.16.2nb4");
    const deps = ["digest-20121220", "tnftp-20070806", "nbpatch-20100124"];
    const r = await run(assignment({ pkgname: "perl-5.16.2nb4", location: "lang/perl5", scanVars: vars, dependencies: deps }), 1,
      (dir) => { for (const d of deps) copyFileSync(built.get(d)!, join(dir, `${d}.tgz`)); });
    assert.equal(r.result.outcome, JobOutcome.FAILED);
    assert.equal(r.result.failedPhase, "checksum");
    assert.match(r.result.failureReason, /^checksum failed: bmake checksum exited with status \d+/);
    const checksumLog = r.logs.phases.get("checksum")!;
    // The fetch of the distfile is tried, and fails: there is no network here.
    assert.match(checksumLog, /perl-5\.16\.2\.tar\.(gz|bz2)/);
    assert.match(checksumLog, /=== test-agent: checksum failed: bmake checksum/);
    assert.match(checksumLog, /the work directory is kept in .*perl-5\.16\.2nb4\/wrkdir\.tar\.gz/);
    const expected = readFileSync(join(EXPECTED_DIR, "outcomes.tsv"), "utf8").split("\n").find((l) => l.startsWith("perl-5.16.2nb4\t"))!.split("\t");
    assert.equal(r.result.failedPhase, expected[4]);
    assert.equal(r.logs.phases.has("configure"), false);
    assert.deepEqual(hostPrefix(), hostBefore);
  });
});
