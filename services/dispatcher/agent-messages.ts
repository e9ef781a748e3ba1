import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ReturnReason } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { ConnectResponseSchema, type ConnectRequest } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { AgentRegistry } from "./core/registry.js";
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
  readonly metrics?: DispatcherMetrics;
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
