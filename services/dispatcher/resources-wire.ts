// Placement's plain types to and from their wire messages, on the dispatcher's side.

import { create } from "@bufbuild/protobuf";
import { AgentCapacitySchema, type AgentCapacity, type ResourceNeeds } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { AgentHello } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { NO_NEEDS, type Host, type Needs } from "../shared/placement.js";
import type { AgentResources } from "./core/registry.js";

/** needsFromWire reads Assignment.needs; absent (a depgraph without placement) is no needs. */
export function needsFromWire(needs: ResourceNeeds | undefined): Needs {
  if (needs === undefined) return NO_NEEDS;
  return { memoryBytes: Number(needs.memoryBytes), diskBytes: Number(needs.diskBytes), cpus: needs.cpus, exclusive: needs.exclusive, labels: { ...needs.labels } };
}

/** resourcesOfHello is what an agent said it gives builds. */
export function resourcesOfHello(hello: AgentHello): AgentResources {
  return { cpus: hello.cpus, memoryBytes: Number(hello.memoryBytes), diskBytes: Number(hello.diskBytes), labels: { ...hello.labels } };
}

/** capacityToWire is one agent as NextReadyJobRequest.agents carries it. */
export function capacityToWire(host: Host): AgentCapacity {
  return create(AgentCapacitySchema, {
    agentId: host.id,
    freeSlots: host.freeSlots,
    cpus: host.cpus,
    memoryBytes: BigInt(host.memoryBytes),
    diskBytes: BigInt(host.diskBytes),
    memoryFreeBytes: BigInt(host.memoryFreeBytes),
    diskFreeBytes: BigInt(host.diskFreeBytes),
    labels: { ...host.labels },
    exclusiveRunning: [...host.exclusiveRunning],
  });
}
