import { hostname } from "node:os";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import type { Logger } from "pino";
import { JobOutcome } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import {
  ConnectRequestSchema,
  DispatcherService,
  RunningJobSchema,
  type ConnectRequest,
  type JobAssignment,
  type Refusal,
  type RunningJob,
} from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createChannel, createPkgfarmTransport, type Channel } from "../shared/index.js";
import type { AgentConfig } from "./config.js";
import { byJobKind } from "./executor/by-job-kind.js";
import { createCommandExecutor } from "./executor/command-executor.js";
import { createDispatcherPackages } from "./executor/dispatcher-packages.js";
import type { Executor, JobResult } from "./executor/executor.js";
import { DependenciesUnavailable, withDependencies } from "./executor/with-dependencies.js";
import { withJobLog } from "./executor/with-job-log.js";
import { withUpToDate, type CheckUpToDate } from "./executor/with-up-to-date.js";
import { UploadFailed, withUpload, type UploadOutcome } from "./executor/with-upload.js";
import { createPackageCache, type PackageCache } from "./package-cache.js";
import { ReportedJobs, refusalAction, uploadUntilSettled } from "./refusals.js";
import { createSlotPool, NoFreeSlot } from "./slots.js";
import { prepareJobWorkdir, removeJobWorkdir } from "./workdir.js";

export const AGENT_VERSION = "0.1.0";
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 30_000;

type AgentPhase = "running" | "draining" | "stopped";

interface LocalJob {
  readonly job: RunningJob;
  readonly assignment: JobAssignment;
  readonly abort: AbortController;
  readonly slot: number;
  /** Set once the job ended (package uploaded); sent (again after a reconnect) until the dispatcher has it. */
  report?: JobResult;
}

/**
 * AgentExecutors are the agent's ways of running jobs: build always, scan
 * when the agent can scan (it then says so in its hello). The agent wraps
 * them with the dependency fetch, the incremental check, the upload and the
 * log framing (executor/with-*.ts).
 */
