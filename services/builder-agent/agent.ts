import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import type { Logger } from "pino";
import { JobOutcome, type BinaryPackage } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import {
  ConnectRequestSchema,
  DispatcherService,
  RunningJobSchema,
  type ConnectRequest,
  type JobAssignment,
  type Refusal,
  type RunningJob,
  UploadPackageRequestSchema,
} from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createChannel, createPkgfarmTransport, type Channel } from "../shared/index.js";
import type { AgentConfig } from "./config.js";
import { createPackageCache, type PackageCache } from "./package-cache.js";
import { runBuildCommand } from "./runner.js";
import { ReportedJobs, refusalAction, uploadUntilSettled } from "./refusals.js";
import { prepareJobWorkdir, removeJobWorkdir } from "./workdir.js";

export const AGENT_VERSION = "0.1.0";
const UPLOAD_CHUNK_BYTES = 256 * 1024;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 30_000;

type AgentPhase = "running" | "draining" | "stopped";

interface LocalJob {
  readonly job: RunningJob;
  readonly assignment: JobAssignment;
  readonly abort: AbortController;
  /** Set once the build ended; sent (again after a reconnect) until the dispatcher has it. */
  report?: { outcome: JobOutcome; durationMs: number; failureReason: string; outputPath: string; failedPhase?: string };
  /** A report (upload and result) is on its way: a reconnect does not start a second one. */
  reporting?: boolean;
}

export interface BuilderAgent {
  /** Connects and keeps reconnecting until stop(); resolves when stopped. */
  run(): Promise<void>;
  /** Takes no new work; resolves stop once running jobs are done. */
  drain(): void;
  /** Gives running jobs back unfinished and stops now. */
  stopNow(): void;
  readonly phase: AgentPhase;
  /** Jobs running now, for tests and status. */
  runningJobs(): RunningJob[];
}

/**
 * createBuilderAgent is the build host's side of DispatcherService/Connect:
 * it says who it is, runs each assignment (dependencies fetched first, the
 * build command in a clean work directory as its own process group, output
 * streamed as the log), uploads the package and reports the result. A broken
 * stream is retried with exponential backoff and full jitter; jobs keep
 * running meanwhile and are re-attached if the dispatcher still knows them.
 */
