/**
 * BuildPublisher notices builds that ended and does what pbulk does after
 * its last package: writes the reports, and publishes the platform's
 * repository for pkgin and `pkg_add URL`.
 *
 * It polls depgraph's ListBuilds rather than watching events: the dispatcher
 * runs without NATS too, a poll every few seconds costs nothing next to a
 * build, and a poll sees builds that ended while the dispatcher was down. A
 * build is done once `<reports>/<build>/report.json` exists (it is written
 * last, see writeReports), so a restart never redoes one. Builds are
 * reported in the order they ended, so each diff is against the build
 * before it.
 *
 * Only the newest finished build of a platform is published, and only a
 * finished one: a cancelled build never reached most of its packages, so a
 * repository made of what it built would withdraw everything else. A
 * failed publication is tried again on the next polls, a bounded number of
 * times, then given up with an error line; the reports are written first and
 * never wait for it. Trees whose packages are not pkgsrc binary packages
 * (the bundled example tree packs no +DESC) get their reports and one line
 * saying why there is no repository. Nothing here may stop the dispatcher:
 * every failure is logged and the next poll goes on.
 */

import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { BuildState, type Build } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { InvalidBinaryPackage } from "../shared/pkgsrc/index.js";
import { gatherBuildOutcome, type BuildOutcome } from "./build-outcome.js";
import type { DepGraphLink } from "./depgraph-link.js";
import type { LogStore } from "./log-store.js";
import type { PackageStore } from "./package-store.js";
import { findPreviousReport, writeReports } from "./reports/index.js";
import { publishRepository, selectPublishable } from "./repository/index.js";

export interface BuildPublisherOptions {
  readonly depgraph: DepGraphLink;
  readonly logs: LogStore;
  readonly packages: PackageStore;
  /** `<data-dir>/reports`: one directory per build. */
  readonly reportsRoot: string;
  /** `<data-dir>/repository`: one repository (a symlink to its newest generation) per platform. */
  readonly repositoryRoot: string;
  /** Time between polls of ListBuilds. */
  readonly intervalMs: number;
  /** Tries of one build's reports, and of one publication, before giving up; default 5. */
  readonly maxAttempts?: number;
  /** The bzip2 program (see publishRepository); default "bzip2". */
  readonly bzip2?: string;
  readonly logger: Logger;
}

export interface BuildPublisher {
  /** Stops polling and waits for a poll in progress to end. */
  close(): Promise<void>;
}

/** A publication waiting for (another) try. */
interface PendingPublication {
  readonly build: Build;
  readonly outcome: BuildOutcome;
  attempts: number;
}

