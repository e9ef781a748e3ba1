import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryPackageSchema, JobOutcome, type BinaryPackage } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { JobFinished } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { JobNotHeld, type AgentRegistry, type HeldJob } from "./core/registry.js";
import type { DepGraphLink } from "./depgraph-link.js";
import type { JobControl } from "./job-control.js";
import type { LogStore } from "./log-store.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { PackageStore } from "./package-store.js";
import type { Session } from "./sessions.js";
import { toConnectError } from "./status.js";
import type { UploadLedger } from "./uploads.js";
import { refOf } from "./wire.js";

export interface ResultRelayOptions {
  readonly registry: AgentRegistry;
  readonly uploads: UploadLedger;
  /** Where an up-to-date job's package is looked up. */
  readonly packages: PackageStore;
  readonly logs: LogStore;
  readonly depgraph: DepGraphLink;
  readonly jobs: JobControl;
  readonly wake: (platform: string) => void;
  readonly metrics?: DispatcherMetrics;
}

/**
 * ResultRelay turns an agent's JobFinished into depgraph's MarkDone: a
 * build's package (uploaded, or already stored when up to date), its failed
 * phase and incremental decision, or a scan job's output.
 */
export interface ResultRelay {
  /**
   * Checks the report against what the agent holds and uploaded, frees the
   * slot and relays the result. Throws (a ConnectError or a registry error)
   * for a report that is refused; the job is then left as it was.
   */
  finished(session: Session, finished: JobFinished): Promise<void>;
}

export function createResultRelay(options: ResultRelayOptions): ResultRelay {
  const { registry, uploads, packages, logs, depgraph, jobs, wake, metrics } = options;
  /** The binary package for a result: the upload for a success, the stored one for an up-to-date package. */
  const packageFor = async (session: Session, held: HeldJob, finished: JobFinished): Promise<BinaryPackage> => {
    if (finished.outcome === JobOutcome.SUCCEEDED) {
      const stored = uploads.get(held);
      const claimed = finished.binaryPackage;
      if (stored === undefined || claimed === undefined || claimed.sha256 !== stored.sha256 || claimed.fileName !== stored.fileName) {
        throw new ConnectError(`job ${held.pkgname} of build ${held.buildId} reported success without a matching UploadPackage; upload the package first`, Code.FailedPrecondition);
      }
      return create(BinaryPackageSchema, { fileName: stored.fileName, sha256: stored.sha256, sizeBytes: stored.sizeBytes });
    }
    // Up to date: nothing was built, so the package is the one already in
    // the store; depgraph records it as the job's package.
    const fileName = `${held.pkgname}.tgz`;
    const stored = await packages.stat(session.agent.platform, fileName).catch((e: unknown) => {
      throw toConnectError(e);
    });
    if (stored === undefined) {
      throw new ConnectError(`job ${held.pkgname} of build ${held.buildId} was reported up to date, but the dispatcher has no ${fileName} for platform ${session.agent.platform}; build it instead`, Code.FailedPrecondition);
    }
    if (registry.holderOf(held.buildId, held.pkgname) !== held) throw new JobNotHeld(session.agent.id, held.buildId, held.pkgname);
    return create(BinaryPackageSchema, { fileName: stored.fileName, sha256: stored.sha256, sizeBytes: stored.sizeBytes });
  };

  /**
   * A depgraph that does not take JOB_OUTCOME_UP_TO_DATE yet (INVALID_ARGUMENT)
   * gets the result again as a success with the same package, which is what
   * an up-to-date package is to the jobs that need it; otherwise the job
   * would stay leased there until its lease ran out.
   */
  const markDone = async (result: Parameters<DepGraphLink["markDone"]>[0]) => {
    try {
      await depgraph.markDone(result);
    } catch (e) {
      if (result.outcome !== JobOutcome.UP_TO_DATE || ConnectError.from(e).code !== Code.InvalidArgument) throw e;
      await depgraph.markDone({ ...result, outcome: JobOutcome.SUCCEEDED });
    }
  };

  return {
    async finished(session, finished) {
      const held = registry.held(session.agent, refOf(finished.job));
      const durationMsValue = finished.duration === undefined ? 0 : Math.round(durationMs(finished.duration));
      const result: Parameters<DepGraphLink["markDone"]>[0] = {
        buildId: held.buildId, pkgname: held.pkgname, leaseId: held.leaseId, agentId: held.agentId, host: held.host, outcome: finished.outcome,
        duration: durationFromMs(durationMsValue), logRef: logs.logRef(held.buildId, held.pkgname), failureReason: "",
        failedPhase: finished.failedPhase, decision: finished.decision,
      };
      const outcomes = held.kind === "scan" ? SCAN_OUTCOMES : BUILD_OUTCOMES;
      if (!outcomes.has(finished.outcome)) {
        throw new ConnectError(held.kind === "scan"
          ? "JobFinished of a scan job needs an outcome: JOB_OUTCOME_SUCCEEDED or JOB_OUTCOME_FAILED"
          : "JobFinished needs an outcome: JOB_OUTCOME_SUCCEEDED, JOB_OUTCOME_FAILED or JOB_OUTCOME_UP_TO_DATE", Code.InvalidArgument);
      }
      if (finished.outcome === JobOutcome.FAILED) result.failureReason = finished.failureReason || (held.kind === "scan" ? "the scan job failed" : "the build failed");
      if (held.kind === "scan") {
        // What was scanned goes back whole, a failed job's partial output included.
        result.scanOutput = finished.scanOutput;
      } else if (finished.outcome !== JobOutcome.FAILED) {
        result.binaryPackage = await packageFor(session, held, finished);
      }
      session.agent.jobsDone++;
      metrics?.jobFinished(session.agent.platform, OUTCOME_LABEL[finished.outcome] ?? "failed", held.kind);
      await jobs.end(held);
      wake(session.agent.platform);
      try {
        await markDone(result);
        session.logger.info({ buildId: held.buildId, pkgname: held.pkgname, kind: held.kind, outcome: JobOutcome[finished.outcome], durationMs: durationMsValue }, "job finished");
      } catch (e) {
        session.logger.warn({ err: e, buildId: held.buildId, pkgname: held.pkgname }, "depgraph refused the result");
      }
    },
  };
}

const BUILD_OUTCOMES: ReadonlySet<JobOutcome> = new Set([JobOutcome.SUCCEEDED, JobOutcome.FAILED, JobOutcome.UP_TO_DATE]);
const SCAN_OUTCOMES: ReadonlySet<JobOutcome> = new Set([JobOutcome.SUCCEEDED, JobOutcome.FAILED]);
const OUTCOME_LABEL: Partial<Record<JobOutcome, "succeeded" | "failed" | "up_to_date">> = {
  [JobOutcome.SUCCEEDED]: "succeeded",
  [JobOutcome.FAILED]: "failed",
  [JobOutcome.UP_TO_DATE]: "up_to_date",
};
