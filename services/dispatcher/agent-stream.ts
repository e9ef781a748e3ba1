import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";
import { ReturnReason } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { ConnectResponseSchema, type AgentHello, type ConnectRequest, type ConnectResponse, type RunningJob } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { assertActsFor, createChannel } from "../shared/index.js";
import { jobKey, type AgentRegistry } from "./core/registry.js";
import type { DepGraphLink } from "./depgraph-link.js";
import { createHeartbeatExpiry } from "./heartbeat-expiry.js";
import type { AgentMessageHandler } from "./agent-messages.js";
import type { JobControl } from "./job-control.js";
import { checkHello, type Session, type SessionTable } from "./sessions.js";
import { toConnectError } from "./status.js";
import { refOf, refusal } from "./wire.js";

export interface AgentStreamsOptions {
  readonly registry: AgentRegistry;
  readonly sessions: SessionTable;
  readonly depgraph: DepGraphLink;
  readonly jobs: JobControl;
  readonly onMessage: AgentMessageHandler;
  readonly wake: (platform: string) => void;
  readonly logger: Logger;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  /** Connect streams served at once, those still waiting for their hello included; default 1000. */
  readonly maxAgents?: number;
  readonly now: () => number;
}

/** AgentStreams serves DispatcherService/Connect: one session per agent, from its hello until either side ends it. */
export interface AgentStreams {
  connect(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse>;
  /**
   * Ends every stream without giving jobs back: on our own shutdown the
   * agents keep building and re-attach to the next dispatcher, and their
   * leases stay with depgraph until then.
   */
  close(): void;
}

export function createAgentStreams(options: AgentStreamsOptions): AgentStreams {
  const { registry, sessions, depgraph, jobs, onMessage, wake, logger, now } = options;
  const maxAgents = options.maxAgents ?? 1000;
  // Streams counted against maxAgents, those still waiting for a hello included.
  let openStreams = 0;
  let closed = false;

  const dropSession = (session: Session, reason: ReturnReason, why: string) => {
    if (!sessions.remove(session)) return;
    const held = registry.unregister(session.agent.id, session.agent.session);
    if (closed) return;
    for (const job of held) void jobs.end(job, `${why}; the job goes back to the queue`);
    if (held.length > 0) {
      session.logger.warn({ jobs: held.map((j) => j.pkgname), reason: why }, "agent gone; giving its jobs back");
      void jobs.giveBack(held, reason, why, "agent_lost").catch((e) => session.logger.error({ err: e }, "giving jobs back failed"));
    } else {
      session.logger.info({ reason: why }, "agent disconnected");
    }
    // Its slots are gone; the platform's puller re-counts.
    wake(session.agent.platform);
  };

  const expiry = createHeartbeatExpiry({
    registry,
    now,
    onExpired: (agent) => {
      const session = sessions.get(agent.id);
      if (session === undefined) return;
      const why = `agent ${agent.id} sent nothing for ${Math.round(options.heartbeatTimeoutMs / 1000)} s`;
      session.outbox.fail(new ConnectError(why, Code.DeadlineExceeded));
      dropSession(session, ReturnReason.AGENT_LOST, why);
    },
  });

  const openSession = async (hello: AgentHello, ctx: HandlerContext): Promise<Session> => {
    const { platform } = checkHello(hello);
    const agent = (() => {
      try {
        return registry.register({ id: hello.agentId, platform, slots: hello.slots, scans: hello.scans, host: hello.host }, now());
      } catch (e) {
        throw toConnectError(e);
      }
    })();
    agent.draining = hello.draining;
    const session: Session = { agent, hello, outbox: createChannel(), logger: logger.child({ agentId: agent.id, platform }) };
    sessions.add(session);
    expiry.arm();
    // Re-attach: jobs the agent still runs from before (say, the dispatcher
    // restarted) are kept if depgraph still has their leases.
    let kept: RunningJob[] = [];
    if (hello.running.length > 0) {
      const lost = await depgraph.renewLeases(hello.running.map((j) => ({ ...refOf(j), agentId: agent.id, host: agent.host }))).catch(() => [...hello.running]);
      const lostKeys = new Set(lost.map((l) => `${jobKey(l.buildId, l.pkgname)}\u0000${l.leaseId}`));
      kept = hello.running.filter((j) => !lostKeys.has(`${jobKey(j.buildId, j.pkgname)}\u0000${j.leaseId}`) && registry.holderOf(j.buildId, j.pkgname) === undefined);
      for (const job of kept.slice(0, agent.slots)) registry.hold(agent, refOf(job), now()).accepted = true;
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
    session.logger.info({ host: hello.host, slots: agent.slots, scans: agent.scans, executor: hello.executor || undefined, version: hello.version, kept: kept.length, remote: ctx.requestHeader.get("x-forwarded-for") ?? undefined }, "agent connected");
    wake(platform);
    return session;
  };

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
          if (!sessions.isCurrent(session)) break;
          try {
            await onMessage(session, next.value);
          } catch (e) {
            // One bad report does not end the agent's session: its other
            // jobs are fine. The agent is told, so it can give the job back
            // or forget it rather than wait for ever.
            const error = toConnectError(e);
            session.logger.warn({ err: error.message, code: Code[error.code], message: next.value.message.case }, "agent message refused");
            session.outbox.push(refusal(next.value, error));
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

  return {
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
    close() {
      closed = true;
      expiry.stop();
      for (const session of sessions.all()) {
        dropSession(session, ReturnReason.DRAINING, "the dispatcher shut down");
        session.outbox.fail(new ConnectError("the dispatcher is shutting down; reconnect", Code.Unavailable));
      }
    },
  };
}
