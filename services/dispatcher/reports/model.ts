/**
 * The report of a finished build, as pure data: what report.txt, report.html
 * and report.json are rendered from. pbulk's report (scripts/create-report*.awk)
 * is the model: totals by outcome, the packages breaking the most others
 * (most first), every failure with its maintainer; to that pkgfarm adds the
 * failing phase with links to the phase logs, the reason of every decision,
 * and, as bob does, the difference from the previous build of the platform.
 */

/** The job states a package can end a build in (JobState of the proto, in its lower-case names). */
export type ReportState =
  | "succeeded"
  | "up-to-date"
  | "failed"
  | "prefailed"
  | "indirect-failed"
  | "cycle"
  | "cancelled"
  | "pending"
  | "ready"
  | "leased";

export const REPORT_STATES: readonly ReportState[] = [
  "succeeded", "up-to-date", "failed", "prefailed", "indirect-failed", "cycle", "cancelled", "pending", "ready", "leased",
];

/** ReportLog is one phase log of a package, with where the report links to it. */
export interface ReportLog {
  /** The phase, e.g. "pre-clean", "checksum", "build". */
  readonly phase: string;
  /** Link target as the report should use it: relative to the report's directory, or an http(s) URL. */
  readonly href: string;
}

/** ReportPackageInput is one package of the finished build. */
export interface ReportPackageInput {
  readonly pkgname: string;
  readonly location: string;
  readonly state: ReportState;
  /** For failed packages: the phase that failed (the last phase log). */
  readonly failedPhase?: string;
  /** For indirect-failed packages: the PKGNAME of the failed, prefailed or cyclic package behind it. */
  readonly blockedBy?: string;
  /** How long its build took, in milliseconds. */
  readonly durationMs?: number;
  /** Why it is in its state: the fail or skip reason, the build's error. */
  readonly reason?: string;
  /** In incremental builds: why it was rebuilt or found up to date. */
  readonly decision?: string;
  /** Its phase logs, in phase order. */
  readonly logs?: readonly ReportLog[];
  readonly maintainer?: string;
  /**
   * Its resolved dependencies (PKGNAMEs). When given (for the packages of the
   * build), "breaks" counts every package that depends on it directly or not
   * and was not built, as pbulk's depth does; otherwise the packages whose
   * blockedBy names it.
   */
  readonly dependencies?: readonly string[];
}

/** FinishedBuild is the input of a report. */
export interface FinishedBuild {
  readonly buildId: string;
  /** OPSYS-OS_VERSION-MACHINE_ARCH, e.g. "Linux-6.18.44-x86_64". */
  readonly platform: string;
  readonly startedAt: Date;
  readonly finishedAt: Date;
  readonly packages: readonly ReportPackageInput[];
}

/** ReportPackage is a package as the report shows it. */
export interface ReportPackage extends ReportPackageInput {
  /** How many packages of the build could not be built because of this one. */
  readonly breaks: number;
  /** Those packages' PKGNAMEs, sorted. */
  readonly blocks: readonly string[];
}

export interface ReportTotals {
  readonly packages: number;
  readonly succeeded: number;
  readonly upToDate: number;
  readonly failed: number;
  /** Indirect-failed behind a failed (or cyclic) package: pbulk's "Depending on failed package". */
  readonly dependingOnFailed: number;
  readonly prefailed: number;
  /** Indirect-failed behind a prefailed package: pbulk's "Depending on masked package". */
  readonly dependingOnPrefailed: number;
  readonly cycle: number;
  readonly cancelled: number;
  /** Still pending, ready or leased when the build ended. */
  readonly unfinished: number;
}

/** DiffEntry is one package whose outcome is compared with the previous build. */
export interface DiffEntry {
  readonly pkgname: string;
  readonly location: string;
  readonly state: ReportState;
  readonly failedPhase?: string;
  /** Its PKGNAME and state in the previous build; absent when it was not in it. */
  readonly previousPkgname?: string;
  readonly previousState?: ReportState;
}

/** ReportDiff compares a build with the previous finished build of the same platform. */
export interface ReportDiff {
  readonly previousBuildId: string;
  readonly previousFinishedAt: string;
  /** Not built now, built (or absent) before. */
  readonly newlyFailing: readonly DiffEntry[];
  /** Built now, not built before. */
  readonly fixed: readonly DiffEntry[];
  /** Not built now nor before. */
  readonly stillFailing: readonly DiffEntry[];
}

export interface Report {
  readonly buildId: string;
  readonly platform: string;
  readonly startedAt: Date;
  readonly finishedAt: Date;
  readonly totals: ReportTotals;
  /** Every package, sorted by location then PKGNAME. */
  readonly packages: readonly ReportPackage[];
  /** Packages with breaks > 0, most breakage first (then by location). */
  readonly topBreakers: readonly ReportPackage[];
  /** Failed packages (and cycle members), sorted by location. */
  readonly failures: readonly ReportPackage[];
  /** Every package that was not built: failed, prefailed, indirect-failed, cycle; sorted by location. */
  readonly unsuccessful: readonly ReportPackage[];
  /** Undefined when there is no previous build to compare with. */
  readonly diff: ReportDiff | undefined;
}

/** The little of a previous report the diff needs (what report.json holds). */
export interface PreviousReport {
  readonly buildId: string;
  readonly finishedAt: string;
  readonly packages: ReadonlyArray<{ readonly pkgname: string; readonly location: string; readonly state: ReportState }>;
}

const BUILT = new Set<ReportState>(["succeeded", "up-to-date"]);
const NOT_BUILT = new Set<ReportState>(["failed", "prefailed", "indirect-failed", "cycle"]);

/** isBuilt: the package has a current binary package after the build. */
export function isBuilt(state: ReportState): boolean {
  return BUILT.has(state);
}

