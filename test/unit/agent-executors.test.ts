// The agent's executor wrappers, each around a small executor written here,
// the command executor with a real shell command, the scan executor with a
// scanner that records what it is asked, and the slot pool.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryPackageSchema, JobOutcome, ScanLocationSchema, ScanTaskSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { JobAssignmentSchema, type JobAssignment } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { byJobKind } from "../../services/builder-agent/executor/by-job-kind.js";
import { createCommandExecutor } from "../../services/builder-agent/executor/command-executor.js";
import { failed, succeeded, type Executor, type JobContext, type JobResult } from "../../services/builder-agent/executor/executor.js";
import { createScanExecutor, type Scanner } from "../../services/builder-agent/executor/scan-executor.js";
import { DependenciesUnavailable, withDependencies } from "../../services/builder-agent/executor/with-dependencies.js";
import { withJobLog } from "../../services/builder-agent/executor/with-job-log.js";
import { NO_PACKAGE_REASON, withUpToDate } from "../../services/builder-agent/executor/with-up-to-date.js";
import { UploadFailed, withUpload } from "../../services/builder-agent/executor/with-upload.js";
import { createSlotPool, NoFreeSlot } from "../../services/builder-agent/slots.js";
import { prepareJobWorkdir } from "../../services/builder-agent/workdir.js";
import { phaseLogs, type PhaseLogs } from "../support/pkgsrc-jobs.js";