export function createBuilderAgent(config: AgentConfig, logger: Logger): BuilderAgent {
  const client: Client<typeof DispatcherService> = createClient(DispatcherService,
    createPkgfarmTransport(config.dispatcherUrl, { tls: config.tls, token: config.token }));
  const cache: PackageCache = createPackageCache({ dir: config.cacheDir });
  const jobs = new Map<string, LocalJob>();
  const reported = new ReportedJobs();
  const stopped = new AbortController();
  let phase: AgentPhase = "running";
  let outbox: Channel<ConnectRequest> | undefined;
  let wakeIdle: (() => void) | undefined;

  const isStopped = () => phase === "stopped";
  const key = (job: RunningJob) => `${job.buildId}\u0000${job.pkgname}`;
  const send = (message: MessageInitShape<typeof ConnectRequestSchema>["message"]) => outbox?.push(create(ConnectRequestSchema, { message }));

  const finishIfDrained = () => {
    if (phase === "draining" && jobs.size === 0) stop();
  };
  const stop = () => {
    if (phase === "stopped") return;
    phase = "stopped";
    // Close our side and let the dispatcher end the stream, so the last
    // results and give-backs are delivered; cut it only if that hangs.
    if (outbox === undefined) stopped.abort();
    else setTimeout(() => stopped.abort(), 5000).unref();
    outbox?.close();
    wakeIdle?.();
  };

  const report = async (local: LocalJob) => {
    if (local.reporting === true) return;
    local.reporting = true;
    try {
      let binaryPackage: BinaryPackage | undefined;
      if (local.report!.outcome === JobOutcome.SUCCEEDED) {
        const uploaded = await uploadUntilSettled(() => upload(local, local.report!.outputPath), {
          signal: local.abort.signal,
          connected: () => outbox !== undefined && !outbox.closed,
          onFailure: (code, message, tries) => logger.warn({ pkgname: local.job.pkgname, code, err: message, tries }, "upload failed"),
        });
        switch (uploaded.kind) {
          case "uploaded":
            binaryPackage = uploaded.binaryPackage;
            break;
          case "later":
            return;
          case "forget":
            return forget(local);
          case "release":
            send({ case: "released", value: { job: local.job, reason: uploaded.reason } });
            return forget(local);
          case "fail":
            send({ case: "log", value: { job: local.job, data: Buffer.from(`=== ${config.agentId}: ${uploaded.reason}\n`) } });
            local.report = { ...local.report!, outcome: JobOutcome.FAILED, failureReason: uploaded.reason, failedPhase: "upload" };
            break;
        }
      }
      const r = local.report!;
      send({
        case: "finished",
        value: { job: local.job, outcome: r.outcome, duration: durationFromMs(r.durationMs), binaryPackage, failureReason: r.failureReason, failedPhase: r.failedPhase ?? "" },
      });
      // Kept for a while, so a refusal of the result still finds the job.
      reported.note(local.job, r.outcome, Date.now());
      forget(local);
    } finally {
      local.reporting = false;
    }
  };

  /** A message of ours was refused: give the job back, stop it, or just log it (see refusalAction). */
  const onRefused = (refusal: Refusal) => {
    const action = refusalAction(refusal, reported);
    logger.warn({ pkgname: refusal.job?.pkgname, message: refusal.message, code: refusal.code, reason: refusal.reason, action: action.kind }, "the dispatcher refused a message");
    if (action.kind === "release") send({ case: "released", value: { job: action.job, reason: action.reason } });
    else if (action.kind === "stop") onCancel(action.job, `the dispatcher refused its ${refusal.message}: ${refusal.reason}`);
  };

  const forget = (local: LocalJob) => {
    if (jobs.get(key(local.job)) !== local) return;
    jobs.delete(key(local.job));
    void removeJobWorkdir(config.workDir, local.job.buildId, local.job.pkgname).catch(() => {});
    finishIfDrained();
  };

  const upload = async (local: LocalJob, path: string): Promise<BinaryPackage> => {
    const info = await stat(path);
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(path, { highWaterMark: UPLOAD_CHUNK_BYTES })) hash.update(chunk as Buffer);
    const sha256 = hash.digest("hex");
    async function* parts(): AsyncIterable<MessageInitShape<typeof UploadPackageRequestSchema>> {
      yield { part: { case: "header", value: { job: local.job, agentId: config.agentId, fileName: `${local.job.pkgname}.tgz`, sha256, sizeBytes: BigInt(info.size) } } };
      for await (const chunk of createReadStream(path, { highWaterMark: UPLOAD_CHUNK_BYTES })) yield { part: { case: "chunk", value: chunk as Buffer } };
    }
    const response = await client.uploadPackage(parts(), { signal: local.abort.signal });
    return response.binaryPackage!;
  };

  const fetchDependencies = async (local: LocalJob, dependsDir: string) => {
    const { assignment } = local;
    for (const dep of assignment.dependencyPackages) {
      const signal = local.abort.signal;
      const download = new AbortController();
      const onAbort = () => download.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        let iterator: AsyncIterator<{ part: { case: string | undefined; value?: unknown } }> | undefined;
        const open = async () => {
          iterator = client.downloadPackage({ platform: assignment.platform, fileName: dep.fileName, sha256: dep.sha256 }, { signal: download.signal })[Symbol.asyncIterator]();
          const head = await iterator.next();
          if (head.done === true || head.value.part.case !== "binaryPackage") throw new Error(`download of ${dep.fileName} did not start with its metadata`);
          return head.value.part.value as BinaryPackage;
        };
        // Packages found up to date by an incremental build come without a
        // digest: ask the dispatcher for it before looking in the cache.
        const meta = dep.sha256 === "" ? await open() : dep;
        await cache.provide({ fileName: dep.fileName, sha256: meta.sha256, sizeBytes: meta.sizeBytes }, dependsDir, async function* () {
          if (iterator === undefined) await open();
          for (;;) {
            const next = await iterator!.next();
            if (next.done === true) return;
            yield next.value.part.value as Uint8Array;
          }
        }, signal);
      } finally {
        download.abort();
        signal.removeEventListener("abort", onAbort);
      }
    }
  };

  const execute = async (local: LocalJob) => {
    const { job, assignment } = local;
    const log = (text: string) => send({ case: "log", value: { job, data: Buffer.from(text) } });
    const started = performance.now();
    let outputPath = "";
    try {
      const workdir = await prepareJobWorkdir(config.workDir, job.buildId, job.pkgname);
      outputPath = workdir.outputPath;
      await fetchDependencies(local, workdir.dependsDir);
      if (local.abort.signal.aborted) return;
      log(`=== ${config.agentId}: ${assignment.dependencyPackages.length} dependencies fetched; running ${config.buildCommand.join(" ")}\n`);
      const result = await runBuildCommand({
        command: config.buildCommand,
        env: buildEnvironment(config, assignment, workdir),
        cwd: workdir.dir,
        timeoutMs: config.jobTimeoutMs,
        signal: local.abort.signal,
        onOutput: (chunk) => send({ case: "log", value: { job, data: chunk } }),
      });
      if (result.cancelled) return;
      let failureReason = result.failureReason;
      if (failureReason === "") {
        const made = await stat(outputPath).catch(() => undefined);
        if (made === undefined || !made.isFile()) failureReason = `the build command exited 0 but wrote no package at ${outputPath}`;
      }
      if (failureReason !== "") log(`=== ${config.agentId}: ${failureReason}\n`);
      local.report = { outcome: failureReason === "" ? JobOutcome.SUCCEEDED : JobOutcome.FAILED, durationMs: result.durationMs, failureReason, outputPath };
    } catch (e) {
      if (local.abort.signal.aborted) return;
      const reason = `the agent could not run the job: ${e instanceof Error ? e.message : String(e)}`;
      log(`=== ${config.agentId}: ${reason}\n`);
      local.report = { outcome: JobOutcome.FAILED, durationMs: performance.now() - started, failureReason: reason, outputPath };
    }
    if (outbox !== undefined && !outbox.closed) await report(local);
  };

  const onAssign = (assignment: JobAssignment) => {
    const job = assignment.job!;
    if (phase !== "running") {
      send({ case: "released", value: { job, reason: "the agent is shutting down" } });
      return;
    }
    const local: LocalJob = { job: create(RunningJobSchema, job), assignment, abort: new AbortController() };
    jobs.set(key(job), local);
    send({ case: "accepted", value: { job } });
    logger.info({ buildId: job.buildId, pkgname: job.pkgname, attempt: assignment.attempt }, "job started");
    void execute(local).then(() => {
      if (local.abort.signal.aborted) forget(local);
    });
  };

  const onCancel = (job: RunningJob, reason: string) => {
    const local = jobs.get(key(job));
    if (local === undefined || local.job.leaseId !== job.leaseId) return;
    logger.info({ buildId: job.buildId, pkgname: job.pkgname, reason }, "job cancelled");
    local.abort.abort();
    forget(local);
  };

  const session = async (): Promise<boolean> => {
    const mine = createChannel<ConnectRequest>();
    outbox = mine;
    const running = [...jobs.values()].map((j) => j.job);
    mine.push(create(ConnectRequestSchema, {
      message: {
        case: "hello",
        value: {
          agentId: config.agentId,
          host: config.agentId,
          os: config.os,
          osRelease: config.osRelease,
          arch: config.arch,
          platform: config.platform,
          labels: { ...config.labels },
          slots: config.slots,
          version: AGENT_VERSION,
          running,
          draining: phase !== "running",
        },
      },
    }));
    let welcomed = false;
    let heartbeat: NodeJS.Timeout | undefined;
    try {
      for await (const response of client.connect(mine, { signal: stopped.signal })) {
        switch (response.message.case) {
          case "welcome": {
            welcomed = true;
            const welcome = response.message.value;
            const kept = new Set(welcome.kept.map(key));
            for (const local of [...jobs.values()]) {
              if (kept.has(key(local.job))) continue;
              logger.warn({ pkgname: local.job.pkgname }, "the dispatcher gave this job to someone else while we were away; dropping it");
              local.abort.abort();
              forget(local);
            }
            for (const local of jobs.values()) if (local.report !== undefined) void report(local);
            const every = Math.max(100, durationMs(welcome.heartbeatInterval ?? durationFromMs(5000)));
            heartbeat = setInterval(() => send({ case: "heartbeat", value: { running: [...jobs.values()].map((j) => j.job), draining: phase !== "running" } }), every);
            logger.info({ platform: welcome.platform, kept: kept.size }, "connected to the dispatcher");
            finishIfDrained();
            break;
          }
          case "assign":
            onAssign(response.message.value);
            break;
          case "cancel":
            onCancel(response.message.value.job!, response.message.value.reason);
            break;
          case "drain":
            logger.info({ reason: response.message.value.reason }, "asked to drain");
            drain();
            break;
          case "refused":
            onRefused(response.message.value);
            break;
        }
      }
    } catch (e) {
      const error = ConnectError.from(e);
      // A refused token stays refused: say so loudly, but keep retrying, as
      // the dispatcher may be given the token (or we a new one) meanwhile.
      if (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied) {
        logger.error({ err: error.message, code: Code[error.code] }, "the dispatcher refused this agent's credentials; check PKGFARM_AGENT_TOKEN and --id");
      } else if (!isStopped()) {
        logger.warn({ err: error.message, code: Code[error.code] }, "stream to the dispatcher ended");
      }
    } finally {
      clearInterval(heartbeat);
      mine.close();
      if (outbox === mine) outbox = undefined;
    }
    return welcomed;
  };

  const drain = () => {
    if (phase !== "running") return;
    phase = "draining";
    send({ case: "heartbeat", value: { running: [...jobs.values()].map((j) => j.job), draining: true } });
    logger.info({ running: jobs.size }, "draining: finishing running jobs, taking no more");
    finishIfDrained();
  };

  return {
    get phase() {
      return phase;
    },
    runningJobs: () => [...jobs.values()].map((j) => j.job),
    drain,
    stopNow() {
      for (const local of [...jobs.values()]) {
        local.abort.abort();
        send({ case: "released", value: { job: local.job, reason: "the agent was stopped" } });
        forget(local);
      }
      // Let the released messages go out before the stream closes.
      setImmediate(stop);
    },
    async run() {
      let failures = 0;
      while (!isStopped()) {
        const welcomed = await session();
        if (isStopped()) break;
        failures = welcomed ? 0 : failures + 1;
        const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures, 10));
        const delay = Math.random() * ceiling;
        logger.info({ retryInMs: Math.round(delay) }, "reconnecting");
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          wakeIdle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wakeIdle = undefined;
      }
      for (const local of jobs.values()) local.abort.abort();
    },
  };
}

/** The build command's environment: the agent's PATH and HOME, and the job as PKGFARM_* variables. */
function buildEnvironment(config: AgentConfig, a: JobAssignment, workdir: { dir: string; dependsDir: string; outputPath: string }): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? workdir.dir,
    TMPDIR: process.env.TMPDIR ?? "/tmp",
    LC_ALL: "C",
    PKGFARM_TREE: config.treeDir,
    PKGFARM_LOCATION: a.location,
    PKGFARM_PKGNAME: a.job!.pkgname,
    PKGFARM_MULTI_VERSION: a.multiVersion,
    PKGFARM_BUILD_ID: a.job!.buildId,
    PKGFARM_ATTEMPT: String(a.attempt),
    PKGFARM_WORKDIR: workdir.dir,
    PKGFARM_DEPENDS_DIR: workdir.dependsDir,
    PKGFARM_OUTPUT: workdir.outputPath,
  };
  return env;
}
