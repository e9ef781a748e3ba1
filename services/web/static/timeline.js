// timeline.js: how many of a build's jobs were done, running and left at
// each moment, worked out from the jobs themselves (when each started on a
// host and when it ended), so the graph is whole even for a build that ran
// before the page was opened. Pure: no DOM, no clock of its own.

import { millis, seconds, TERMINAL } from "./format.js";

/**
 * jobSpan says when a job ran: start (its lease, undefined when it never
 * ran) and end (undefined while it has not ended). A job that ended without
 * running (prefailed, in a cycle, blocked by a failure, cancelled) ended
 * when its blocker did, or when the build began.
 */
export function jobSpan(job, byName, buildStart, buildEnd, depth = 0) {
  const start = job.endTime === undefined ? millis(job.startTime) : Math.min(millis(job.startTime) ?? job.endTime, job.endTime);
  if (!TERMINAL.has(job.state)) return { start, end: undefined };
  if (job.endTime !== undefined) return { start, end: job.endTime };
  if (start !== undefined && job.duration !== undefined) return { start, end: start + seconds(job.duration) * 1000 };
  if (job.state === "JOB_STATE_INDIRECT_FAILED" && job.blockedBy && depth < 64) {
    const blocker = byName.get(job.blockedBy);
    if (blocker !== undefined) return { start: undefined, end: jobSpan(blocker, byName, buildStart, buildEnd, depth + 1).end ?? buildStart };
  }
  if (job.state === "JOB_STATE_CANCELLED") return { start, end: buildEnd ?? buildStart };
  return { start, end: start ?? buildStart };
}

/**
 * timeline samples the build at `samples` moments from its creation to its
 * end (or now): { start, end, total, points: [{ t, done, running, left }] }.
 */
export function timeline(build, jobs, now, samples = 120) {
  const start = millis(build.createTime) ?? now;
  const finish = millis(build.finishTime);
  const end = Math.max(start + 1000, finish ?? now);
  const byName = new Map(jobs.map((j) => [j.pkgname, j]));
  const spans = jobs.map((j) => jobSpan(j, byName, start, finish));
  const total = Math.max(build.totalJobs ?? 0, jobs.length);
  const points = [];
  for (let i = 0; i <= samples; i++) {
    const t = start + ((end - start) * i) / samples;
    let done = 0;
    let running = 0;
    for (const span of spans) {
      if (span.end !== undefined && span.end <= t) done++;
      else if (span.start !== undefined && span.start <= t) running++;
    }
    points.push({ t, done, running, left: Math.max(0, total - done - running) });
  }
  return { start, end, total, points };
}
