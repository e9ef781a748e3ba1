import type { Steps } from "./steps.js";
import { createDurationModel, type DurationModel, type MeasuredOn, type Prediction, type PredictionInput } from "./duration-model.js";

/**
 * DurationHistory knows how long packages took to build before, and guesses
 * for those never built. The critical path policy reads it; every
 * successful MarkDone writes it, so the next build of the same tree is
 * scheduled with what this one learnt.
 */
export interface DurationHistory {
  /**
   * Expected build time in ms at reference speed, or undefined when neither
   * the package nor its location was built before (on platform, when given,
   * else anywhere).
   */
  expectedMs(pkgname: string, location: string, platform?: string): number | undefined;
  /** A finished build: where says the platform and the host, so hosts of other speeds are told apart. */
  record(pkgname: string, location: string, durationMs: number, where?: MeasuredOn): void;
  /** A typical duration (the median of what is known), for packages never built. */
  typicalMs(): number | undefined;
  /** Expected durations of a build's packages, measured where known and predicted where not (see duration-model.ts), in slices. */
  predict(platform: string, input: PredictionInput): Steps<Prediction[]>;
}

/** BuildHistoryRow is one past build, as bob's history CSV records it. */
export interface BuildHistoryRow {
  readonly location: string;
  readonly pkgname: string;
  readonly succeeded: boolean;
  readonly durationMs: number;
}

/**
 * createDurationHistory starts from an imported table (bob's history CSV):
 * the last duration per PKGNAME, as platform "" (any), and predicts the rest.
 */
export function createDurationHistory(rows: readonly BuildHistoryRow[] = []): DurationModel {
  return createDurationModel(rows);
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
