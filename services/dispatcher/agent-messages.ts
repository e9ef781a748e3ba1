import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ReturnReason } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { ConnectResponseSchema, type ConnectRequest } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { AgentRegistry, HeldJob } from "./core/registry.js";
import type { JobControl } from "./job-control.js";
import type { LogStore } from "./log-store.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { ResultRelay } from "./results.js";
import type { Session } from "./sessions.js";
import { refOf } from "./wire.js";

export interface AgentMessageOptions {
  readonly registry: AgentRegistry;
  readonly logs: LogStore;
  readonly jobs: JobControl;
  readonly results: ResultRelay;
  readonly wake: (platform: string) => void;
  readonly now: () => number;
  /**
   * How long an assignment the agent has not accepted yet may be missing
   * from its heartbeats: it may still be on its way down the stream. At
   * least a heartbeat interval; the dispatcher gives it the heartbeat
   * timeout, since a slow link or a loaded host can hold a message back for
   * longer than an interval, and a live agent accepts or releases every
   * assignment it gets anyway.
   */
  readonly unacceptedGraceMs: number;
  readonly metrics?: DispatcherMetrics;
  /** Called when the agent starts a job, to tell depgraph where it runs. */
  readonly onAccepted?: (job: HeldJob) => void;
}

/**
 * An AgentMessageHandler acts on one message of an agent's stream after its
 * hello. It throws for a message it refuses (a job not held, a malformed
 * report); the stream goes on.
 */
export type AgentMessageHandler = (session: Session, request: ConnectRequest) => Promise<void>;

export function createAgentMessageHandler(options: AgentMessageOptions): AgentMessageHandler {
  const { registry, logs, jobs, results, wake, now, metrics } = options;
  return async (session, request) => {
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
        // Jobs we hold for the agent that it no longer runs (it lost them,
        // or dropped one whose report was refused) go back now, not when
        // the stream ends: the agent may live for weeks.
        const gone = registry.notListed(agent, request.message.value.running, now(), options.unacceptedGraceMs);
        if (gone.length > 0) {
          const why = `agent ${agent.id} no longer runs the job (its heartbeat does not list it)`;
          for (const job of gone) void jobs.end(job, `${why}; the job goes back to the queue`);
          session.logger.warn({ jobs: gone.map((j) => j.pkgname) }, "agent no longer runs jobs it holds; giving them back");
          wake(agent.platform);
          // Counted as lost, so a package that makes agents drop it fails after a few tries.
          void jobs.giveBack(gone, ReturnReason.AGENT_LOST, why, "not_running")
            .catch((e) => session.logger.error({ err: e }, "giving back jobs the agent no longer runs failed; their leases will expire"));
        }
        return;
      }
      case "accepted": {
        const held = registry.held(agent, refOf(request.message.value.job));
        held.accepted = true;
        metrics?.jobAccepted(held, agent.platform);
        options.onAccepted?.(held);
        return;
      }
      case "log": {
        const held = registry.held(agent, refOf(request.message.value.job));
        await logs.append(held.buildId, held.pkgname, request.message.value.data, request.message.value.phase);
        return;
      }
      case "finished":
        return results.finished(session, request.message.value);
      case "released": {
        const held = registry.held(agent, refOf(request.message.value.job));
        await jobs.end(held, `released by the agent: ${request.message.value.reason}`);
        await jobs.giveBack([held], ReturnReason.DRAINING, `agent ${agent.id} gave the job back: ${request.message.value.reason}`, "released_by_agent");
        wake(agent.platform);
        return;
      }
      case "hello":
        throw new ConnectError("hello may only be the first message of a stream", Code.InvalidArgument);
      default:
        throw new ConnectError("empty message: set one of hello, heartbeat, accepted, log, finished, released", Code.InvalidArgument);
    }
  };
}
