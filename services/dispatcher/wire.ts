import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { AgentHelloSchema, ConnectResponseSchema, RunningJobSchema, type AgentHello, type ConnectRequest, type ConnectResponse, type RunningJob } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { grpcCodeName } from "../shared/index.js";

/** JobRef names a job and the lease it is held under. */
export interface JobRef {
  readonly buildId: string;
  readonly pkgname: string;
  readonly leaseId: string;
}

/** refOf reads the job an agent message names; a message that names none is INVALID_ARGUMENT. */
export function refOf(job: RunningJob | undefined): JobRef {
  if (job === undefined) throw new ConnectError("the message must name its job (build_id, pkgname, lease_id)", Code.InvalidArgument);
  return { buildId: job.buildId, pkgname: job.pkgname, leaseId: job.leaseId };
}

export function runningJob(job: JobRef): RunningJob {
  return create(RunningJobSchema, { buildId: job.buildId, pkgname: job.pkgname, leaseId: job.leaseId });
}

/**
 * Lease ids stay out of ListAgents and DrainAgent answers: reports, uploads
 * and give-backs are checked against the lease id, so it is what proves an
 * agent holds a job, and only the agent it was assigned to may know it.
 */
export function redactHello(hello: AgentHello | undefined): AgentHello | undefined {
  return hello === undefined ? undefined : create(AgentHelloSchema, { ...hello, running: hello.running.map((job) => runningJob({ ...job, leaseId: "" })) });
}

/** The job an agent message names, if it names one. */
export function jobOf(request: ConnectRequest): RunningJob | undefined {
  switch (request.message.case) {
    case "accepted":
    case "log":
    case "finished":
    case "released":
      return request.message.value.job;
    default:
      return undefined;
  }
}

/**
 * refusal tells the agent which of its messages was refused and why, so it
 * never waits for something that will not happen (a result that was not
 * taken, a give-back of a job it does not hold).
 */
export function refusal(request: ConnectRequest, error: ConnectError): ConnectResponse {
  return create(ConnectResponseSchema, {
    message: {
      case: "refused",
      value: { job: jobOf(request), message: request.message.case ?? "empty", code: grpcCodeName(error.code), reason: error.rawMessage },
    },
  });
}
