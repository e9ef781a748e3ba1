// Translation of scans, scan jobs and waiting builds to the wire; nothing
// here decides anything.
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  BuildMode as WireBuildMode,
  BuildSchema,
  BuildState as WireBuildState,
  ScanProblemSchema,
  ScanSchema,
  ScanScope as WireScanScope,
  ScanState as WireScanState,
  ScanTaskSchema,
  SchedulingPolicy as WireSchedulingPolicy,
  type Build as WireBuild,
  type Scan as WireScan,
  type ScanOutput,
  type ScanProblem,
  type ScanTask,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { PendingBuild, ScanAssignment } from "./core/depgraph.js";
import { InvalidScanRecord } from "./core/errors.js";
import type { ScanRun, ScanScope, ScannedLocation } from "./core/scan-run.js";
import { createScanRecordParser, type ScanRecord } from "./core/scan-record.js";

const scopeToWire: Record<ScanScope, WireScanScope> = {
  tree: WireScanScope.TREE,
  locations: WireScanScope.LOCATIONS,
  closure: WireScanScope.CLOSURE,
};

export function scanScopeFromWire(scope: WireScanScope): ScanScope | undefined {
  return (Object.keys(scopeToWire) as ScanScope[]).find((s) => scopeToWire[s] === scope);
}

export function problemToWire(p: InvalidScanRecord): ScanProblem {
  return create(ScanProblemSchema, { line: p.line, location: p.location, pkgname: p.pkgname, message: p.problem });
}

export function scanToWire(scan: ScanRun): WireScan {
  const o = scan.options;
  return create(ScanSchema, {
    id: o.id,
    platform: o.platform,
    scope: scopeToWire[o.scope],
    state: scan.state === "running" ? WireScanState.RUNNING : scan.state === "finished" ? WireScanState.FINISHED : WireScanState.FAILED,
    rounds: scan.rounds,
    locationsScanned: scan.locationsScanned,
    locationsReused: scan.locationsReused,
    locationsFailed: scan.locationsFailed,
    locationsTotal: scan.locationsTotal,
    jobsTotal: scan.jobsTotal,
    jobsDone: scan.jobsEnded,
    records: scan.records,
    problems: scan.problems.map(problemToWire),
    createTime: timestampFromMs(o.createdAt),
    finishTime: scan.finishedAt === undefined ? undefined : timestampFromMs(scan.finishedAt),
    buildId: o.buildId,
  });
}

/** A build still waiting for its closure scan: no jobs yet. */
export function pendingBuildToWire(pending: PendingBuild): WireBuild {
  const o = pending.options;
  return create(BuildSchema, {
    id: o.id,
    platform: o.platform,
    mode: o.mode === "full" ? WireBuildMode.FULL : WireBuildMode.INCREMENTAL,
    policy: o.policy === "critical-path" ? WireSchedulingPolicy.CRITICAL_PATH : o.policy === "pbulk-weight" ? WireSchedulingPolicy.PBULK_WEIGHT : WireSchedulingPolicy.FIFO,
    state: WireBuildState.SCANNING,
    limitTo: [...o.limitTo],
    createTime: timestampFromMs(o.createdAt),
    packagesDir: o.packagesDir,
    scanId: pending.scanId,
  });
}

export function scanTaskToWire(a: ScanAssignment): ScanTask {
  return create(ScanTaskSchema, {
    scanId: a.scan.id,
    jobName: a.job.name,
    enumerate: a.job.enumerate,
    reuse: a.scan.options.reuse,
    locations: a.job.locations.map((location) => {
      const previous = a.previous.get(location);
      return {
        location,
        lastScanned: previous === undefined ? undefined : timestampFromMs(previous.scannedAt),
        scanDepends: previous === undefined ? [] : [...previous.scanDepends],
      };
    }),
  });
}

/**
 * scanOutputFromWire parses what a scan job brought back: each location's
 * pbulk-index text into records, its problems tagged with the location.
 */
export function scanOutputFromWire(output: ScanOutput | undefined): { locations: ScannedLocation[]; enumerated: string[] | undefined; problems: InvalidScanRecord[] } {
  const problems: InvalidScanRecord[] = [];
  const locations = (output?.locations ?? []).map((result): ScannedLocation => {
    const records: ScanRecord[] = [];
    if (result.error === "" && !result.reused) {
      const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(new InvalidScanRecord(p.line, p.location || result.location, p.pkgname, p.problem)));
      parser.push(result.pbulkIndex);
      parser.end();
    }
    return { location: result.location, records, reused: result.reused, error: result.error };
  });
  const enumerated = output === undefined || output.enumerated.length === 0 ? undefined : [...output.enumerated];
  return { locations, enumerated, problems };
}

export function scanDurationMs(output: ScanOutput | undefined): number {
  let total = 0;
  for (const l of output?.locations ?? []) if (l.duration !== undefined) total += durationMs(l.duration);
  return total;
}
