import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { AgentSchema, AgentState, ConnectResponseSchema, type DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { AgentRecord, AgentRegistry } from "./core/registry.js";
import type { SessionTable } from "./sessions.js";
import { redactHello, runningJob } from "./wire.js";

type Impl = ServiceImpl<typeof DispatcherService>;

/** createAgentsView serves ListAgents and DrainAgent: the connected agents as people see them, lease ids left out. */
export function createAgentsView(registry: AgentRegistry, sessions: SessionTable): Pick<Impl, "listAgents" | "drainAgent"> {
  const agentToWire = (agent: AgentRecord) =>
    create(AgentSchema, {
      hello: redactHello(sessions.get(agent.id)?.hello),
      platform: agent.platform,
      state: agent.draining ? AgentState.DRAINING : AgentState.ACTIVE,
      connectedAt: timestampFromMs(agent.connectedAt),
      lastSeen: timestampFromMs(agent.lastSeen),
      running: [...agent.jobs.values()].map((job) => runningJob({ ...job, leaseId: "" })),
      jobsDone: BigInt(agent.jobsDone),
      jobs: [...agent.jobs.values()].map((job) => ({ job: runningJob({ ...job, leaseId: "" }), assignTime: timestampFromMs(job.assignedAt), accepted: job.accepted, kind: job.kind })),
    });
  return {
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
}
