import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { test } from "node:test";

// The status page's done / running / left series (services/web/static/
// timeline.js, a plain ES module the browser loads as it is), worked out
// from a build's jobs. It is pure, so node runs it directly.

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

interface Point { t: number; done: number; running: number; left: number }
interface Timeline { start: number; end: number; total: number; points: Point[] }
type TimelineFn = (build: object, jobs: object[], now: number, samples?: number) => Timeline;

const { timeline } = await import(pathToFileURL(join(ROOT, "services", "web", "static", "timeline.js")).href) as { timeline: TimelineFn };

const T0 = Date.parse("2026-12-01T10:00:00Z");
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

test("a finished build: jobs count as running from their lease to their end, as done after; blocked and prefailed jobs end with their cause", () => {
  const build = { createTime: at(0), finishTime: at(100), totalJobs: 5, state: "BUILD_STATE_FINISHED" };
  const jobs = [
    { pkgname: "a-1", state: "JOB_STATE_SUCCEEDED", startTime: at(0), duration: "40s" },
    { pkgname: "b-1", state: "JOB_STATE_FAILED", startTime: at(40), duration: "60s" },
    { pkgname: "c-1", state: "JOB_STATE_INDIRECT_FAILED", blockedBy: "b-1" },
    { pkgname: "d-1", state: "JOB_STATE_INDIRECT_FAILED", blockedBy: "c-1" },
    { pkgname: "e-1", state: "JOB_STATE_PREFAILED" },
  ];
  const line = timeline(build, jobs, T0 + 500_000, 10);
  assert.equal(line.start, T0);
  assert.equal(line.end, T0 + 100_000, "a finished build ends at its finish time, not now");
  assert.equal(line.points.length, 11);
  const byTime = new Map(line.points.map((p) => [(p.t - T0) / 1000, p]));
  assert.deepEqual(byTime.get(0), { t: T0, done: 1, running: 1, left: 3 }, "the prefailed job is done at once");
  assert.deepEqual(byTime.get(50), { t: T0 + 50_000, done: 2, running: 1, left: 2 });
  assert.deepEqual(byTime.get(100), { t: T0 + 100_000, done: 5, running: 0, left: 0 }, "the blocked jobs end with b");
  for (const p of line.points) assert.equal(p.done + p.running + p.left, 5);
});

test("a running build: a leased job runs until now, open jobs are left, and transitions' end times count", () => {
  const build = { createTime: at(0), totalJobs: 3, state: "BUILD_STATE_RUNNING" };
  const jobs = [
    { pkgname: "a-1", state: "JOB_STATE_SUCCEEDED", startTime: at(0), endTime: T0 + 10_000 },
    { pkgname: "b-1", state: "JOB_STATE_LEASED", startTime: at(10) },
    { pkgname: "c-1", state: "JOB_STATE_PENDING" },
  ];
  const line = timeline(build, jobs, T0 + 20_000, 4);
  assert.equal(line.end, T0 + 20_000);
  assert.deepEqual(line.points.at(-1), { t: T0 + 20_000, done: 1, running: 1, left: 1 });
  assert.deepEqual(line.points[0], { t: T0, done: 0, running: 1, left: 2 });
});
