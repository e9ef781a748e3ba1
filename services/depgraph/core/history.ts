/**
 * DurationHistory knows how long packages took to build before. The critical
 * path policy reads it; every successful MarkDone writes it, so the next
 * build of the same tree is scheduled with what this one learnt.
 */
export interface DurationHistory {
  /** Expected build time in ms, or undefined when neither the package nor its location was built before. */
  expectedMs(pkgname: string, location: string): number | undefined;
  record(pkgname: string, location: string, durationMs: number): void;
  /** A typical duration (the median of what is known), for packages never built. */
  typicalMs(): number | undefined;
}

/** BuildHistoryRow is one past build, as bob's history CSV records it. */
export interface BuildHistoryRow {
  readonly location: string;
  readonly pkgname: string;
  readonly succeeded: boolean;
  readonly durationMs: number;
}

/**
 * createDurationHistory keeps the last duration per PKGNAME and per location:
 * a new version of a package is expected to take about as long as the old one.
 */
export function createDurationHistory(rows: readonly BuildHistoryRow[] = []): DurationHistory {
  const byPkgname = new Map<string, number>();
  const byLocation = new Map<string, number>();
  let typical: number | undefined;
  const history: DurationHistory = {
    expectedMs(pkgname, location) {
      return byPkgname.get(pkgname) ?? byLocation.get(location);
    },
    record(pkgname, location, durationMs) {
      byPkgname.set(pkgname, durationMs);
      byLocation.set(location, durationMs);
      typical = undefined;
    },
    typicalMs() {
      if (typical === undefined && byPkgname.size > 0) {
        const sorted = [...byPkgname.values()].sort((a, b) => a - b);
        typical = sorted[sorted.length >> 1];
      }
      return typical;
    },
  };
  for (const row of rows) if (row.succeeded) history.record(row.pkgname, row.location, row.durationMs);
  return history;
}

/**
 * parseBuildHistoryCsv reads bob's history CSV (timestamp, pkgpath, pkgname,
 * outcome, stage, make_jobs, duration in ms, ...). Rows that do not parse are
 * skipped: history only guides priorities, it never decides correctness.
 */
export function parseBuildHistoryCsv(text: string): BuildHistoryRow[] {
  const lines = text.split("\n");
  const header = (lines[0] ?? "").split(",");
  const col = (name: string) => header.indexOf(name);
  const [locationAt, pkgnameAt, outcomeAt, durationAt] = [col("pkgpath"), col("pkgname"), col("outcome"), col("duration")];
  if (locationAt < 0 || pkgnameAt < 0 || outcomeAt < 0 || durationAt < 0) return [];
  const rows: BuildHistoryRow[] = [];
  for (const line of lines.slice(1)) {
    const cells = line.split(",");
    const durationMs = Number(cells[durationAt]);
    if (cells.length < header.length || !Number.isFinite(durationMs) || durationMs < 0) continue;
    rows.push({ location: cells[locationAt]!, pkgname: cells[pkgnameAt]!, succeeded: cells[outcomeAt] === "success", durationMs });
  }
  return rows;
}
