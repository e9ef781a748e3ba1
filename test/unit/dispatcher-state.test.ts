import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConnectRequestSchema } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { AgentAlreadyConnected, AgentRegistry, JobNotHeld } from "../../services/dispatcher/core/registry.js";
import { uploadFailureAction } from "../../services/dispatcher/core/upload-failure.js";
import { grpcCodeName } from "../../services/shared/index.js";
import { refusal } from "../../services/dispatcher/wire.js";

const job = (pkgname: string, leaseId = `lease-${pkgname}`) => ({ buildId: "b1", pkgname, leaseId });

describe("dispatcher agent registry", () => {
  test("a heartbeat that no longer lists an accepted job gives it back; one still on its way is spared for a heartbeat interval", () => {
    const registry = new AgentRegistry({ heartbeatTimeoutMs: 10_000 });
    const agent = registry.register({ id: "a1", platform: "P", slots: 3 }, 0);
    const accepted = registry.hold(agent, job("accepted-1.0"), 0);
    accepted.accepted = true;
    const inFlight = registry.hold(agent, job("inflight-1.0"), 900);
    const listed = registry.hold(agent, job("listed-1.0"), 0);
    listed.accepted = true;
    // The heartbeat at 1000 lists only "listed"; the interval is 500.
    assert.deepEqual(registry.notListed(agent, [job("listed-1.0")], 1000, 500).map((j) => j.pkgname), ["accepted-1.0"]);
    // Later, the unaccepted one counts too: it should have been in a heartbeat by now.
    assert.deepEqual(registry.notListed(agent, [job("listed-1.0")], 1400, 500).map((j) => j.pkgname), ["accepted-1.0", "inflight-1.0"]);
    void inFlight;
  });

  test("a job listed under another lease is not the one held: it counts as not listed", () => {
    const registry = new AgentRegistry({ heartbeatTimeoutMs: 10_000 });
    const agent = registry.register({ id: "a1", platform: "P", slots: 1 }, 0);
    registry.hold(agent, job("x-1.0", "new"), 0).accepted = true;
    assert.deepEqual(registry.notListed(agent, [job("x-1.0", "old")], 10, 500).map((j) => j.leaseId), ["new"]);
    assert.deepEqual(registry.notListed(agent, [job("x-1.0", "new")], 10, 500), []);
  });

  test("held() checks the lease id; release frees the slot; a second stream for an id is refused", () => {
    const registry = new AgentRegistry({ heartbeatTimeoutMs: 1000 });
    const agent = registry.register({ id: "a1", platform: "P", slots: 2 }, 0);
    assert.throws(() => registry.register({ id: "a1", platform: "P", slots: 1 }, 0), AgentAlreadyConnected);
    const held = registry.hold(agent, job("x-1.0"), 0);
    assert.equal(registry.freeSlotsFor("P"), 1);
    assert.equal(registry.held(agent, job("x-1.0")), held);
    assert.throws(() => registry.held(agent, job("x-1.0", "forged")), JobNotHeld);
    registry.release(held);
    assert.equal(registry.freeSlotsFor("P"), 2);
    assert.equal(registry.holderOf("b1", "x-1.0"), undefined);
  });

  test("heartbeat deadlines move with every message and expire agents that fall silent", () => {
    const registry = new AgentRegistry({ heartbeatTimeoutMs: 1000 });
    const a = registry.register({ id: "a", platform: "P", slots: 1 }, 0);
    registry.register({ id: "b", platform: "P", slots: 1 }, 0);
    registry.touch(a, 800);
    assert.equal(registry.nextDeadline(), 1000);
    assert.deepEqual(registry.expired(1000).map((x) => x.id), ["b"]);
    assert.deepEqual(registry.expired(1799).map((x) => x.id), ["b"]);
    assert.deepEqual(registry.expired(1800).map((x) => x.id), ["a", "b"]);
  });
});

describe("dispatcher upload failures", () => {
  test("a package that cannot be stored fails the job; a store that cannot store gives it back; a broken agent stream is the agent's to decide", () => {
    assert.equal(uploadFailureAction("dispatcher", "DATA_LOSS"), "fail");
    assert.equal(uploadFailureAction("dispatcher", "RESOURCE_EXHAUSTED"), "fail");
    assert.equal(uploadFailureAction("dispatcher", "INVALID_ARGUMENT"), "fail");
    assert.equal(uploadFailureAction("dispatcher", "INTERNAL"), "give-back");
    assert.equal(uploadFailureAction("dispatcher", "UNAVAILABLE"), "give-back");
    assert.equal(uploadFailureAction("dispatcher", "FAILED_PRECONDITION"), "nothing");
    assert.equal(uploadFailureAction("agent-stream", "CANCELED"), "agent-decides");
    assert.equal(uploadFailureAction("agent-stream", "DATA_LOSS"), "agent-decides");
  });
});

describe("refusals on the agent stream", () => {
  test("codes are named as gRPC names them", () => {
    assert.equal(grpcCodeName(Code.FailedPrecondition), "FAILED_PRECONDITION");
    assert.equal(grpcCodeName(Code.DataLoss), "DATA_LOSS");
    assert.equal(grpcCodeName(Code.Unavailable), "UNAVAILABLE");
    assert.equal(grpcCodeName(Code.Canceled), "CANCELED");
  });

  test("a refusal names the refused message, its job, the code and the reason", () => {
    const request = create(ConnectRequestSchema, { message: { case: "finished", value: { job: job("x-1.0") } } });
    const answer = refusal(request, new ConnectError("no upload", Code.FailedPrecondition));
    assert.equal(answer.message.case, "refused");
    const value = answer.message.value as { job?: { pkgname: string; leaseId: string }; message: string; code: string; reason: string };
    assert.deepEqual({ pkgname: value.job?.pkgname, leaseId: value.job?.leaseId, message: value.message, code: value.code, reason: value.reason },
      { pkgname: "x-1.0", leaseId: "lease-x-1.0", message: "finished", code: "FAILED_PRECONDITION", reason: "no upload" });
    const empty = refusal(create(ConnectRequestSchema, {}), new ConnectError("empty", Code.InvalidArgument));
    assert.deepEqual([(empty.message.value as { message: string }).message, (empty.message.value as { job?: unknown }).job], ["empty", undefined]);
  });
});