export interface AgentExecutors {
  readonly build: Executor;
  readonly scan?: Executor;
  /** pkg-up-to-date for incremental jobs; without it every incremental job is rebuilt. */
  readonly checkUpToDate?: CheckUpToDate;
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
 * it says who it is, gives each assignment a slot and a clean work directory,
 * hands it to its executor (dependencies fetched first, the build run, the
 * package uploaded, the output streamed as the log with its phases) and
 * reports the result. Without executors it runs config.buildCommand. A broken
 * stream is retried with exponential backoff and full jitter; jobs keep
 * running meanwhile and are re-attached if the dispatcher still knows them.
 */
export function createBuilderAgent(config: AgentConfig, logger: Logger, executors?: AgentExecutors): BuilderAgent {
  const client: Client<typeof DispatcherService> = createClient(DispatcherService,
    createPkgfarmTransport(config.dispatcherUrl, { tls: config.tls, token: config.token }));
  const cache: PackageCache = createPackageCache({ dir: config.cacheDir });
  const packages = createDispatcherPackages(client, cache, config.agentId);
  const build = executors?.build ?? createCommandExecutor({
    command: config.buildCommand, treeDir: config.treeDir, timeoutMs: config.jobTimeoutMs, baseEnv: agentEnvironment(),
  });
  // Without a pkg-up-to-date the honest answer for an incremental job is to rebuild it.
  const checkUpToDate: CheckUpToDate = executors?.checkUpToDate ?? (async () => ({ upToDate: false, reason: "rebuilt: this agent cannot check packages for being up to date" }));
  const executor: Executor = withJobLog(byJobKind(
    withUpload(withUpToDate(withDependencies(build, packages.fetchDependencies), packages.fetchCurrent, checkUpToDate), (a, path, signal) => uploadSettled(a, path, signal)),
    executors?.scan), config.agentId);
  const slots = createSlotPool(config.slots);
  const jobs = new Map<string, LocalJob>();
  const reported = new ReportedJobs();
  // Uploads waiting for the stream to come back (the "later" of uploadUntilSettled).
  const welcomeWaiters = new Set<() => void>();
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

  const report = (local: LocalJob) => {
    const r = local.report!;
    send({
      case: "finished",
      value: {
        job: local.job,
        outcome: r.outcome,
        duration: durationFromMs(r.durationMs),
        binaryPackage: r.binaryPackage,
        failureReason: r.failureReason,
        failedPhase: r.failedPhase,
        decision: r.decision,
        scanOutput: r.scanOutput,
      },
    });
    // Kept for a while, so a refusal of the result still finds the job.
    reported.note(local.job, r.outcome, Date.now());
    forget(local);
  };

  /** A message of ours was refused: give the job back, stop it, or just log it (see refusalAction). */
  const onRefused = (refusal: Refusal) => {
    const action = refusalAction(refusal, reported);
    logger.warn({ pkgname: refusal.job?.pkgname, message: refusal.message, code: refusal.code, reason: refusal.reason, action: action.kind }, "the dispatcher refused a message");
    if (action.kind === "release") send({ case: "released", value: { job: action.job, reason: action.reason } });
    else if (action.kind === "stop") onCancel(action.job, `the dispatcher refused its ${refusal.message}: ${refusal.reason}`);
  };

  const whenWelcomed = (signal: AbortSignal) => new Promise<void>((resolve) => {
    const done = () => {
      welcomeWaiters.delete(done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    welcomeWaiters.add(done);
    signal.addEventListener("abort", done, { once: true });
  });

  /** Uploads with retries (refusals.ts); while the stream is down it waits for the next welcome and tries again. */
  const uploadSettled = async (assignment: JobAssignment, path: string, signal: AbortSignal): Promise<UploadOutcome> => {
    const pkgname = assignment.job!.pkgname;
    for (;;) {
      const settled = await uploadUntilSettled(() => packages.upload(assignment, path, signal), {
        signal,
        connected: () => outbox !== undefined && !outbox.closed,
        onFailure: (code, message, tries) => logger.warn({ pkgname, code, err: message, tries }, "upload failed"),
      });
      switch (settled.kind) {
        case "uploaded":
        case "fail":
        case "release":
          return settled;
        case "forget":
          return { kind: "forget", reason: "the dispatcher no longer holds the job" };
        case "later":
          await whenWelcomed(signal);
          if (signal.aborted) return { kind: "forget", reason: "the job was dropped while the stream was down" };
      }
    }
  };

  const forget = (local: LocalJob) => {
    if (jobs.get(key(local.job)) !== local) return;
    jobs.delete(key(local.job));
    void removeJobWorkdir(config.workDir, local.job.buildId, local.job.pkgname).catch(() => {});
    finishIfDrained();
  };

  const execute = async (local: LocalJob) => {
    const { job, assignment } = local;
    const started = performance.now();
    const log = {
      write: (phase: string, data: Uint8Array | string) =>
        send({ case: "log", value: { job, data: typeof data === "string" ? Buffer.from(data) : data, phase } }),
    };
    try {
      const workdir = await prepareJobWorkdir(config.workDir, job.buildId, job.pkgname);
      const result = await executor.run(assignment, { workdir, slot: local.slot, log, signal: local.abort.signal });
      if (result.cancelled || local.abort.signal.aborted) return;
      local.report = result;
    } catch (e) {
      if (local.abort.signal.aborted) return;
      if (e instanceof UploadFailed) {
        logger.warn({ pkgname: job.pkgname, err: e.message, release: e.release }, "upload failed");
        // Either the job goes back unfinished, or the dispatcher no longer
        // holds it; in both cases there is no result to report.
        if (e.release) send({ case: "released", value: { job, reason: e.message } });
        forget(local);
        return;
      }
      if (e instanceof DependenciesUnavailable) {
        // The download broke off (say, the dispatcher restarted): not the
        // package's failure, so the job goes back to be built again.
        logger.warn({ pkgname: job.pkgname, err: e.message }, "dependencies unavailable; giving the job back");
        send({ case: "released", value: { job, reason: e.message } });
        forget(local);
        return;
      }
      // prepareJobWorkdir refused the job's names: the job cannot run here.
      const reason = `the agent could not run the job: ${e instanceof Error ? e.message : String(e)}`;
      log.write("", `=== ${config.agentId}: ${reason}\n`);
      local.report = { outcome: JobOutcome.FAILED, durationMs: performance.now() - started, failureReason: reason, failedPhase: "", decision: "", outputPath: "", cancelled: false };
    } finally {
      slots.release(local.slot);
    }
    if (outbox !== undefined && !outbox.closed) report(local);
  };

  const onAssign = (assignment: JobAssignment) => {
    const job = assignment.job!;
    if (phase !== "running") {
      send({ case: "released", value: { job, reason: "the agent is shutting down" } });
      return;
    }
    let slot: number;
    try {
      slot = slots.acquire();
    } catch (e) {
      if (!(e instanceof NoFreeSlot)) throw e;
      send({ case: "released", value: { job, reason: e.message } });
      return;
    }
    const local: LocalJob = { job: create(RunningJobSchema, job), assignment, abort: new AbortController(), slot };
    jobs.set(key(job), local);
    send({ case: "accepted", value: { job } });
    logger.info({ buildId: job.buildId, pkgname: job.pkgname, attempt: assignment.attempt, slot, scan: assignment.scan !== undefined }, "job started");
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
          // The machine's name, for people (and Job.host): the id may be
          // any name the operator chose, and several agents share a host.
          host: hostname(),
          os: config.os,
          osRelease: config.osRelease,
          arch: config.arch,
          platform: config.platform,
          labels: { ...config.labels },
          slots: config.slots,
          version: AGENT_VERSION,
          running,
          draining: phase !== "running",
          scans: executors?.scan !== undefined,
          executor: build.name,
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
            for (const local of [...jobs.values()]) if (local.report !== undefined) report(local);
            for (const wake of [...welcomeWaiters]) wake();
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

/** What the agent passes on to every build command of its own environment. */
export function agentEnvironment(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? "/",
    TMPDIR: process.env.TMPDIR ?? "/tmp",
  };
}
