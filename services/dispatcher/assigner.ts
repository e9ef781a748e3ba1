import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { ReturnReason, type Assignment } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { ConnectResponseSchema } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { AgentRegistry } from "./core/registry.js";
import type { JobControl } from "./job-control.js";
import type { LogStore } from "./log-store.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { Session, SessionTable } from "./sessions.js";
import { runningJob } from "./wire.js";

export interface AssignerOptions {
  readonly registry: AgentRegistry;
  readonly sessions: SessionTable;
  readonly logs: LogStore;
  readonly jobs: JobControl;
  readonly logger: Logger;
  readonly now: () => number;
  readonly metrics?: DispatcherMetrics;
}

/** Assigner sends leased jobs down their agents' streams. */
export interface Assigner {
  /**
   * Places each job on the platform's agent with the most free slots; jobs
   * for which no slot is left (an agent left while NextReadyJob was out) go
   * back to depgraph, as draining: not the jobs' fault.
   */
  place(platform: string, assignments: readonly Assignment[]): void;
}

export function createAssigner(options: AssignerOptions): Assigner {
  const { registry, sessions, logs, jobs, logger, now, metrics } = options;

  const assign = (session: Session, a: Assignment) => {
    const pkg = a.package!;
    const held = registry.hold(session.agent, { buildId: a.buildId, pkgname: pkg.pkgname, leaseId: a.leaseId }, now());
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

  return {
    place(platform, assignments) {
      const unplaced: Assignment[] = [];
      for (const assignment of assignments) {
        const agent = registry.pickAgent(platform);
        const session = agent === undefined ? undefined : sessions.get(agent.id);
        if (session === undefined) unplaced.push(assignment);
        else assign(session, assignment);
      }
      if (unplaced.length === 0) return;
      void jobs.giveBack(unplaced.map((a) => ({ buildId: a.buildId, pkgname: a.package!.pkgname, leaseId: a.leaseId })),
        ReturnReason.DRAINING, "no free agent slot when the job arrived", "no_free_slot")
        .catch((e) => logger.error({ err: e }, "giving back unplaced jobs failed"));
    },
  };
}
