/**
 * report.json: the machine-readable report (pbulk's report.bz2 in spirit),
 * and what the next build of the platform diffs against. Its shape is a
 * contract with scripts, so it carries a format tag and only grows.
 */

import { REPORT_STATES, type PreviousReport, type Report, type ReportDiff, type ReportState, type ReportTotals } from "./model.js";

export const REPORT_FORMAT = "pkgfarm-report/1";

/** ReportJsonPackage is one package of report.json. */
export interface ReportJsonPackage {
  readonly pkgname: string;
  readonly location: string;
  readonly state: ReportState;
  /** The phase that failed; "" when none. */
  readonly failedPhase: string;
  /** The package behind an indirect failure; "" when none. */
  readonly blockedBy: string;
  /** Build time in milliseconds; null when it was not built here. */
  readonly durationMs: number | null;
  /** Fail or skip reason, or the build's error; "" when none. */
  readonly reason: string;
  /** Incremental builds: why it was rebuilt or found up to date; "" when none. */
  readonly decision: string;
  readonly maintainer: string;
  readonly breaks: number;
  /** Phase logs as the report links them. */
  readonly logs: ReadonlyArray<{ readonly phase: string; readonly href: string }>;
}

export interface ReportJson {
  readonly format: typeof REPORT_FORMAT;
  readonly buildId: string;
  readonly platform: string;
  /** ISO 8601, UTC. */
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly totals: ReportTotals;
  readonly packages: readonly ReportJsonPackage[];
  /** The comparison with the previous build of the platform; null when there was none. */
  readonly diff: ReportDiff | null;
}

/** InvalidReport: a report.json that cannot be used (to diff against). */
export class InvalidReport extends Error {
  override readonly name = "InvalidReport";
  constructor(
    readonly source: string,
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${source} is not a pkgfarm report.json: ${problem}`, options);
  }
}

export function toReportJson(report: Report): ReportJson {
  return {
    format: REPORT_FORMAT,
    buildId: report.buildId,
    platform: report.platform,
    startedAt: report.startedAt.toISOString(),
    finishedAt: report.finishedAt.toISOString(),
    totals: report.totals,
    packages: report.packages.map((p) => ({
      pkgname: p.pkgname,
      location: p.location,
      state: p.state,
      failedPhase: p.failedPhase ?? "",
      blockedBy: p.blockedBy ?? "",
      durationMs: p.durationMs ?? null,
      reason: p.reason ?? "",
      decision: p.decision ?? "",
      maintainer: p.maintainer ?? "",
      breaks: p.breaks,
      logs: (p.logs ?? []).map((l) => ({ phase: l.phase, href: l.href })),
    })),
    diff: report.diff ?? null,
  };
}

/** renderJson is report.json's text. */
export function renderJson(report: Report): string {
  return `${JSON.stringify(toReportJson(report), null, 2)}\n`;
}

const STATES = new Set<string>(REPORT_STATES);

/**
 * parseReportJson reads a previous report.json, checking what the diff
 * relies on; `source` names it in errors.
 */
export function parseReportJson(text: string, source = "report.json"): PreviousReport & { readonly platform: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InvalidReport(source, `not JSON (${(error as Error).message})`, { cause: error });
  }
  const obj = value as Record<string, unknown>;
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new InvalidReport(source, "not a JSON object");
  if (obj["format"] !== REPORT_FORMAT) throw new InvalidReport(source, `format is ${JSON.stringify(obj["format"])}, not ${JSON.stringify(REPORT_FORMAT)}`);
  for (const key of ["buildId", "platform", "finishedAt"]) {
    if (typeof obj[key] !== "string") throw new InvalidReport(source, `${key} is not a string`);
  }
  if (!Array.isArray(obj["packages"])) throw new InvalidReport(source, "packages is not an array");
  const packages = (obj["packages"] as unknown[]).map((p, i) => {
    const pkg = p as Record<string, unknown>;
    if (typeof p !== "object" || p === null) throw new InvalidReport(source, `packages[${i}] is not an object`);
    if (typeof pkg["pkgname"] !== "string" || typeof pkg["location"] !== "string") throw new InvalidReport(source, `packages[${i}] lacks pkgname or location`);
    if (typeof pkg["state"] !== "string" || !STATES.has(pkg["state"])) throw new InvalidReport(source, `packages[${i}] has state ${JSON.stringify(pkg["state"])}`);
    return { pkgname: pkg["pkgname"], location: pkg["location"], state: pkg["state"] as ReportState };
  });
  return { buildId: obj["buildId"] as string, platform: obj["platform"] as string, finishedAt: obj["finishedAt"] as string, packages };
}