const tmp = mkdtempSync(join(tmpdir(), "pkgfarm-executors-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function job(init: Partial<{ deps: string[]; incremental: boolean; rebuildReason: string; scan: boolean }> = {}): JobAssignment {
  return create(JobAssignmentSchema, {
    job: { buildId: "b1", pkgname: "digest-20121220", leaseId: "l1" },
    location: "pkgtools/digest",
    attempt: 1,
    platform: "P",
    dependencyPackages: (init.deps ?? []).map((d) => ({ fileName: `${d}.tgz`, sha256: "a".repeat(64), sizeBytes: 1n })),
    dependencies: init.deps ?? [],
    incremental: init.incremental ?? false,
    rebuildReason: init.rebuildReason ?? "",
    ...(init.scan === true ? { location: "", scan: create(ScanTaskSchema, { scanId: "s1", jobName: "scan-0001" }) } : {}),
  });
}

let n = 0;
async function context(signal = new AbortController().signal, slot = 0): Promise<JobContext & { log: PhaseLogs }> {
  const workdir = await prepareJobWorkdir(join(tmp, "work"), `b${++n}`, "digest-20121220");
  return { workdir, slot, log: phaseLogs(), signal };
}

/** An executor that records its calls and answers with result. */
function recording(result: (ctx: JobContext) => JobResult | Promise<JobResult>, name = "test"): Executor & { calls: JobAssignment[] } {
  const calls: JobAssignment[] = [];
  return { name, calls, async run(j, ctx) { calls.push(j); return result(ctx); } };
}

describe("withDependencies", () => {
  test("fetches into the depends directory before the build; none to fetch, no fetch", async () => {
    const order: string[] = [];
    const inner = recording(() => { order.push("build"); return succeeded(1, "x"); });
    const wrapped = withDependencies(inner, async (_a, dir) => { order.push(`fetch ${dir}`); });
    const ctx = await context();
    await wrapped.run(job({ deps: ["nbpatch-20100124"] }), ctx);
    assert.deepEqual(order, [`fetch ${ctx.workdir.dependsDir}`, "build"]);
    order.length = 0;
    await wrapped.run(job(), await context());
    assert.deepEqual(order, ["build"]);
  });

  test("a dependency that cannot be had fails the job in depends, and nothing is built", async () => {
    const inner = recording(() => succeeded(1, "x"));
    const ctx = await context();
    const r = await withDependencies(inner, async () => { throw new Error("no package nbpatch-20100124.tgz for platform P"); }).run(job({ deps: ["nbpatch-20100124"] }), ctx);
    assert.equal(r.outcome, JobOutcome.FAILED);
    assert.equal(r.failedPhase, "depends");
    assert.match(r.failureReason, /could not fetch the dependencies' packages: no package nbpatch/);
    assert.match(ctx.log.phases.get("depends")!, /no package nbpatch/);
    assert.equal(inner.calls.length, 0);
  });

  test("a download that broke off (dispatcher restarting) gives the job back; a missing or rebuilt package fails it", async () => {
    for (const code of [Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.Internal]) {
      const inner = recording(() => succeeded(1, "x"));
      const ctx = await context();
      await assert.rejects(
        withJobLog(withDependencies(inner, async () => { throw new ConnectError("read ECONNRESET", code); }), "a").run(job({ deps: ["nbpatch-20100124"] }), ctx),
        (e: unknown) => e instanceof DependenciesUnavailable && /dependencies of digest-20121220 could not be fetched: .*ECONNRESET/.test(e.message),
        `code ${Code[code]}`);
      assert.equal(inner.calls.length, 0);
      assert.match(ctx.log.phases.get("depends")!, /giving the job back/);
    }
    for (const code of [Code.NotFound, Code.FailedPrecondition]) {
      const r = await withDependencies(recording(() => succeeded(1, "x")), async () => { throw new ConnectError("no package nbpatch-20100124.tgz", code); }).run(job({ deps: ["nbpatch-20100124"] }), await context());
      assert.equal(r.outcome, JobOutcome.FAILED, `code ${Code[code]}`);
      assert.equal(r.failedPhase, "depends");
    }
  });

  test("a cancel during the fetch is a cancelled result", async () => {
    const abort = new AbortController();
    const inner = recording(() => succeeded(1, "x"));
    const r = await withDependencies(inner, async () => { abort.abort(); throw new Error("aborted"); }).run(job({ deps: ["x-1"] }), await context(abort.signal));
    assert.equal(r.cancelled, true);
    assert.equal(inner.calls.length, 0);
  });
});

describe("withUpload", () => {
  const stored = create(BinaryPackageSchema, { fileName: "digest-20121220.tgz", sha256: "b".repeat(64), sizeBytes: 10n });

  test("uploads what a successful build made and reports what was stored", async () => {
    const uploaded: string[] = [];
    const r = await withUpload(recording(() => succeeded(1, "/out/digest-20121220.tgz")), async (_a, path) => { uploaded.push(path); return { kind: "uploaded", binaryPackage: stored }; }).run(job(), await context());
    assert.deepEqual(uploaded, ["/out/digest-20121220.tgz"]);
    assert.equal(r.binaryPackage, stored);
  });

  test("uploads nothing for a failure or a result without a package (a scan)", async () => {
    let uploads = 0;
    const upload = async () => { uploads++; return { kind: "uploaded" as const, binaryPackage: stored }; };
    await withUpload(recording(() => failed(1, "build failed", "build")), upload).run(job(), await context());
    await withUpload(recording(() => succeeded(1, "")), upload).run(job(), await context());
    assert.equal(uploads, 0);
  });

  test("a refused package fails the job in upload; a give-back or a lost job is UploadFailed, not a result", async () => {
    const refused = await withUpload(recording(() => succeeded(1, "/p.tgz")), async () => ({ kind: "fail", reason: "the package upload was refused (RESOURCE_EXHAUSTED): too big" })).run(job(), await context());
    assert.equal(refused.outcome, JobOutcome.FAILED);
    assert.equal(refused.failedPhase, "upload");
    assert.match(refused.failureReason, /too big/);
    await assert.rejects(withUpload(recording(() => succeeded(1, "/p.tgz")), async () => ({ kind: "release", reason: "failed 3 times" })).run(job(), await context()),
      (e: unknown) => e instanceof UploadFailed && e.release && /upload of digest-20121220 failed: failed 3 times/.test(e.message));
    await assert.rejects(withUpload(recording(() => succeeded(1, "/p.tgz")), async () => ({ kind: "forget", reason: "gone" })).run(job(), await context()),
      (e: unknown) => e instanceof UploadFailed && !e.release);
  });
});

describe("withJobLog", () => {
  test("names agent, slot and executor first; a failure goes into its phase's log", async () => {
    const ctx = await context(undefined, 1);
    const r = await withJobLog(recording(() => failed(5, "checksum failed: bmake checksum exited with status 1", "checksum"), "pkgsrc"), "host-a").run(job(), ctx);
    assert.equal(r.failedPhase, "checksum");
    assert.match(ctx.log.phases.get("")!, /^=== host-a slot 1: pkgtools\/digest with the pkgsrc executor\n/);
    assert.equal(ctx.log.phases.get("checksum"), "=== host-a: checksum failed: bmake checksum exited with status 1\n");
  });

  test("an executor that throws gives a failed job, an UploadFailed passes through", async () => {
    const ctx = await context();
    const r = await withJobLog(recording(() => { throw new Error("EACCES: permission denied, mkdir '/x'"); }), "a").run(job(), ctx);
    assert.equal(r.outcome, JobOutcome.FAILED);
    assert.equal(r.failureReason, "the agent could not run the job: EACCES: permission denied, mkdir '/x'");
    await assert.rejects(withJobLog(recording(() => { throw new UploadFailed("p", false, "x"); }), "a").run(job(), await context()), UploadFailed);
  });
});

describe("withUpToDate", () => {
  const current = create(BinaryPackageSchema, { fileName: "digest-20121220.tgz", sha256: "c".repeat(64), sizeBytes: 3n });

  test("a full build job is built without looking for a package", async () => {
    let fetched = 0;
    const inner = recording(() => succeeded(1, "p"));
    const r = await withUpToDate(inner, async () => { fetched++; return current; }, async () => ({ upToDate: true, reason: "up to date" })).run(job(), await context());
    assert.equal(fetched, 0);
    assert.equal(inner.calls.length, 1);
    assert.equal(r.decision, "");
  });

  test("a current package is reported up to date with its package, and nothing is built", async () => {
    const inner = recording(() => succeeded(1, "p"));
    const checked: string[] = [];
    const r = await withUpToDate(inner, async () => current, async (_a, file) => { checked.push(file); return { upToDate: true, reason: "up to date" }; })
      .run(job({ incremental: true }), await context());
    assert.equal(r.outcome, JobOutcome.UP_TO_DATE);
    assert.equal(r.binaryPackage, current);
    assert.equal(r.decision, "up to date");
    assert.match(checked[0]!, /current-digest-20121220\.tgz$/);
    assert.equal(inner.calls.length, 0);
  });

  test("a stale package, no package, or a rebuilt dependency: built, with the reason", async () => {
    const inner = recording(() => succeeded(1, "p"));
    const stale = await withUpToDate(inner, async () => current, async () => ({ upToDate: false, reason: "rebuilt: file pkgtools/digest/Makefile changed" }))
      .run(job({ incremental: true }), await context());
    assert.equal(stale.outcome, JobOutcome.SUCCEEDED);
    assert.equal(stale.decision, "rebuilt: file pkgtools/digest/Makefile changed");
    const none = await withUpToDate(inner, async () => undefined, async () => assert.fail("nothing to check")).run(job({ incremental: true }), await context());
    assert.equal(none.decision, NO_PACKAGE_REASON);
    const because = await withUpToDate(inner, async () => assert.fail("must not look"), async () => assert.fail("must not check"))
      .run(job({ incremental: true, rebuildReason: "rebuilt: dependency nbpatch-20100124 was rebuilt" }), await context());
    assert.equal(because.decision, "rebuilt: dependency nbpatch-20100124 was rebuilt");
    assert.equal(inner.calls.length, 3);
  });
});

describe("byJobKind and the scan executor", () => {
  function scanner(): Scanner & { scanned: string[][] } {
    const scanned: string[][] = [];
    return {
      name: "test scanner",
      scanned,
      async scan(locations) {
        scanned.push([...locations]);
        return locations.map((location) => location === "bad/pkg"
          ? { location, pbulkIndex: "", error: "bmake pbulk-index exited with status 1: no Makefile", durationMs: 3 }
          : { location, pbulkIndex: `PKGNAME=${location.split("/")[1]}-1\nPKG_LOCATION=${location}\n`, error: "", durationMs: 2 });
      },
      async enumerate() { return ["a/one", "b/two"]; },
      async unchangedSince(location) { return location === "same/pkg"; },
    };
  }

  test("builds go to the build executor, scans to the scan executor; an agent without one says so", async () => {
    const build = recording(() => succeeded(1, "p"), "pkgsrc");
    const s = scanner();
    await byJobKind(build, createScanExecutor(s)).run(job(), await context());
    const r = await byJobKind(build, createScanExecutor(s)).run(job({ scan: true }), await context());
    assert.equal(build.calls.length, 1);
    assert.deepEqual(r.scanOutput?.enumerated, []);
    const none = await byJobKind(build, undefined).run(job({ scan: true }), await context());
    assert.equal(none.outcome, JobOutcome.FAILED);
    assert.match(none.failureReason, /cannot scan/);
  });

  test("a scan reuses unchanged locations when asked, scans the rest, and keeps the task's order", async () => {
    const s = scanner();
    const a = job({ scan: true });
    a.scan!.reuse = true;
    a.scan!.locations = [
      { location: "new/pkg", scanDepends: [] },
      { location: "same/pkg", scanDepends: ["Makefile"], lastScanned: timestampFromMs(1000) },
      { location: "bad/pkg", scanDepends: ["Makefile"], lastScanned: timestampFromMs(1000) },
    ].map((l) => create(ScanLocationSchema, l));
    const r = await createScanExecutor(s).run(a, await context());
    assert.equal(r.outcome, JobOutcome.SUCCEEDED);
    assert.deepEqual(s.scanned, [["new/pkg", "bad/pkg"]]);
    assert.deepEqual(r.scanOutput!.locations.map((l) => [l.location, l.reused, l.error !== ""]), [["new/pkg", false, false], ["same/pkg", true, false], ["bad/pkg", false, true]]);
    assert.match(r.scanOutput!.locations[0]!.pbulkIndex, /PKG_LOCATION=new\/pkg/);
    a.scan!.reuse = false;
    await createScanExecutor(s).run(a, await context());
    assert.deepEqual(s.scanned[1], ["new/pkg", "same/pkg", "bad/pkg"]);
  });

  test("an enumerate task returns the tree's locations", async () => {
    const a = job({ scan: true });
    a.scan!.enumerate = true;
    const r = await createScanExecutor(scanner()).run(a, await context());
    assert.deepEqual(r.scanOutput!.enumerated, ["a/one", "b/two"]);
  });
});

describe("command executor", () => {
  test("the command gets the job and its slot as PKGFARM_* and writes the package", async () => {
    const ex = createCommandExecutor({
      command: ["/bin/sh", "-c", 'env | grep ^PKGFARM_ | sort > "$PKGFARM_WORKDIR/env"; echo built > "$PKGFARM_OUTPUT"'],
      treeDir: "/tree", timeoutMs: 10_000, baseEnv: { PATH: "/usr/bin:/bin" },
    });
    const ctx = await context(undefined, 3);
    const r = await ex.run(job(), ctx);
    assert.equal(r.outcome, JobOutcome.SUCCEEDED, r.failureReason);
    assert.equal(r.outputPath, ctx.workdir.outputPath);
    const env = readFileSync(join(ctx.workdir.dir, "env"), "utf8");
    assert.match(env, /^PKGFARM_SLOT=3$/m);
    assert.match(env, /^PKGFARM_LOCATION=pkgtools\/digest$/m);
    assert.match(env, /^PKGFARM_TREE=\/tree$/m);
  });

  test("a command that writes no package fails, saying where it should have been", async () => {
    const ex = createCommandExecutor({ command: ["/bin/true"], treeDir: "/tree", timeoutMs: 10_000, baseEnv: {} });
    const ctx = await context();
    const r = await ex.run(job(), ctx);
    assert.equal(r.outcome, JobOutcome.FAILED);
    assert.equal(r.failureReason, `the build command exited 0 but wrote no package at ${ctx.workdir.outputPath}`);
  });
});

describe("slot pool", () => {
  test("hands out the lowest free slot, takes it back, and refuses when all are busy", () => {
    const pool = createSlotPool(2);
    assert.equal(pool.acquire(), 0);
    assert.equal(pool.acquire(), 1);
    assert.throws(() => pool.acquire(), (e: unknown) => e instanceof NoFreeSlot && /all 2 slots/.test(e.message));
    pool.release(0);
    assert.equal(pool.busy(), 1);
    assert.equal(pool.acquire(), 0);
  });
});
