// The shared tree's scanner: on a single-host farm (and in `pkgfarm up`) the
// scan helper on depgraph's own host takes the shared tree's scan jobs, the
// way agents take their platform's. Going through the same scan jobs keeps
// one path for closures, progress and problems.

import type { Logger } from "pino";
import { SHARED_TREE, type DepGraph, type ScanAssignment } from "./core/depgraph.js";
import type { ScannedLocation } from "./core/scan-run.js";
import { runScanHelper, type ScanHelperOptions } from "./scan-helper.js";

export const LOCAL_SCANNER_ID = "depgraph-scan-helper";

export interface LocalScannerOptions {
  readonly depgraph: DepGraph;
  readonly scanHelper: ScanHelperOptions;
  readonly logger: Logger;
}

/** startLocalScanner runs the shared tree's scan jobs until stop(). */
export function startLocalScanner(options: LocalScannerOptions): { stop(): Promise<void> } {
  const { depgraph, scanHelper, logger } = options;
  const stopped = new AbortController();
  let wake: (() => void) | undefined;
  const offReady = depgraph.onReady(() => wake?.());
  const running = new Set<Promise<void>>();

  const run = async (a: ScanAssignment): Promise<void> => {
    const ref = { buildId: a.scan.id, pkgname: a.job.name, leaseId: a.lease.id };
    try {
      if (a.job.enumerate) {
        depgraph.finishScanJob({ ...ref, failure: "the scan helper on depgraph's host cannot enumerate the tree; import a whole scan (pkgfarm import) or let agents scan", locations: [], enumerated: undefined, problems: [] });
        return;
      }
      const outcome = await runScanHelper(scanHelper, a.job.locations, stopped.signal);
      if (stopped.signal.aborted) return;
      const failed = new Map<string, string>();
      for (const p of outcome.problems) if (p.location !== "" && !failed.has(p.location)) failed.set(p.location, p.problem);
      const locations: ScannedLocation[] = a.job.locations.map((location) => {
        const records = outcome.records.filter((r) => r.location === location);
        return { location, records, reused: false, error: records.length > 0 ? "" : failed.get(location) ?? "the scan helper printed no record" };
      });
      depgraph.finishScanJob({ ...ref, failure: "", locations, enumerated: undefined, problems: outcome.problems.filter((p) => !failed.has(p.location) || locations.some((l) => l.location === p.location && l.error === "")) });
    } catch (e) {
      logger.error({ err: e, scanId: a.scan.id, job: a.job.name }, "local scan job failed");
      try {
        depgraph.returnJobs([ref], true, `the scan helper failed: ${e instanceof Error ? e.message : String(e)}`);
      } catch {
        // The lease is gone already (the scan was abandoned): nothing to give back.
      }
    }
  };

  const loop = (async () => {
    const slots = Math.max(1, scanHelper.concurrency);
    while (!stopped.signal.aborted) {
      const free = slots - running.size;
      const assignments = free > 0 ? depgraph.nextScanJobs(SHARED_TREE, LOCAL_SCANNER_ID, free, undefined) : [];
      for (const a of assignments) {
        const p = run(a).finally(() => {
          running.delete(p);
          wake?.();
        });
        running.add(p);
      }
      if (assignments.length > 0) continue;
      // stop() aborts and then wakes: no abort listener here, or every
      // idle turn of the loop would leave one behind on the signal.
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  })();

  return {
    async stop() {
      stopped.abort();
      offReady();
      wake?.();
      await loop;
      await Promise.allSettled([...running]);
    },
  };
}
