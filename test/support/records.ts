import type { DepGraphOptions } from "../../services/depgraph/core/depgraph.js";
import { createDurationHistory } from "../../services/depgraph/core/history.js";
import { DEFAULT_PBULK_WEIGHT, NO_SCAN_VARS, type ScanRecord } from "../../services/depgraph/core/scan-record.js";

export interface RecordSpec {
  pkgname: string;
  location: string;
  /** "pattern location" pairs, e.g. "gmake>=3.81 devel/gmake". */
  deps?: string[];
  fail?: string;
  skip?: string;
  multiVersion?: string;
  weight?: number;
}

/** record makes a ScanRecord the way the parser would, for core tests. */
export function record(spec: RecordSpec): ScanRecord {
  return {
    pkgname: spec.pkgname,
    location: spec.location,
    dependencies: (spec.deps ?? []).map((d) => {
      const [pattern, location] = d.split(" ");
      return { pattern: pattern!, location: location! };
    }),
    failReason: spec.fail ?? "",
    skipReason: spec.skip ?? "",
    multiVersion: spec.multiVersion ?? "",
    scanDepends: "",
    pbulkWeight: spec.weight ?? DEFAULT_PBULK_WEIGHT,
    categories: [spec.location.split("/")[0]!],
    maintainer: "pkgsrc-users@NetBSD.org",
    resolvedByPbulk: undefined,
    vars: NO_SCAN_VARS,
    line: 0,
  };
}

/** A fake clock: tests move time by hand instead of sleeping. */
export function fakeClock(start = 1_700_000_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Sequential ids, so assertions can name leases. */
export function sequentialIds(prefix = "id"): () => string {
  let n = 0;
  return () => `${prefix}-${++n}`;
}

/** The DepGraph options core tests share: a fake clock, no history, short leases, two losses. */
export function testDepGraphOptions(overrides: Partial<DepGraphOptions> = {}): DepGraphOptions {
  return {
    now: fakeClock().now,
    newId: sequentialIds(),
    history: createDurationHistory(),
    defaultPolicy: "critical-path",
    defaultLeaseMs: 60_000,
    maxLeaseMs: 3_600_000,
    maxLosses: 2,
    fallbackDurationMs: 60_000,
    ...overrides,
  };
}

export const SHARED_PRESOLVE = new URL("../../../../shared/data/pkgsrc/presolve.txt.gz", import.meta.url);
export const SHARED_HISTORY = new URL("../../../../shared/data/pkgsrc/history-bulk-large.csv", import.meta.url);
