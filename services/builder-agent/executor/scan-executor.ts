// The scan executor runs a scan job (issue 9): the locations of its task
// scanned with `bmake pbulk-index` (or the operator's scan command), those
// whose SCAN_DEPENDS did not change since their last scan skipped when the
// task asks for reuse (pbulk's reuse_scan_results), or, for an enumerate
// task, the tree's locations listed. What to scan with is a Scanner, so the
// same executor serves a pkgsrc tree and any other tree.

import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { ScanLocationResultSchema, ScanOutputSchema, type ScanLocationResult } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import { cancelled, elapsedSince, failed, succeeded, type Executor } from "./executor.js";

/** LocationScan is what a Scanner says about one location (pkgsrc/scan.ts's LocationScan). */
export interface LocationScan {
  readonly location: string;
  /** pbulk-index records of every variant, PKG_LOCATION added; "" on error. */
  readonly pbulkIndex: string;
  /** Why it failed (with the tail of bmake's stderr); "" on success. */
  readonly error: string;
  readonly durationMs: number;
}

/** Scanner scans locations of one tree; the slot says whose sandbox to use. */
export interface Scanner {
  readonly name: string;
  scan(locations: readonly string[], slot: number, signal: AbortSignal): Promise<LocationScan[]>;
  enumerate(slot: number, signal: AbortSignal): Promise<string[]>;
  /** True when none of the location's scanDepends changed since lastScannedMs (it may then be reused). */
  unchangedSince(location: string, scanDepends: readonly string[], lastScannedMs: number, slot: number): Promise<boolean>;
}

export function createScanExecutor(scanner: Scanner): Executor {
  return {
    name: "scan",
    async run(job, ctx) {
      const started = performance.now();
      const task = job.scan!;
      try {
        if (task.enumerate) {
          ctx.log.write("scan", `=== enumerating the tree with ${scanner.name}\n`);
          const enumerated = await scanner.enumerate(ctx.slot, ctx.signal);
          if (ctx.signal.aborted) return cancelled(elapsedSince(started));
          ctx.log.write("scan", `=== ${enumerated.length} locations\n`);
          return succeeded(elapsedSince(started), "", { scanOutput: create(ScanOutputSchema, { enumerated }) });
        }
        const results = new Map<string, ScanLocationResult>();
        const toScan: string[] = [];
        for (const loc of task.locations) {
          if (task.reuse && loc.lastScanned !== undefined && loc.scanDepends.length > 0
            && await scanner.unchangedSince(loc.location, loc.scanDepends, timestampMs(loc.lastScanned), ctx.slot)) {
            results.set(loc.location, create(ScanLocationResultSchema, { location: loc.location, reused: true, duration: durationFromMs(0) }));
          } else {
            toScan.push(loc.location);
          }
        }
        ctx.log.write("scan", `=== ${toScan.length} locations to scan with ${scanner.name}, ${results.size} reused\n`);
        for (const r of await scanner.scan(toScan, ctx.slot, ctx.signal)) {
          if (r.error !== "") ctx.log.write("scan", `${r.location}: ${r.error}\n`);
          results.set(r.location, create(ScanLocationResultSchema, { location: r.location, pbulkIndex: r.pbulkIndex, error: r.error, duration: durationFromMs(r.durationMs) }));
        }
        if (ctx.signal.aborted) return cancelled(elapsedSince(started));
        // One result per location of the task, in the task's order.
        const locations = task.locations.map((l) => results.get(l.location)
          ?? create(ScanLocationResultSchema, { location: l.location, error: "the scanner returned nothing for this location" }));
        return succeeded(elapsedSince(started), "", { scanOutput: create(ScanOutputSchema, { locations }) });
      } catch (e) {
        if (ctx.signal.aborted) return cancelled(elapsedSince(started));
        return failed(elapsedSince(started), `the scan failed: ${e instanceof Error ? e.message : String(e)}`, "scan");
      }
    },
  };
}