/** isFailing: the package could not be built (failed, prefailed, indirect-failed, cycle). */
export function isFailing(state: ReportState): boolean {
  return NOT_BUILT.has(state);
}

/** buildReport turns a finished build (and the previous report of its platform, if any) into the report's data. */
export function buildReport(build: FinishedBuild, previous?: PreviousReport): Report {
  const byName = new Map(build.packages.map((p) => [p.pkgname, p]));
  const breaks = countBreaks(build.packages);
  const packages: ReportPackage[] = build.packages.map((p) => {
    const blocks = [...(breaks.get(p.pkgname) ?? [])].sort();
    return { ...p, breaks: blocks.length, blocks };
  });
  packages.sort(byLocation);

  const count = (s: ReportState) => packages.filter((p) => p.state === s).length;
  const behindPrefailed = (p: ReportPackage) => {
    const root = p.blockedBy === undefined ? undefined : byName.get(p.blockedBy);
    return root?.state === "prefailed";
  };
  const indirect = packages.filter((p) => p.state === "indirect-failed");
  const totals: ReportTotals = {
    packages: packages.length,
    succeeded: count("succeeded"),
    upToDate: count("up-to-date"),
    failed: count("failed"),
    dependingOnFailed: indirect.filter((p) => !behindPrefailed(p)).length,
    prefailed: count("prefailed"),
    dependingOnPrefailed: indirect.filter(behindPrefailed).length,
    cycle: count("cycle"),
    cancelled: count("cancelled"),
    unfinished: count("pending") + count("ready") + count("leased"),
  };

  const topBreakers = packages.filter((p) => p.breaks > 0).sort((a, b) => b.breaks - a.breaks || byLocation(a, b));
  return {
    buildId: build.buildId,
    platform: build.platform,
    startedAt: build.startedAt,
    finishedAt: build.finishedAt,
    totals,
    packages,
    topBreakers,
    failures: packages.filter((p) => p.state === "failed" || p.state === "cycle"),
    unsuccessful: packages.filter((p) => isFailing(p.state)),
    diff: previous === undefined ? undefined : diffReports(previous, packages),
  };
}

/**
 * diffReports compares this build's packages with a previous report's. A
 * package is matched by location and PKGNAME without its version, so a
 * version bump is the same package and a MULTI_VERSION location's packages
 * (py27-x, py33-x) stay apart.
 */
export function diffReports(previous: PreviousReport, packages: readonly Pick<ReportPackageInput, "pkgname" | "location" | "state" | "failedPhase">[]): ReportDiff {
  const before = new Map(previous.packages.map((p) => [identity(p), p]));
  const newlyFailing: DiffEntry[] = [];
  const fixed: DiffEntry[] = [];
  const stillFailing: DiffEntry[] = [];
  for (const p of [...packages].sort(byLocation)) {
    const was = before.get(identity(p));
    const entry: DiffEntry = {
      pkgname: p.pkgname,
      location: p.location,
      state: p.state,
      ...(p.failedPhase === undefined || p.failedPhase === "" ? {} : { failedPhase: p.failedPhase }),
      ...(was === undefined ? {} : { previousPkgname: was.pkgname, previousState: was.state }),
    };
    if (isFailing(p.state)) {
      if (was !== undefined && isFailing(was.state)) stillFailing.push(entry);
      else newlyFailing.push(entry);
    } else if (isBuilt(p.state) && was !== undefined && isFailing(was.state)) {
      fixed.push(entry);
    }
  }
  return { previousBuildId: previous.buildId, previousFinishedAt: previous.finishedAt, newlyFailing, fixed, stillFailing };
}

/**
 * countBreaks: with dependencies, for every package that was not built, the
 * packages depending on it (transitively) that were not built either (their
 * number is pbulk's PKG_DEPTH - 1); without, the packages whose blockedBy
 * names it.
 */
function countBreaks(packages: readonly ReportPackageInput[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const withDeps = packages.some((p) => p.dependencies !== undefined);
  if (!withDeps) {
    for (const p of packages) {
      if (p.state !== "indirect-failed" || p.blockedBy === undefined || p.blockedBy === "") continue;
      let list = out.get(p.blockedBy);
      if (list === undefined) out.set(p.blockedBy, (list = []));
      list.push(p.pkgname);
    }
    return out;
  }
  const state = new Map(packages.map((p) => [p.pkgname, p.state]));
  const dependents = new Map<string, string[]>();
  for (const p of packages) {
    for (const dep of p.dependencies ?? []) {
      let list = dependents.get(dep);
      if (list === undefined) dependents.set(dep, (list = []));
      list.push(p.pkgname);
    }
  }
  for (const p of packages) {
    if (!isFailing(p.state)) continue;
    const seen = new Set<string>([p.pkgname]);
    const queue = [p.pkgname];
    for (let i = 0; i < queue.length; i++) {
      for (const up of dependents.get(queue[i]!) ?? []) {
        if (seen.has(up)) continue;
        seen.add(up);
        const s = state.get(up);
        if (s !== undefined && !isBuilt(s)) queue.push(up);
      }
    }
    if (queue.length > 1) out.set(p.pkgname, queue.slice(1));
  }
  return out;
}

function identity(p: { pkgname: string; location: string }): string {
  const dash = p.pkgname.lastIndexOf("-");
  return `${p.location}\u0000${dash <= 0 ? p.pkgname : p.pkgname.slice(0, dash)}`;
}

function byLocation(a: { location: string; pkgname: string }, b: { location: string; pkgname: string }): number {
  return a.location < b.location ? -1 : a.location > b.location ? 1 : a.pkgname < b.pkgname ? -1 : a.pkgname > b.pkgname ? 1 : 0;
}
