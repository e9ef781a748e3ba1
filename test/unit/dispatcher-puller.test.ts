import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import type { Assignment } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { AgentRegistry } from "../../services/dispatcher/core/registry.js";
import type { DepGraphLink } from "../../services/dispatcher/depgraph-link.js";
import { createPullers, MAX_PULL_RETRY_MS, pullRetryDelayMs } from "../../services/dispatcher/puller.js";

test("the wait before asking a failing depgraph again doubles from 500 ms and stays at most 5 s", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 50].map(pullRetryDelayMs), [500, 1000, 2000, 4000, 5000, 5000, 5000]);
  assert.equal(MAX_PULL_RETRY_MS, 5_000);
});

test("once one platform's NextReadyJob succeeds, a platform waiting out a backoff asks at once", { timeout: 20_000 }, async () => {
  const registry = new AgentRegistry({ heartbeatTimeoutMs: 60_000 });
  registry.register({ id: "a", platform: "A", slots: 1 }, 0);
  registry.register({ id: "b", platform: "B", slots: 1 }, 0);
  const stop = new AbortController();
  // A's call waits like a long poll until the test lets it answer; B's fail
  // (depgraph unreachable) until depgraph is back.
  let answerA: (() => void) | undefined;
  const bCalls: number[] = [];
  let up = false;
  const link: Pick<DepGraphLink, "nextReadyJobs"> = {
    nextReadyJobs: (platform, _max, signal) => new Promise<Assignment[]>((resolve, reject) => {
      signal.addEventListener("abort", () => reject(new ConnectError("aborted", Code.Canceled)), { once: true });
      if (platform === "A") {
        answerA = () => resolve([]);
        return;
      }
      bCalls.push(performance.now());
      if (!up) reject(new ConnectError("connect ECONNREFUSED 127.0.0.1:9090", Code.Unavailable));
    }),
  };
  const pullers = createPullers({ registry, depgraph: link as DepGraphLink, logger: pino({ level: "silent" }), signal: stop.signal, place: () => {} });
  try {
    pullers.wake("A");
    pullers.wake("B");
    // Three failures: B now waits pullRetryDelayMs(3) = 2 s before its fourth call.
    const deadline = performance.now() + 10_000;
    while (bCalls.length < 3) {
      assert.ok(performance.now() < deadline, "B asked three times");
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setImmediate(r));
    up = true;
    const back = performance.now();
    answerA!();
    while (bCalls.length < 4) {
      assert.ok(performance.now() < back + 10_000, "B asked again");
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(bCalls[3]! - back < 1500, `B asked ${Math.round(bCalls[3]! - back)} ms after depgraph was back, not after its 2 s backoff`);
  } finally {
    stop.abort();
  }
});
