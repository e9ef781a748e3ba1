import assert from "node:assert/strict";
import { test } from "node:test";
import { recordsEvents } from "../../services/depgraph/meta-events.js";

test("a large rescan is split into records events of whole locations, each under NATS' payload limit", () => {
  const big = "x".repeat(200 * 1024);
  const texts = new Map<string, string[]>([
    ["devel/a", [big, big]],
    ["devel/b", [big]],
    ["devel/gone", []],
    ["devel/c", [big]],
    ["devel/d", ["small"]],
  ]);
  const events = recordsEvents(texts);
  assert.deepEqual(events.map((e) => e.locations), [["devel/a"], ["devel/b", "devel/gone", "devel/c", "devel/d"]]);
  for (const e of events) assert.ok(JSON.stringify(e).length < 1024 * 1024);
  assert.equal(events.map((e) => e.pbulkIndex).join(""), [big, big, big, big, "small"].join(""));
});
