// The chaos run's invariants, checked on what the services say once the
// faults have stopped and every build has finished. Pure: the driver gathers
// the facts (jobs, job events, package files, agents' jobs, the tree) and
// this module says what is wrong with them.

/** The terminal JobState names: every job must end in exactly one of them. */
export const TERMINAL_STATES: ReadonlySet<string> = new Set([
  "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_PREFAILED", "JOB_STATE_INDIRECT_FAILED",
  "JOB_STATE_CYCLE", "JOB_STATE_UP_TO_DATE", "JOB_STATE_CANCELLED",
]);
/** The states a build host's result puts a job in: "finished". */
const FINISHED_STATES: ReadonlySet<string> = new Set(["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"]);

export interface CheckedBuild {
  readonly id: string;
  readonly state: string;
  readonly totalJobs: number;
  readonly jobCounts: Readonly<Record<string, number>>;
  readonly jobs: readonly CheckedJob[];
}

export interface CheckedJob {
  readonly pkgname: string;
  readonly state: string;
  readonly reason: string;
  readonly binaryPackage?: { readonly fileName: string; readonly sha256: string; readonly sizeBytes: number };
}

/** One job transition as published on pkgfarm.build.<build>.job.<state>. */
export interface JobEvent {
  readonly buildId: string;
  readonly pkgname: string;
  readonly fromState: string;
  readonly toState: string;
  readonly agentId: string;
  readonly time: string;
}

export interface ExpectedChange {
  readonly location: string;
  /** The PKGNAMEs the location must have, and each one's dependency patterns ("pattern:../../loc"). */
  readonly packages: ReadonlyMap<string, readonly string[]>;
}

export interface ChaosFacts {
  readonly builds: readonly CheckedBuild[];
  readonly events: readonly JobEvent[];
  /** sha256 and size of each file in the platform's All/, by file name. */
  readonly packageFiles: ReadonlyMap<string, { readonly sha256: string; readonly sizeBytes: number }>;
  /** Jobs the dispatcher still shows on some agent ("agent: build/pkgname"). */
  readonly agentJobs: readonly string[];
  /** PKGNAMEs the build command fails on purpose. */
  readonly failing: ReadonlySet<string>;
  readonly expectedChanges: readonly ExpectedChange[];
  /** What the tree holds at each changed location: PKGNAME → dependency patterns. */
  readonly treeAt: ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>;
  /** Change events the durable consumer has not acked (num_pending + num_ack_pending). */
  readonly unappliedEvents: number;
}

export interface Violation {
  readonly kind: string;
  readonly detail: string;
}

export interface ChaosVerdict {
  readonly violations: readonly Violation[];
  readonly violationsByKind: Readonly<Record<string, number>>;
  /** Jobs with more than one transition into succeeded or failed, although the stored state is fine. */
  readonly finishedTwice: number;
}

