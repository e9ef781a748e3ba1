import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobOutcome } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { RefusalSchema, RunningJobSchema } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { ReportedJobs, refusalAction, uploadFailureStep, uploadUntilSettled, MAX_UPLOAD_TRIES } from "../../services/builder-agent/refusals.js";

const job = (pkgname: string, leaseId = "l1") => create(RunningJobSchema, { buildId: "b1", pkgname, leaseId });
const refused = (message: string, code: string, j = job("x-1.0")) => create(RefusalSchema, { job: j, message, code, reason: "because" });

describe("agent: refusals", () => {
  test("a refused success is given back; a refused failure for a job the dispatcher no longer holds is forgotten", () => {
    const reported = new ReportedJobs();
    reported.note(job("ok-1.0"), JobOutcome.SUCCEEDED, 0);
    reported.note(job("bad-1.0"), JobOutcome.FAILED, 0);
    const release = refusalAction(refused("finished", "FAILED_PRECONDITION", job("ok-1.0")), reported);
    assert.equal(release.kind, "release");
    assert.equal(release.kind === "release" && release.job.pkgname, "ok-1.0");
    assert.match(release.kind === "release" ? release.reason : "", /refused the result \(FAILED_PRECONDITION: because\)/);
    assert.equal(refusalAction(refused("finished", "FAILED_PRECONDITION", job("bad-1.0")), reported).kind, "log");
    // Each report is acted on once: a second refusal of it changes nothing.
    assert.equal(refusalAction(refused("finished", "FAILED_PRECONDITION", job("ok-1.0")), reported).kind, "log");
    assert.equal(reported.size, 0);
  });

  test("a refusal of a result the agent never sent, or under another lease, is only logged", () => {
    const reported = new ReportedJobs();
    reported.note(job("x-1.0", "mine"), JobOutcome.SUCCEEDED, 0);
    assert.equal(refusalAction(refused("finished", "FAILED_PRECONDITION", job("x-1.0", "other")), reported).kind, "log");
    assert.equal(refusalAction(refused("finished", "FAILED_PRECONDITION", job("y-1.0")), reported).kind, "log");
    assert.equal(refusalAction(create(RefusalSchema, { message: "finished", code: "INVALID_ARGUMENT" }), reported).kind, "log");
  });

  test("a refused acceptance or log for a job the dispatcher does not hold stops the job; other refusals are logged", () => {
    const reported = new ReportedJobs();
    assert.equal(refusalAction(refused("accepted", "FAILED_PRECONDITION"), reported).kind, "stop");
    assert.equal(refusalAction(refused("log", "FAILED_PRECONDITION"), reported).kind, "stop");
    assert.equal(refusalAction(refused("log", "INTERNAL"), reported).kind, "log");
    assert.equal(refusalAction(refused("released", "FAILED_PRECONDITION"), reported).kind, "log");
    assert.equal(refusalAction(refused("heartbeat", "INVALID_ARGUMENT"), reported).kind, "log");
  });

  test("reported jobs are kept for a bounded time and number", () => {
    const reported = new ReportedJobs(1000, 3);
    for (let i = 0; i < 5; i++) reported.note(job(`p${i}-1.0`), JobOutcome.SUCCEEDED, i);
    assert.equal(reported.size, 3);
    assert.equal(reported.take(job("p0-1.0")), undefined);
    assert.equal(reported.take(job("p4-1.0")), JobOutcome.SUCCEEDED);
    reported.note(job("late-1.0"), JobOutcome.FAILED, 5000);
    assert.equal(reported.size, 1, "entries older than keepMs are dropped");
  });
});

describe("agent: upload failures", () => {
  test("each failure ends in a retry, a failed result, a give-back, or forgetting the job", () => {
    assert.deepEqual(uploadFailureStep("UNAVAILABLE", "down", 1), { kind: "retry", delayMs: 500 });
    assert.deepEqual(uploadFailureStep("INTERNAL", "disk", 2), { kind: "retry", delayMs: 1000 });
    assert.equal(uploadFailureStep("UNAVAILABLE", "down", MAX_UPLOAD_TRIES).kind, "release");
    assert.equal(uploadFailureStep("RESOURCE_EXHAUSTED", "too big", 1).kind, "fail");
    assert.equal(uploadFailureStep("DATA_LOSS", "corrupt", 1).kind, "fail");
    assert.equal(uploadFailureStep("FAILED_PRECONDITION", "not held", 1).kind, "forget");
  });

  test("uploadUntilSettled retries a transient failure and returns the package", async () => {
    let calls = 0;
    const settled = await uploadUntilSettled(async () => {
      calls++;
      if (calls === 1) throw new ConnectError("blip", Code.Unavailable);
      return { $typeName: "pkgfarm.v1.BinaryPackage", fileName: "x-1.0.tgz", sha256: "ab", sizeBytes: 1n };
    }, { signal: new AbortController().signal, connected: () => true });
    assert.equal(calls, 2);
    assert.equal(settled.kind, "uploaded");
  });

  test("uploadUntilSettled reports a package over the size limit as a failure at once, and waits for a stream that is down", async () => {
    let calls = 0;
    const tooBig = await uploadUntilSettled(async () => {
      calls++;
      throw new ConnectError("9 GiB is more than the store accepts", Code.ResourceExhausted);
    }, { signal: new AbortController().signal, connected: () => true });
    assert.equal(calls, 1);
    assert.equal(tooBig.kind, "fail");
    assert.match(tooBig.kind === "fail" ? tooBig.reason : "", /RESOURCE_EXHAUSTED.*more than the store accepts/);
    const later = await uploadUntilSettled(async () => {
      throw new ConnectError("down", Code.Unavailable);
    }, { signal: new AbortController().signal, connected: () => false });
    assert.equal(later.kind, "later");
  });

  test("uploadUntilSettled stops retrying when the job is cancelled", async () => {
    const cancel = new AbortController();
    const settled = uploadUntilSettled(async () => {
      setImmediate(() => cancel.abort());
      throw new ConnectError("down", Code.Unavailable);
    }, { signal: cancel.signal, connected: () => true });
    assert.equal((await settled).kind, "forget");
  });
});
