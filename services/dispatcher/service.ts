import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { BinaryPackageSchema, JobOutcome, ReturnReason, type Assignment } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import {
  AgentHelloSchema,
  AgentSchema,
  AgentState,
  ConnectResponseSchema,
  DispatcherService,
  RunningJobSchema,
  type AgentHello,
  type ConnectRequest,
  type ConnectResponse,
  type JobFinished,
  type RunningJob,
} from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { assertActsFor, createChannel, type Channel } from "../shared/index.js";
import { AgentRegistry, jobKey, type AgentRecord, type HeldJob, type JobKey } from "./core/registry.js";
import type { DepGraphLink } from "./depgraph-link.js";
import type { DispatcherMetrics } from "./metrics.js";
import { toConnectError } from "./status.js";
import type { LogStore } from "./log-store.js";
import type { PackageStore, StoredPackage } from "./package-store.js";
import { cutOffStalled, DEFAULT_STALL_MS } from "../shared/stream-guard.js";

export interface DispatcherServiceOptions {
  readonly depgraph: DepGraphLink;
  readonly packages: PackageStore;
  readonly logs: LogStore;
  readonly logger: Logger;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  /** Renew running jobs' leases this often (well inside the lease length). */
  readonly renewEveryMs: number;
  /** Connect streams served at once, those still waiting for their hello included; default 1000. */
  readonly maxAgents?: number;
  readonly now?: () => number;
  /** Where job movements are counted; none when metrics are off. */
  readonly metrics?: DispatcherMetrics;
  /** Longest a ReadLog chunk may wait for its reader before the stream is cut off (default DEFAULT_STALL_MS). */
  readonly streamStallMs?: number;
}

export interface RunningDispatcherService {
  readonly impl: ServiceImpl<typeof DispatcherService>;
  readonly registry: AgentRegistry;
  /** Ends every agent stream and gives their jobs back (as draining: not the job's fault). */
  close(): Promise<void>;
}

interface Session {
  readonly agent: AgentRecord;
  /** What the agent said it is, for ListAgents. */
  readonly hello: AgentHello;
  readonly outbox: Channel<ConnectResponse>;
  readonly logger: Logger;
}

const AGENT_ID_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const PLATFORM_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MAX_SLOTS = 1024;

/**
 * createDispatcherService keeps one Connect stream per agent, pulls ready
 * jobs from depgraph for each platform's free slots, and relays results,
 * logs and packages back. Every agent's jobs go back to depgraph the moment
 * its stream ends or its heartbeats stop.
 */