/** checkChaos applies every invariant to the facts. */
export function checkChaos(facts: ChaosFacts): ChaosVerdict {
  const violations: Violation[] = [];
  const add = (kind: string, detail: string) => violations.push({ kind, detail });

  // Every job in exactly one terminal state, and the build's counts agree.
  for (const build of facts.builds) {
    if (build.state !== "BUILD_STATE_FINISHED") add("build-not-finished", `${build.id} is ${build.state}`);
    const seen = new Set<string>();
    const counted: Record<string, number> = {};
    for (const job of build.jobs) {
      if (seen.has(job.pkgname)) add("job-listed-twice", `${build.id}/${job.pkgname}`);
      seen.add(job.pkgname);
      counted[job.state] = (counted[job.state] ?? 0) + 1;
      if (!TERMINAL_STATES.has(job.state)) add("job-not-terminal", `${build.id}/${job.pkgname} is ${job.state}`);
      if (job.state === "JOB_STATE_SUCCEEDED" && facts.failing.has(job.pkgname)) add("failing-package-succeeded", `${build.id}/${job.pkgname}`);
      // A job fails because its build failed, or because it lost too many
      // leases (depgraph's --max-losses); a restart of a service is neither.
      if (job.state === "JOB_STATE_FAILED" && !facts.failing.has(job.pkgname) && !job.reason.startsWith("gave up after")) {
        add("failed-not-on-purpose", `${build.id}/${job.pkgname}: ${job.reason.slice(0, 200)}`);
      }
    }
    // Counts move while a build runs; they must agree once it is finished.
    if (build.state !== "BUILD_STATE_FINISHED") continue;
    if (build.jobs.length !== build.totalJobs) add("job-count-mismatch", `${build.id}: ${build.jobs.length} jobs listed, total_jobs ${build.totalJobs}`);
    for (const state of new Set([...Object.keys(counted), ...Object.keys(build.jobCounts)])) {
      if ((counted[state] ?? 0) !== (build.jobCounts[state] ?? 0)) {
        add("job-count-mismatch", `${build.id}: ${counted[state] ?? 0} jobs listed ${state}, job_counts says ${build.jobCounts[state] ?? 0}`);
      }
    }
  }

  // Every succeeded job's package is there with the digest that was reported.
  // Builds run one after another, so a later build's package replaces an
  // earlier one's: only the last success of each PKGNAME is checked.
  const lastSuccess = new Map<string, { build: string; pkg: NonNullable<CheckedJob["binaryPackage"]> } | { build: string; pkg: undefined }>();
  for (const build of facts.builds) {
    for (const job of build.jobs) if (job.state === "JOB_STATE_SUCCEEDED") lastSuccess.set(job.pkgname, { build: build.id, pkg: job.binaryPackage });
  }
  for (const [pkgname, { build, pkg }] of lastSuccess) {
    if (pkg === undefined || pkg.sha256 === "") {
      add("succeeded-without-package", `${build}/${pkgname}`);
      continue;
    }
    const file = facts.packageFiles.get(pkg.fileName);
    if (file === undefined) add("package-missing", `${build}/${pkgname}: ${pkg.fileName} is not in All/`);
    else if (file.sha256 !== pkg.sha256 || file.sizeBytes !== pkg.sizeBytes) {
      add("package-digest-mismatch", `${build}/${pkgname}: depgraph has ${pkg.sha256.slice(0, 12)}… (${pkg.sizeBytes} B), All/${pkg.fileName} is ${file.sha256.slice(0, 12)}… (${file.sizeBytes} B)`);
    }
  }

  // No job finished twice, and none built left the state it ended in.
  let finishedTwice = 0;
  const byJob = new Map<string, JobEvent[]>();
  for (const e of facts.events) {
    const key = `${e.buildId}/${e.pkgname}`;
    let list = byJob.get(key);
    if (list === undefined) byJob.set(key, (list = []));
    list.push(e);
  }
  for (const [key, list] of byJob) {
    const finishes = list.filter((e) => FINISHED_STATES.has(e.toState));
    if (finishes.length > 1) {
      finishedTwice++;
      add("job-finished-twice", `${key}: ${finishes.map((e) => `${e.fromState.replace("JOB_STATE_", "")}→${e.toState.replace("JOB_STATE_", "")} by ${e.agentId || "?"} at ${e.time}`).join(", ")}`);
    }
    // A job blocked before it started (prefailed, cycle, indirect-failed,
    // removed) takes tree changes by design and may move again; one that was
    // built (or found up to date) must stay as it ended.
    const leftTerminal = list.find((e) => FINISHED_STATES.has(e.fromState) || e.fromState === "JOB_STATE_UP_TO_DATE");
    if (leftTerminal !== undefined) add("job-left-terminal-state", `${key}: ${leftTerminal.fromState}→${leftTerminal.toState} at ${leftTerminal.time}`);
  }

  // No lease outstanding: no agent still holds a job (depgraph's leased jobs
  // are covered by the terminal-state check).
  for (const held of facts.agentJobs) add("lease-outstanding", held);

  // Every change applied: the tree has exactly what the last event for each
  // changed location said, and the durable consumer has nothing left.
  if (facts.unappliedEvents !== 0) add("change-not-applied", `${facts.unappliedEvents} change event(s) still pending or unacked`);
  for (const change of facts.expectedChanges) {
    const actual = facts.treeAt.get(change.location) ?? new Map<string, readonly string[]>();
    const want = [...change.packages.keys()].sort().join(" ");
    const have = [...actual.keys()].sort().join(" ");
    if (want !== have) {
      add("change-not-applied", `${change.location}: the tree has [${have}], the last change said [${want}]`);
      continue;
    }
    for (const [pkgname, patterns] of change.packages) {
      if ([...patterns].sort().join(" ") !== [...actual.get(pkgname)!].sort().join(" ")) {
        add("change-not-applied", `${change.location}: ${pkgname} has dependencies [${actual.get(pkgname)!.join(" ")}], the last change said [${patterns.join(" ")}]`);
      }
    }
  }

  const violationsByKind: Record<string, number> = {};
  for (const v of violations) violationsByKind[v.kind] = (violationsByKind[v.kind] ?? 0) + 1;
  return { violations, violationsByKind, finishedTwice };
}