export function startBuildPublisher(options: BuildPublisherOptions): BuildPublisher {
  const { depgraph, logger } = options;
  const log = logger.child({ component: "build-publisher" });
  const maxAttempts = options.maxAttempts ?? 5;
  const abort = new AbortController();
  const signal = abort.signal;
  /** Builds known to have their reports, so the disk is asked once per build. */
  const done = new Set<string>();
  /** Builds whose reports failed, with how many times. */
  const reportFailures = new Map<string, number>();
  /** By platform: the one publication still to do there. */
  const pending = new Map<string, PendingPublication>();
  let unreachable = false;

  const reportDir = (buildId: string) => path.join(options.reportsRoot, buildId);

  const hasReport = async (buildId: string) => {
    if (done.has(buildId)) return true;
    try {
      await stat(path.join(reportDir(buildId), "report.json"));
      done.add(buildId);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw error;
    }
  };

  const report = async (build: Build): Promise<BuildOutcome> => {
    const dir = reportDir(build.id);
    const outcome = await gatherBuildOutcome(build, { depgraph, logs: options.logs, reportDir: dir, signal });
    const found = await findPreviousReport({ reportsRoot: options.reportsRoot, platform: build.platform, buildId: build.id, finishedBefore: outcome.build.finishedAt });
    for (const bad of found.unreadable) log.warn({ file: bad.path, problem: bad.problem }, "previous report unreadable; passed over for the diff");
    const written = await writeReports({ dir, build: outcome.build, ...(found.previous === undefined ? {} : { previous: found.previous }) });
    done.add(build.id);
    const t = written.report.totals;
    log.info({ buildId: build.id, platform: build.platform, dir, packages: t.packages, succeeded: t.succeeded, upToDate: t.upToDate, failed: t.failed,
      prefailed: t.prefailed, indirectFailed: t.dependingOnFailed + t.dependingOnPrefailed, previousBuild: found.previous?.buildId }, "build report written");
    return outcome;
  };

  const publish = async (job: PendingPublication): Promise<void> => {
    const { build, outcome } = job;
    const target = path.join(options.repositoryRoot, build.platform);
    const selection = selectPublishable(outcome.candidates, outcome.built);
    await mkdir(options.repositoryRoot, { recursive: true });
    const published = await publishRepository({
      allDir: path.join(options.packages.platformDir(build.platform), "All"),
      target,
      packages: selection.publish,
      signal,
      ...(options.bzip2 === undefined ? {} : { bzip2: options.bzip2 }),
    });
    for (const warning of published.warnings) log.warn({ buildId: build.id, platform: build.platform }, warning);
    log.info({ buildId: build.id, platform: build.platform, target, generation: published.directory, published: published.packages.length,
      withheld: selection.withheld.length, firstWithheld: selection.withheld.slice(0, 20).map((w) => `${w.pkgname} (${w.reason})`) }, "repository published");
  };

  const pollOnce = async () => {
    const builds = await depgraph.listBuilds(signal);
    const ended = builds
      .filter((b) => b.state === BuildState.FINISHED || b.state === BuildState.CANCELLED)
      .sort((a, b) => Number(a.finishTime?.seconds ?? 0n) - Number(b.finishTime?.seconds ?? 0n) || (a.finishTime?.nanos ?? 0) - (b.finishTime?.nanos ?? 0));
    // The build whose packages a platform's repository shows: its newest finished one.
    const newest = new Map<string, string>();
    for (const b of ended) if (b.state === BuildState.FINISHED) newest.set(b.platform, b.id);
    const known = new Set(builds.map((b) => b.id));
    for (const id of done) if (!known.has(id)) done.delete(id);

    for (const build of ended) {
      signal.throwIfAborted();
      if (await hasReport(build.id)) continue;
      const failures = reportFailures.get(build.id) ?? 0;
      if (failures >= maxAttempts) continue;
      let outcome: BuildOutcome;
      try {
        outcome = await report(build);
        reportFailures.delete(build.id);
      } catch (error) {
        if (signal.aborted) throw error;
        reportFailures.set(build.id, failures + 1);
        const last = failures + 1 >= maxAttempts;
        log.error({ buildId: build.id, platform: build.platform, err: (error as Error).message, attempt: failures + 1 },
          last ? "build report failed; giving up on it" : "build report failed; trying again at the next poll");
        continue;
      }
      const skip = build.state === BuildState.CANCELLED ? "the build was cancelled"
        : build.problem !== "" ? "the build ended without jobs"
        : newest.get(build.platform) !== build.id ? "a newer build of the platform has finished" : undefined;
      if (skip !== undefined) {
        log.info({ buildId: build.id, platform: build.platform, why: skip }, "repository left as it was");
        continue;
      }
      pending.set(build.platform, { build, outcome, attempts: 0 });
    }

    for (const [platform, job] of pending) {
      signal.throwIfAborted();
      try {
        await publish(job);
        pending.delete(platform);
      } catch (error) {
        if (signal.aborted) throw error;
        const fields = { buildId: job.build.id, platform, err: (error as Error).message };
        if (error instanceof InvalidBinaryPackage) {
          // Not a passing problem: the tree's packages are not pkgsrc's.
          pending.delete(platform);
          log.info(fields, "repository not published: the packages are not pkgsrc binary packages (pkg_summary needs +CONTENTS, +COMMENT and +DESC); the reports are written");
          continue;
        }
        job.attempts += 1;
        if (job.attempts >= maxAttempts) {
          pending.delete(platform);
          log.error({ ...fields, attempt: job.attempts }, "repository publication failed; giving up until the next build");
        } else {
          log.warn({ ...fields, attempt: job.attempts }, "repository publication failed; trying again at the next poll");
        }
      }
    }
  };

  const loop = (async () => {
    while (!signal.aborted) {
      try {
        await pollOnce();
        if (unreachable) log.info("build poll works again");
        unreachable = false;
      } catch (error) {
        if (signal.aborted) break;
        // One line when depgraph goes away, not one per poll.
        if (!unreachable) log.warn({ err: (error as Error).message }, "build poll failed; reports and publishing wait for the next one");
        unreachable = true;
      }
      try {
        await sleep(options.intervalMs, undefined, { signal });
      } catch {
        break;
      }
    }
  })();

  return {
    async close() {
      abort.abort();
      await loop;
    },
  };
}
