// Conversions between placement's plain types and their wire messages.

import { create } from "@bufbuild/protobuf";
import { ResourceNeedsSchema, type AgentCapacity, type ResourceNeeds } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { Host } from "../shared/placement.js";
import type { NeedsWithOrigin } from "./core/resource-needs.js";

/** needsToWire is a package's needs as Package.needs and Assignment.needs carry them. */
export function needsToWire({ needs, origin }: NeedsWithOrigin): ResourceNeeds {
  return create(ResourceNeedsSchema, {
    memoryBytes: BigInt(needs.memoryBytes),
    diskBytes: BigInt(needs.diskBytes),
    cpus: needs.cpus,
    exclusive: needs.exclusive,
    labels: { ...needs.labels },
    origin,
  });
}

/** hostFromWire is one agent of a NextReadyJobRequest as placement sees it. */
export function hostFromWire(agent: AgentCapacity): Host {
  return {
    id: agent.agentId,
    freeSlots: agent.freeSlots,
    cpus: agent.cpus,
    memoryBytes: Number(agent.memoryBytes),
    diskBytes: Number(agent.diskBytes),
    memoryFreeBytes: Number(agent.memoryFreeBytes),
    diskFreeBytes: Number(agent.diskFreeBytes),
    labels: { ...agent.labels },
    exclusiveRunning: [...agent.exclusiveRunning],
  };
}