export function createDispatcherService(options: DispatcherServiceOptions): RunningDispatcherService {
  const { depgraph, packages, logs, logger, metrics } = options;
  const now = options.now ?? Date.now;
  const registry = new AgentRegistry({ heartbeatTimeoutMs: options.heartbeatTimeoutMs });
  const sessions = new Map<string, Session>();
  const uploads = new Map<JobKey, StoredPackage>();
  const root = new AbortController();
  const pullers = new Map<string, { wake: () => void }>();
  let closed = false;

  // --- assignment: one pull loop per platform -----------------------------

  // Several NextReadyJob calls may be out at once for a platform, together
  // asking for no more jobs than there are free slots: one call at a time
  // would leave slots that free up during its round trip idle until it returns.
  const MAX_PULLS_IN_FLIGHT = 4;
  const wakePuller = (platform: string) => {
    const existing = pullers.get(platform);
    if (existing !== undefined) return existing.wake();
    let wake: () => void = () => {};
    let woken = false;
    const puller = {
      wake: () => {
        woken = true;
        wake();
      },
    };
    pullers.set(platform, puller);
    let requested = 0;
    let inFlight = 0;
    let failures = 0;
    let retryAt = 0;
    const pull = async (want: number) => {
      requested += want;
      inFlight++;
      let assignments: Assignment[] = [];
      try {
        assignments = await depgraph.nextReadyJobs(platform, want, root.signal);
        failures = 0;
      } catch (e) {
        if (!root.signal.aborted) {
          failures++;
          const delay = Math.min(30_000, 250 * 2 ** Math.min(failures, 7));
          retryAt = Date.now() + delay;
          setTimeout(puller.wake, delay).unref();
          logger.warn({ err: e, platform, retryInMs: delay }, "NextReadyJob failed; retrying");
        }
      } finally {
        requested -= want;
        inFlight--;
      }
      const unplaced: Assignment[] = [];
      for (const assignment of assignments) {
        const agent = registry.pickAgent(platform);
        if (agent === undefined) unplaced.push(assignment);
        else assign(sessions.get(agent.id)!, assignment);
      }
      if (unplaced.length > 0) {
        metrics?.jobsGivenBack(unplaced.length, "no_free_slot");
        // Slots vanished while the call was out (an agent left); not the jobs' fault.
        void depgraph.returnJobs(unplaced.map((a) => ({ buildId: a.buildId, pkgname: a.package!.pkgname, leaseId: a.leaseId })),
          ReturnReason.DRAINING, "no free agent slot when the job arrived").catch((e) => logger.error({ err: e }, "giving back unplaced jobs failed"));
      }
      puller.wake();
    };
    void (async () => {
      while (!root.signal.aborted) {
        const want = registry.freeSlotsFor(platform) - requested;
        if (want > 0 && inFlight < MAX_PULLS_IN_FLIGHT && Date.now() >= retryAt) {
          woken = false;
          void pull(want);
          continue;
        }
        if (inFlight === 0 && !registry.platforms().has(platform)) break;
        if (!woken) await new Promise<void>((resolve) => (wake = resolve));
        woken = false;
      }
      pullers.delete(platform);
    })();
  };

  const assign = (session: Session, a: Assignment) => {
    const pkg = a.package!;
    const held = registry.hold(session.agent, { buildId: a.buildId, pkgname: pkg.pkgname, leaseId: a.leaseId });
    metrics?.jobAssigned(held, session.agent.platform);
    void logs.begin(a.buildId, pkg.pkgname, `${pkg.pkgname} (${pkg.location}) attempt ${a.attempt} on agent ${session.agent.id}`)
      .catch((e) => session.logger.error({ err: e, pkgname: pkg.pkgname }, "cannot start the job's log"));
    session.outbox.push(create(ConnectResponseSchema, {
      message: {
        case: "assign",
        value: {
          job: runningJob(held),
          location: pkg.location,
          multiVersion: pkg.multiVersion,
          attempt: a.attempt,
          dependencyPackages: a.dependencyPackages,
          platform: session.agent.platform,
        },
      },
    }));
    session.logger.info({ buildId: a.buildId, pkgname: pkg.pkgname, attempt: a.attempt }, "job assigned");
  };

  /**
   * endJob forgets a job the dispatcher no longer tracks for its agent
   * (finished, cancelled, given back) and closes its log, with a last line
   * saying why when there is one. Safe for a job already released.
   */
  const endJob = (job: HeldJob, note?: string) => {
    registry.release(job);
    uploads.delete(jobKey(job.buildId, job.pkgname));
    const appended = note === undefined ? Promise.resolve() : logs.append(job.buildId, job.pkgname, Buffer.from(`\n=== ${note} ===\n`));
    return appended.then(() => logs.finish(job.buildId, job.pkgname)).catch(() => {});
  };

  // --- losing agents -------------------------------------------------------

  const dropSession = (session: Session, reason: ReturnReason, why: string) => {
    if (sessions.get(session.agent.id) !== session) return;
    sessions.delete(session.agent.id);
    const jobs = registry.unregister(session.agent.id, session.agent.session);
    // On our own shutdown the agents keep building and re-attach to the next
    // dispatcher; their leases stay with depgraph until then.
    if (closed) return;
    for (const job of jobs) void endJob(job, `${why}; the job goes back to the queue`);
    if (jobs.length > 0) {
      metrics?.jobsGivenBack(jobs.length, "agent_lost");
      session.logger.warn({ jobs: jobs.map((j) => j.pkgname), reason: why }, "agent gone; giving its jobs back");
      void depgraph.returnJobs(jobs, reason, why).catch((e) => session.logger.error({ err: e }, "giving jobs back failed"));
    } else {
      session.logger.info({ reason: why }, "agent disconnected");
    }
    // Its slots are gone; the platform's puller re-counts.
    wakePuller(session.agent.platform);
  };

  let heartbeatTimer: NodeJS.Timeout | undefined;
  const armHeartbeatTimer = () => {
    if (heartbeatTimer !== undefined || closed) return;
    const next = registry.nextDeadline();
    if (next === undefined) return;
    heartbeatTimer = setTimeout(() => {
      heartbeatTimer = undefined;
      for (const agent of registry.expired(now())) {
        const session = sessions.get(agent.id);
        if (session === undefined) continue;
        const why = `agent ${agent.id} sent nothing for ${Math.round(options.heartbeatTimeoutMs / 1000)} s`;
        session.outbox.fail(new ConnectError(why, Code.DeadlineExceeded));
        dropSession(session, ReturnReason.AGENT_LOST, why);
      }
      armHeartbeatTimer();
    }, Math.max(10, next - now() + 5));
  };

  // --- lease renewal -------------------------------------------------------

  const renewTimer = setInterval(() => {
    const held = registry.allHeld();
    if (held.length === 0) return;
    depgraph.renewLeases(held).then((lost) => {
      for (const lease of lost) {
        const job = registry.holderOf(lease.buildId, lease.pkgname);
        if (job === undefined || job.leaseId !== lease.leaseId) continue;
        cancelJob(job, "the lease is no longer held (build cancelled, or the job was given to another agent)");
      }
    }).catch((e) => logger.warn({ err: e }, "renewing leases failed; will retry"));
  }, options.renewEveryMs);
  renewTimer.unref();

  const cancelJob = (job: HeldJob, reason: string) => {
    const session = sessions.get(job.agentId);
    void endJob(job, `cancelled: ${reason}`);
    session?.outbox.push(create(ConnectResponseSchema, { message: { case: "cancel", value: { job: runningJob(job), reason } } }));
    session?.logger.info({ buildId: job.buildId, pkgname: job.pkgname, reason }, "job cancelled on agent");
    if (session !== undefined) wakePuller(session.agent.platform);
  };

  // --- agent messages ------------------------------------------------------

  const onFinished = async (session: Session, finished: JobFinished) => {
    const held = registry.held(session.agent, refOf(finished.job));
    const durationMsValue = finished.duration === undefined ? 0 : Math.round(durationMs(finished.duration));
    const result: Parameters<DepGraphLink["markDone"]>[0] = {
      buildId: held.buildId, pkgname: held.pkgname, leaseId: held.leaseId, outcome: finished.outcome,
      duration: durationFromMs(durationMsValue), logRef: logs.logRef(held.buildId, held.pkgname), failureReason: "",
      failedPhase: finished.failedPhase, decision: finished.decision,
    };
    if (finished.outcome === JobOutcome.SUCCEEDED) {
      const stored = uploads.get(jobKey(held.buildId, held.pkgname));
      const claimed = finished.binaryPackage;
      if (stored === undefined || claimed === undefined || claimed.sha256 !== stored.sha256 || claimed.fileName !== stored.fileName) {
        throw new ConnectError(`job ${held.pkgname} of build ${held.buildId} reported success without a matching UploadPackage; upload the package first`, Code.FailedPrecondition);
      }
      result.binaryPackage = create(BinaryPackageSchema, { fileName: stored.fileName, sha256: stored.sha256, sizeBytes: stored.sizeBytes });
    } else if (finished.outcome === JobOutcome.FAILED) {
      result.failureReason = finished.failureReason || "the build failed";
    } else {
      throw new ConnectError("JobFinished needs an outcome: JOB_OUTCOME_SUCCEEDED or JOB_OUTCOME_FAILED", Code.InvalidArgument);
    }
    session.agent.jobsDone++;
    metrics?.jobFinished(session.agent.platform, finished.outcome === JobOutcome.SUCCEEDED ? "succeeded" : "failed");
    await endJob(held);
    wakePuller(session.agent.platform);
    try {
      await depgraph.markDone(result);
      session.logger.info({ buildId: held.buildId, pkgname: held.pkgname, outcome: JobOutcome[finished.outcome], durationMs: durationMsValue }, "job finished");
    } catch (e) {
      session.logger.warn({ err: e, buildId: held.buildId, pkgname: held.pkgname }, "depgraph refused the result");
    }
  };

  const onMessage = async (session: Session, request: ConnectRequest) => {
    registry.touch(session.agent, now());
    const { agent } = session;
    switch (request.message.case) {
      case "heartbeat": {
        if (request.message.value.draining && !agent.draining) {
          agent.draining = true;
          session.logger.info("agent draining (it said so)");
        }
        // Jobs the agent runs that we do not know of (given back while it was
        // away) must stop: someone else builds them now.
        for (const job of request.message.value.running) {
          const held = registry.holderOf(job.buildId, job.pkgname);
          if (held === undefined || held.agentId !== agent.id || held.leaseId !== job.leaseId) {
            session.outbox.push(create(ConnectResponseSchema, { message: { case: "cancel", value: { job, reason: "this agent no longer holds the job" } } }));
          }
        }
        return;
      }
      case "accepted": {
        const held = registry.held(agent, refOf(request.message.value.job));
        held.accepted = true;
        metrics?.jobAccepted(held, agent.platform);
        return;
      }
      case "log": {
        const held = registry.held(agent, refOf(request.message.value.job));
        await logs.append(held.buildId, held.pkgname, request.message.value.data);
        return;
      }
      case "finished":
        return onFinished(session, request.message.value);
      case "released": {
        const held = registry.held(agent, refOf(request.message.value.job));
        await endJob(held, `released by the agent: ${request.message.value.reason}`);
        metrics?.jobsGivenBack(1, "released_by_agent");
        await depgraph.returnJobs([held], ReturnReason.DRAINING, `agent ${agent.id} gave the job back: ${request.message.value.reason}`);
        wakePuller(agent.platform);
        return;
      }
      case "hello":
        throw new ConnectError("hello may only be the first message of a stream", Code.InvalidArgument);
      default:
        throw new ConnectError("empty message: set one of hello, heartbeat, accepted, log, finished, released", Code.InvalidArgument);
    }
  };

  const openSession = async (hello: AgentHello, ctx: HandlerContext): Promise<Session> => {
    if (!AGENT_ID_SHAPE.test(hello.agentId)) {
      throw new ConnectError(`agent_id "${hello.agentId}" must be 1-128 characters of letters, digits and . _ : @ -, starting with a letter or digit`, Code.InvalidArgument);
    }
    if (hello.slots < 1 || hello.slots > MAX_SLOTS) throw new ConnectError(`slots must be from 1 to ${MAX_SLOTS}, not ${hello.slots}`, Code.InvalidArgument);
    const platform = hello.platform !== "" ? hello.platform : `${hello.os}-${hello.osRelease}-${hello.arch}`;
    if (!PLATFORM_SHAPE.test(platform) || platform.includes("..")) {
      throw new ConnectError(`platform "${platform}" is not valid: set platform, or os, os_release and arch (e.g. NetBSD, 10.0, x86_64)`, Code.InvalidArgument);
    }
    const agent = (() => {
      try {
        return registry.register({ id: hello.agentId, platform, slots: hello.slots }, now());
      } catch (e) {
        throw toConnectError(e);
      }
    })();
    agent.draining = hello.draining;
    const session: Session = { agent, hello, outbox: createChannel(), logger: logger.child({ agentId: agent.id, platform }) };
    sessions.set(agent.id, session);
    armHeartbeatTimer();
    // Re-attach: jobs the agent still runs from before (say, the dispatcher
    // restarted) are kept if depgraph still has their leases.
    let kept: RunningJob[] = [];
    if (hello.running.length > 0) {
      const lost = await depgraph.renewLeases(hello.running).catch(() => [...hello.running]);
      const lostKeys = new Set(lost.map((l) => `${jobKey(l.buildId, l.pkgname)}\u0000${l.leaseId}`));
      kept = hello.running.filter((j) => !lostKeys.has(`${jobKey(j.buildId, j.pkgname)}\u0000${j.leaseId}`) && registry.holderOf(j.buildId, j.pkgname) === undefined);
      for (const job of kept.slice(0, agent.slots)) registry.hold(agent, refOf(job)).accepted = true;
      kept = kept.slice(0, agent.slots);
    }
    session.outbox.push(create(ConnectResponseSchema, {
      message: {
        case: "welcome",
        value: {
          agentId: agent.id,
          platform,
          heartbeatInterval: durationFromMs(options.heartbeatIntervalMs),
          heartbeatTimeout: durationFromMs(options.heartbeatTimeoutMs),
          kept,
        },
      },
    }));
    session.logger.info({ host: hello.host, slots: agent.slots, version: hello.version, kept: kept.length, remote: ctx.requestHeader.get("x-forwarded-for") ?? undefined }, "agent connected");
    wakePuller(platform);
    return session;
  };

  // Streams counted against maxAgents, those still waiting for a hello included.
  const maxAgents = options.maxAgents ?? 1000;
  let openStreams = 0;

  /** One agent's Connect stream, from its hello until either side ends it. */
  async function* converse(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
    const iterator = requests[Symbol.asyncIterator]();
    // A stream that never says hello would hold one of the maxAgents places.
    let helloTimer: NodeJS.Timeout | undefined;
    const first = await Promise.race([
      iterator.next(),
      new Promise<never>((_, reject) => (helloTimer = setTimeout(
        () => reject(new ConnectError(`no hello within ${Math.round(options.heartbeatTimeoutMs / 1000)} s of opening Connect`, Code.DeadlineExceeded)),
        options.heartbeatTimeoutMs))),
    ]).finally(() => clearTimeout(helloTimer));
    if (first.done === true || first.value.message.case !== "hello") {
      throw new ConnectError("the first message of Connect must be a hello", Code.InvalidArgument);
    }
    const hello = first.value.message.value;
    assertActsFor(ctx, hello.agentId);
    const session = await openSession(hello, ctx);
    const reading = (async () => {
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done === true) break;
          if (sessions.get(session.agent.id) !== session) break;
          try {
            await onMessage(session, next.value);
          } catch (e) {
            // One bad report does not end the agent's session: its other
            // jobs are fine. It is logged and, for a job, cancelled there.
            const error = toConnectError(e);
            session.logger.warn({ err: error.message, code: Code[error.code], message: next.value.message.case }, "agent message refused");
          }
        }
        dropSession(session, ReturnReason.AGENT_LOST, `agent ${session.agent.id} closed its stream`);
        session.outbox.close();
      } catch (e) {
        dropSession(session, ReturnReason.AGENT_LOST, `agent ${session.agent.id}'s stream broke (${ConnectError.from(e).message})`);
        session.outbox.close();
      }
    })();
    ctx.signal.addEventListener("abort", () => {
      dropSession(session, closed ? ReturnReason.DRAINING : ReturnReason.AGENT_LOST, closed ? "the dispatcher shut down" : `agent ${session.agent.id}'s stream was aborted`);
      session.outbox.close();
    }, { once: true });
    // The reader ends on its own when the agent's side of the stream does.
    void reading;
    yield* session.outbox;
  }

  const agentToWire = (agent: AgentRecord) =>
    create(AgentSchema, {
      hello: redactHello(sessions.get(agent.id)?.hello),
      platform: agent.platform,
      state: agent.draining ? AgentState.DRAINING : AgentState.ACTIVE,
      connectedAt: timestampFromMs(agent.connectedAt),
      lastSeen: timestampFromMs(agent.lastSeen),
      running: [...agent.jobs.values()].map((job) => runningJob({ ...job, leaseId: "" })),
      jobsDone: BigInt(agent.jobsDone),
    });

  const impl: ServiceImpl<typeof DispatcherService> = {
    async *connect(requests, ctx) {
      if (closed) throw new ConnectError("the dispatcher is shutting down; reconnect to another instance", Code.Unavailable);
      if (openStreams >= maxAgents) {
        throw new ConnectError(`the dispatcher serves at most ${maxAgents} agent streams and all are in use; retry later or raise --max-agents`, Code.ResourceExhausted);
      }
      openStreams++;
      try {
        yield* converse(requests, ctx);
      } finally {
        openStreams--;
      }
    },

    async uploadPackage(requests, ctx) {
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
      let upload;
      try {
        upload = await packages.beginUpload({ platform: session.agent.platform, fileName: header.fileName, sha256: header.sha256, sizeBytes: header.sizeBytes });
      } catch (e) {
        throw toConnectError(e);
      }
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done === true) break;
          if (next.value.part.case !== "chunk") throw new ConnectError("after the header, UploadPackage takes only chunks", Code.InvalidArgument);
          await upload.write(next.value.part.value);
        }
        const stored = await upload.commit();
        if (registry.holderOf(held.buildId, held.pkgname) !== held) {
          throw new ConnectError(`job ${held.pkgname} was taken from agent ${session.agent.id} during the upload`, Code.FailedPrecondition);
        }
        uploads.set(jobKey(held.buildId, held.pkgname), stored);
        metrics?.packageStored(session.agent.platform, stored.sizeBytes);
        session.logger.info({ buildId: held.buildId, pkgname: held.pkgname, sizeBytes: String(stored.sizeBytes) }, "package stored");
        return { binaryPackage: { fileName: stored.fileName, sha256: stored.sha256, sizeBytes: stored.sizeBytes } };
      } catch (e) {
        await upload.abort();
        const error = toConnectError(e);
        if (error.code === Code.DataLoss) {
          // A corrupt package fails the job: a retry elsewhere may succeed.
          cancelJob(held, `upload refused: ${error.rawMessage}`);
          void depgraph.markDone({ buildId: held.buildId, pkgname: held.pkgname, leaseId: held.leaseId, outcome: JobOutcome.FAILED,
            logRef: logs.logRef(held.buildId, held.pkgname), failureReason: `uploaded package is corrupt: ${error.rawMessage}`, failedPhase: "upload", decision: "" })
            .catch((err) => session.logger.warn({ err }, "depgraph refused the failure"));
        }
        throw error;
      }
    },

    async *downloadPackage(request, ctx) {
      let stored: StoredPackage | undefined;
      try {
        stored = await packages.stat(request.platform, request.fileName);
      } catch (e) {
        throw toConnectError(e);
      }
      if (stored === undefined) throw new ConnectError(`no package ${request.fileName} for platform ${request.platform}`, Code.NotFound);
      if (request.sha256 !== "" && request.sha256 !== stored.sha256) {
        throw new ConnectError(`${request.fileName} has SHA-256 ${stored.sha256}, not the ${request.sha256} asked for (it was rebuilt since)`, Code.FailedPrecondition);
      }
      yield { part: { case: "binaryPackage", value: { fileName: stored.fileName, sha256: stored.sha256, sizeBytes: stored.sizeBytes } } };
      try {
        for await (const chunk of packages.read(request.platform, request.fileName, ctx.signal)) yield { part: { case: "chunk", value: chunk } };
      } catch (e) {
        throw toConnectError(e);
      }
    },

    async *readLog(request, ctx) {
      try {
        const pieces = logs.read(request.buildId, request.pkgname, { offset: request.offset, follow: request.follow, signal: ctx.signal });
        // A reader that takes nothing holds a chunk and an open file for as
        // long as its connection lives: cut off once a chunk waits too long.
        const guarded = cutOffStalled(pieces, ctx, {
          stallMs: options.streamStallMs ?? DEFAULT_STALL_MS,
          onCutOff: () => options.logger.warn({ buildId: request.buildId, pkgname: request.pkgname }, "ReadLog reader took nothing for too long; stream cut off"),
        });
        for await (const piece of guarded) {
          yield { offset: piece.offset, data: piece.data };
        }
      } catch (e) {
        if (ctx.signal.aborted) return;
        throw toConnectError(e);
      }
    },

    listAgents() {
      return { agents: registry.list().map(agentToWire) };
    },

    drainAgent(request) {
      const session = sessions.get(request.agentId);
      if (session === undefined) throw new ConnectError(`no agent with id "${request.agentId}" is connected`, Code.NotFound);
      if (!session.agent.draining) {
        session.agent.draining = true;
        session.outbox.push(create(ConnectResponseSchema, { message: { case: "drain", value: { reason: "drained by an operator" } } }));
        session.logger.info("agent draining");
      }
      return { agent: agentToWire(session.agent) };
    },
  };

  return {
    impl,
    registry,
    async close() {
      closed = true;
      root.abort();
      clearInterval(renewTimer);
      if (heartbeatTimer !== undefined) clearTimeout(heartbeatTimer);
      for (const session of [...sessions.values()]) {
        dropSession(session, ReturnReason.DRAINING, "the dispatcher shut down");
        session.outbox.fail(new ConnectError("the dispatcher is shutting down; reconnect", Code.Unavailable));
      }
      await logs.close();
    },
  };
}

function refOf(job: RunningJob | undefined): { buildId: string; pkgname: string; leaseId: string } {
  if (job === undefined) throw new ConnectError("the message must name its job (build_id, pkgname, lease_id)", Code.InvalidArgument);
  return { buildId: job.buildId, pkgname: job.pkgname, leaseId: job.leaseId };
}

/**
 * Lease ids stay out of ListAgents and DrainAgent answers: reports, uploads
 * and give-backs are checked against the lease id, so it is what proves an
 * agent holds a job, and only the agent it was assigned to may know it.
 */
function redactHello(hello: AgentHello | undefined): AgentHello | undefined {
  return hello === undefined ? undefined : create(AgentHelloSchema, { ...hello, running: hello.running.map((job) => runningJob({ ...job, leaseId: "" })) });
}

function runningJob(job: { buildId: string; pkgname: string; leaseId: string }): RunningJob {
  return create(RunningJobSchema, { buildId: job.buildId, pkgname: job.pkgname, leaseId: job.leaseId });
}
