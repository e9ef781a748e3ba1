import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { ReturnReason, type Assignment } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { ConnectResponseSchema } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { makeJobsFor } from "../shared/placement.js";
import type { AgentRegistry } from "./core/registry.js";
import type { JobControl } from "./job-control.js";
import type { LogStore } from "./log-store.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { Session, SessionTable } from "./sessions.js";
import { needsFromWire } from "./resources-wire.js";
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
   * Places each job on an agent of the platform it fits now (placement.ts:
   * free slot, memory, disk, labels, exclusion class; a scan job on one that
   * runs scans) and gives it its share of the agent's CPUs as MAKE_JOBS;
   * jobs no agent can take (an agent left while NextReadyJob was out, or
   * another answer took the room) go back to depgraph, as draining: not the
   * jobs' fault.
   */
  place(platform: string, assignments: readonly Assignment[]): void;
}

export function createAssigner(options: AssignerOptions): Assigner {
  const { registry, sessions, logs, jobs, logger, now, metrics } = options;

  const assign = (session: Session, a: Assignment) => {
    const { agent } = session;
    if (a.scan !== undefined) {
      const scan = a.scan;
      const held = registry.hold(agent, { buildId: a.buildId, pkgname: scan.jobName, leaseId: a.leaseId }, now(), "scan");
      metrics?.jobAssigned(held, agent.platform);
      const what = scan.enumerate ? "the tree's locations" : `${scan.locations.length} location(s)`;
      void logs.begin(a.buildId, scan.jobName, `scan job ${scan.jobName} (${what}) attempt ${a.attempt} on agent ${agent.id}`)
        .catch((e) => session.logger.error({ err: e, scanJob: scan.jobName }, "cannot start the scan job's log"));
      session.outbox.push(create(ConnectResponseSchema, {
        message: { case: "assign", value: { job: runningJob(held), attempt: a.attempt, platform: agent.platform, scan } },
      }));
      session.logger.info({ scanId: a.buildId, scanJob: scan.jobName, locations: scan.locations.length, enumerate: scan.enumerate, attempt: a.attempt }, "scan job assigned");
      return;
    }
    const pkg = a.package!;
    const needs = needsFromWire(a.needs);
    const makeJobs = makeJobsFor(needs, { cpus: agent.resources.cpus, slots: agent.slots, running: agent.jobs.size, committed: registry.cpusCommitted(agent) },
      pkg.scanVars["MAKE_JOBS_SAFE"]?.toLowerCase() !== "no");
    const held = registry.hold(agent, { buildId: a.buildId, pkgname: pkg.pkgname, leaseId: a.leaseId }, now(), "build", { needs, makeJobs });
    metrics?.jobAssigned(held, agent.platform);
    void logs.begin(a.buildId, pkg.pkgname, `${pkg.pkgname} (${pkg.location}) attempt ${a.attempt} on agent ${agent.id}`)
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
          platform: agent.platform,
          scanVars: pkg.scanVars,
          dependencies: a.dependencies,
          rebuildReason: a.rebuildReason,
          incremental: a.incremental,
          makeJobs,
          needs: a.needs,
        },
      },
    }));
    session.logger.info({ buildId: a.buildId, pkgname: pkg.pkgname, attempt: a.attempt, makeJobs }, "job assigned");
  };

  return {
    place(platform, assignments) {
      const unplaced: Assignment[] = [];
      for (const assignment of assignments) {
        if (assignment.scan === undefined && assignment.package === undefined) {
          logger.error({ buildId: assignment.buildId }, "depgraph sent an assignment with neither a package nor a scan; giving it back");
          unplaced.push(assignment);
          continue;
        }
        const agent = assignment.scan !== undefined ? registry.pickAgent(platform, "scan") : registry.pickAgent(platform, "build", needsFromWire(assignment.needs));
        const session = agent === undefined ? undefined : sessions.get(agent.id);
        if (session === undefined) unplaced.push(assignment);
        else assign(session, assignment);
      }
      if (unplaced.length === 0) return;
      void jobs.giveBack(unplaced.map((a) => ({ buildId: a.buildId, pkgname: a.scan?.jobName ?? a.package?.pkgname ?? "", leaseId: a.leaseId })),
        ReturnReason.DRAINING, "no free agent slot the job fits when it arrived", "no_free_slot")
        .catch((e) => logger.error({ err: e }, "giving back unplaced jobs failed"));
    },
  };
}
