import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { JobOutcome, ReturnReason } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { DispatcherService, UploadPackageRequest } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { assertActsFor, grpcCodeName } from "../shared/index.js";
import { jobKey, type AgentRegistry, type HeldJob, type JobKey } from "./core/registry.js";
import { uploadFailureAction } from "./core/upload-failure.js";
import type { DepGraphLink } from "./depgraph-link.js";
import type { JobControl } from "./job-control.js";
import type { LogStore } from "./log-store.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { PackageStore, PackageUpload, StoredPackage } from "./package-store.js";
import type { Session, SessionTable } from "./sessions.js";
import { toConnectError } from "./status.js";
import { refOf } from "./wire.js";

/**
 * UploadLedger remembers the package each held job uploaded, until the job
 * ends: a JobFinished claiming success must match it.
 */
export class UploadLedger {
  private readonly byJob = new Map<JobKey, StoredPackage>();

  get(job: { buildId: string; pkgname: string }): StoredPackage | undefined {
    return this.byJob.get(jobKey(job.buildId, job.pkgname));
  }

  set(job: { buildId: string; pkgname: string }, stored: StoredPackage): void {
    this.byJob.set(jobKey(job.buildId, job.pkgname), stored);
  }

  forget(job: { buildId: string; pkgname: string }): void {
    this.byJob.delete(jobKey(job.buildId, job.pkgname));
  }
}

export interface UploadHandlerOptions {
  readonly sessions: SessionTable;
  readonly registry: AgentRegistry;
  readonly packages: PackageStore;
  readonly uploads: UploadLedger;
  readonly jobs: JobControl;
  readonly depgraph: DepGraphLink;
  readonly logs: LogStore;
  readonly metrics?: DispatcherMetrics;
}

type UploadHandler = ServiceImpl<typeof DispatcherService>["uploadPackage"];

/**
 * createUploadHandler serves UploadPackage: the agent must hold the job, the
 * file is named after it, and the bytes are verified against the header's
 * digest before the package appears in the store. An upload that fails once
 * the job is known ends the job (a result or a give-back), unless the
 * agent's own stream broke: the agent then retries or gives it back.
 */
export function createUploadHandler(options: UploadHandlerOptions): UploadHandler {
  const { sessions, registry, packages, uploads, jobs, depgraph, logs, metrics } = options;
  const handler: UploadHandler = async (requests, ctx) => {
    const iterator = requests[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done === true || first.value.part.case !== "header") {
      throw new ConnectError("the first message of UploadPackage must be the header", Code.InvalidArgument);
    }
    const header = first.value.part.value;
    assertActsFor(ctx, header.agentId);
    const session = sessions.get(header.agentId);
    if (session === undefined) throw new ConnectError(`agent "${header.agentId}" is not connected; open Connect first`, Code.FailedPrecondition);
    const held = (() => {
      try {
        return registry.held(session.agent, refOf(header.job));
      } catch (e) {
        throw toConnectError(e);
      }
    })();
    if (header.fileName !== `${held.pkgname}.tgz`) {
      throw new ConnectError(`file_name must be "${held.pkgname}.tgz" for job ${held.pkgname}, not "${header.fileName}"`, Code.InvalidArgument);
    }
    let upload: PackageUpload;
    try {
      upload = await packages.beginUpload({ platform: session.agent.platform, fileName: header.fileName, sha256: header.sha256, sizeBytes: header.sizeBytes });
    } catch (e) {
      throw settle(session, held, "dispatcher", toConnectError(e));
    }
    try {
      for (;;) {
        let next: IteratorResult<UploadPackageRequest>;
        try {
          next = await iterator.next();
        } catch (e) {
          throw new AgentStreamBroke(e);
        }
        if (next.done === true) break;
        if (next.value.part.case !== "chunk") throw new ConnectError("after the header, UploadPackage takes only chunks", Code.InvalidArgument);
        await upload.write(next.value.part.value);
      }
      const stored = await upload.commit();
      if (registry.holderOf(held.buildId, held.pkgname) !== held) {
        throw new ConnectError(`job ${held.pkgname} was taken from agent ${session.agent.id} during the upload`, Code.FailedPrecondition);
      }
      uploads.set(held, stored);
      metrics?.packageStored(session.agent.platform, stored.sizeBytes);
      session.logger.info({ buildId: held.buildId, pkgname: held.pkgname, sizeBytes: String(stored.sizeBytes) }, "package stored");
      return { binaryPackage: { fileName: stored.fileName, sha256: stored.sha256, sizeBytes: stored.sizeBytes } };
    } catch (e) {
      await upload.abort();
      if (e instanceof AgentStreamBroke) throw settle(session, held, "agent-stream", ConnectError.from(e.cause));
      throw settle(session, held, "dispatcher", toConnectError(e));
    }
  };

  /** Ends the job as the failure calls for (see uploadFailureAction) and returns the error for the agent. */
  const settle = (session: Session, held: HeldJob, from: "agent-stream" | "dispatcher", error: ConnectError): ConnectError => {
    const action = uploadFailureAction(from, grpcCodeName(error.code));
    const log = session.logger.child({ buildId: held.buildId, pkgname: held.pkgname });
    if (registry.holderOf(held.buildId, held.pkgname) !== held) return error;
    switch (action) {
      case "fail": {
        const corrupt = error.code === Code.DataLoss;
        const why = corrupt ? `uploaded package is corrupt: ${error.rawMessage}` : `upload refused (${grpcCodeName(error.code)}): ${error.rawMessage}`;
        log.warn({ err: error.rawMessage, code: Code[error.code] }, "upload refused; the job fails");
        jobs.cancel(held, `upload refused: ${error.rawMessage}`);
        void depgraph.markDone({ buildId: held.buildId, pkgname: held.pkgname, leaseId: held.leaseId, agentId: held.agentId, host: held.host, outcome: JobOutcome.FAILED,
          logRef: logs.logRef(held.buildId, held.pkgname), failureReason: why, failedPhase: "upload", decision: "" })
          .catch((err) => log.warn({ err }, "depgraph refused the failure"));
        break;
      }
      case "give-back": {
        log.error({ err: error.rawMessage, code: Code[error.code] }, "cannot store the package; the job goes back");
        const why = `the dispatcher could not store the package: ${error.rawMessage}`;
        jobs.cancel(held, why);
        void jobs.giveBack([held], ReturnReason.AGENT_LOST, why, "upload_failed").catch((err) => log.error({ err }, "giving the job back failed"));
        break;
      }
      case "agent-decides":
      case "nothing":
        break;
    }
    return error;
  };
  return handler;
}

/** AgentStreamBroke marks a failure to read the agent's own upload stream (it broke, or the agent cancelled it). */
class AgentStreamBroke extends Error {
  override readonly name = "AgentStreamBroke";
  constructor(override readonly cause: unknown) {
    super(ConnectError.from(cause).message, { cause });
  }
}
