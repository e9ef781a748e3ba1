// GetBuildStatus and ExplainJob: a build as an operator follows it (what
// runs where, since when, and when it should end) and why one job stands
// where it stands. Read-only; the work is in core/estimate.ts and
// core/explain.ts, this only translates.
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import {
  BuildEstimateSchema,
  WaitKind as WireWaitKind,
  WaitReasonSchema,
  type WaitReason as WireWaitReason,
  type Build as WireBuild,
  type DepGraphService,
  type Job as WireJob,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { Build, type Job } from "./core/build.js";
import { SERVED_FOR_MS, type DepGraph } from "./core/depgraph.js";
import { estimateBuild, type ExpectedMs } from "./core/estimate.js";
import { explainJob, type ExplainContext, type WaitKind, type WaitReason } from "./core/explain.js";
import { resourceWaitOf } from "../shared/placement.js";
import { InvalidRequest } from "./core/errors.js";
import { jobToWire } from "./convert.js";
import { pendingBuildToWire } from "./convert-scan.js";
import { toConnectError } from "./status.js";
import { quote } from "../shared/quote.js";

export interface StatusHandlerOptions {
  readonly depgraph: DepGraph;
  /** A build as GetBuild answers it (with its problem and scan id). */
  readonly wireBuild: (build: Build) => WireBuild;
  readonly now: () => number;
  readonly logger: Logger;
}

const waitKindToWire: Record<WaitKind, WireWaitKind> = {
  "none": WireWaitKind.NONE,
  "dependencies": WireWaitKind.DEPENDENCIES,
  "no-agent-for-platform": WireWaitKind.NO_AGENT_FOR_PLATFORM,
  "agents-busy": WireWaitKind.AGENTS_BUSY,
  "no-agent-with-resources": WireWaitKind.NO_AGENT_WITH_RESOURCES,
  "all-fitting-busy": WireWaitKind.ALL_FITTING_BUSY,
  "exclusion": WireWaitKind.EXCLUSION,
};

/** waitReasonToWire is a WaitReason as ExplainJob and ListJobs (Job.wait) carry it. */
export function waitReasonToWire(wait: WaitReason): WireWaitReason {
  return create(WaitReasonSchema, { kind: waitKindToWire[wait.kind], dependencies: [...wait.dependencies], detail: wait.detail });
}

/**
 * explainContext is what explain.ts is told of the farm: whether hosts of
 * the build's platform ask for work, and, from the agents the dispatcher
 * last sent with NextReadyJob, whether a ready job's needs keep it off them.
 */
export function explainContext(depgraph: DepGraph, build: Build, expectedMs: ExpectedMs, now: number): ExplainContext {
  const agents = depgraph.resources.agentsOf(build.options.platform, now);
  return {
    expectedMs,
    now,
    platformServed: depgraph.platformServed(build.options.platform),
    servedWindowMs: SERVED_FOR_MS,
    resourceWait: agents === undefined ? undefined : (job) => {
      const { needs, origin } = depgraph.needsOf(job);
      const wait = resourceWaitOf(needs, agents);
      return wait === undefined ? undefined : { ...wait, origin };
    },
  };
}

export function createStatusHandlers(options: StatusHandlerOptions): Pick<ServiceImpl<typeof DepGraphService>, "getBuildStatus" | "explainJob"> {
  const { depgraph, wireBuild } = options;
  const expectedMs: ExpectedMs = (job) => depgraph.expectedDurationMs(job);
  const withExpected = (build: Build, job: Job): WireJob => {
    const wire = jobToWire(build, job);
    wire.expectedDuration = durationFromMs(Math.round(expectedMs(job)));
    return wire;
  };
  const translated = <T>(method: string, run: () => T): T => {
    try {
      return run();
    } catch (e) {
      const error = toConnectError(e);
      if (error.code === Code.Internal) options.logger.error({ err: e, method }, "request failed");
      throw error;
    }
  };

  return {
    getBuildStatus(request) {
      return translated("GetBuildStatus", () => {
        if (request.buildId === "") throw new InvalidRequest("build_id is required");
        const now = options.now();
        const found = depgraph.getBuildOrPending(request.buildId);
        if (!(found instanceof Build)) {
          return { build: pendingBuildToWire(found), running: [], elapsed: durationFromMs(Math.max(0, now - found.options.createdAt)) };
        }
        const build = found;
        // Longest running first: what a person looks at when a build drags.
        const running = build.jobs.filter((j) => j.state === "leased")
          .sort((a, b) => (a.startedAt ?? now) - (b.startedAt ?? now) || (a.pkgname < b.pkgname ? -1 : 1));
        const estimate = estimateBuild(build, expectedMs, now);
        const end = build.finishedAt ?? now;
        return {
          build: wireBuild(build),
          running: running.map((job) => withExpected(build, job)),
          estimate: estimate === undefined ? undefined : create(BuildEstimateSchema, {
            finishTime: timestampFromMs(now + estimate.remainingMs),
            remaining: durationFromMs(Math.round(estimate.remainingMs)),
            workLeft: durationFromMs(Math.round(estimate.workLeftMs)),
            criticalPathLeft: durationFromMs(Math.round(estimate.criticalPathLeftMs)),
            parallelism: estimate.parallelism,
          }),
          elapsed: durationFromMs(Math.max(0, end - build.options.createdAt)),
        };
      });
    },

    explainJob(request) {
      return translated("ExplainJob", () => {
        if (request.buildId === "") throw new InvalidRequest("build_id is required");
        if (request.pkgname === "") throw new InvalidRequest("pkgname is required: the PKGNAME of a job of the build, e.g. \"gmake-4.4.1\"");
        const found = depgraph.getBuildOrPending(request.buildId);
        if (!(found instanceof Build)) {
          throw new ConnectError(`build ${quote(request.buildId)} has no jobs yet: it waits for scan ${found.scanId} to close its list`, Code.FailedPrecondition);
        }
        const build = found;
        const job = build.byPkgname.get(request.pkgname);
        if (job === undefined) throw new ConnectError(`build ${quote(build.id)} has no job ${quote(request.pkgname)}; pkgfarm jobs ${build.id} lists them`, Code.NotFound);
        const explanation = explainJob(build, job, explainContext(depgraph, build, expectedMs, options.now()));
        return {
          job: withExpected(build, job),
          chain: explanation.chain.map((j) => withExpected(build, j)),
          wait: waitReasonToWire(explanation.wait),
          summary: explanation.summary,
        };
      });
    },
  };
}
