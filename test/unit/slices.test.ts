import assert from "node:assert/strict";
import { test } from "node:test";
import { setImmediate as nextTurn } from "node:timers/promises";
import type { Steps } from "../../services/depgraph/core/steps.js";
import { pushInSlices, runSliced } from "../../services/depgraph/slices.js";

test("runSliced lets other work run between slices and stops at an abort, closing the steps", async () => {
  let closed = false;
  let done = 0;
  function* work(): Steps<number> {
    try {
      for (let i = 0; i < 1000; i++) {
        done++;
        yield;
      }
      return done;
    } finally {
      closed = true;
    }
  }
  // Slices of 0 ms: one step each, so the other task below runs in between.
  let turns = 0;
  let running = true;
  const other = (async () => {
    while (running) {
      turns++;
      await nextTurn();
    }
  })();
  assert.equal(await runSliced(work(), undefined, 0), 1000);
  running = false;
  await other;
  assert.ok(turns > 100, `the other task ran ${turns} times`);
  assert.ok(closed);

  closed = false;
  done = 0;
  const controller = new AbortController();
  const stopped = runSliced(work(), controller.signal, 0);
  while (done < 10) await nextTurn();
  controller.abort(new Error("call cancelled"));
  await assert.rejects(stopped, /call cancelled/);
  assert.ok(done < 1000 && closed, `stopped after ${done} steps, closed ${closed}`);
});

test("pushInSlices hands over whole lines and every character, and yields on a long text", async () => {
  const line = (i: number) => `KEY${i}=välue ✓ ${"x".repeat(i % 97)}\n`;
  const text = Array.from({ length: 20_000 }, (_, i) => line(i)).join("") + "LAST=no newline";
  const pieces: string[] = [];
  let turns = 0;
  let running = true;
  const other = (async () => {
    while (running) {
      turns++;
      await nextTurn();
    }
  })();
  await pushInSlices((p) => pieces.push(p), text, undefined, 0);
  running = false;
  await other;
  assert.equal(pieces.join(""), text);
  assert.ok(pieces.length > 5, `${pieces.length} pieces`);
  assert.ok(pieces.slice(0, -1).every((p) => p.endsWith("\n")), "cut after a newline");
  assert.ok(turns >= pieces.length - 1, `${turns} turns for ${pieces.length} pieces`);
});
