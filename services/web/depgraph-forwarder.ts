import type { DescMethod } from "@bufbuild/protobuf";
import type { Client, ServiceImpl } from "@connectrpc/connect";
import { DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { Guard } from "../shared/index.js";

/**
 * The web page talks to one origin, the dispatcher that serves it, so the
 * dispatcher forwards the few depgraph calls the page makes, under their own
 * names (pkgfarm.v1.DepGraphService/GetBuildStatus on the dispatcher's port
 * is depgraph's). Giving the page both URLs instead would need depgraph
 * reachable from every browser, CORS on it, and a second address to
 * configure; forwarding needs none of that, and depgraph stays behind the
 * dispatcher as agents already see it.
 *
 * The forwarded calls run with the dispatcher's own credentials (its
 * operator token, when set), so the dispatcher checks the caller first:
 * CancelBuild needs the operator token here as it does on depgraph
 * (WEB_FORWARDED_GUARDS); the reads are open, or need a read token, as the
 * dispatcher's own reads do. Nothing else of depgraph is reachable this way:
 * the other methods answer UNIMPLEMENTED.
 */
export type DepGraphForwarder = Partial<ServiceImpl<typeof DepGraphService>>;

/** The forwarded methods that change something, and who may call them. */
export const WEB_FORWARDED_GUARDS: ReadonlyMap<DescMethod, Guard> = new Map<DescMethod, Guard>([
  [DepGraphService.method.cancelBuild, "operator"],
]);

/** createDepGraphForwarder passes each call to depgraph with the caller's deadline and cancellation. */
export function createDepGraphForwarder(depgraph: Client<typeof DepGraphService>): DepGraphForwarder {
  return {
    listBuilds: (req, ctx) => depgraph.listBuilds(req, { signal: ctx.signal }),
    getBuild: (req, ctx) => depgraph.getBuild(req, { signal: ctx.signal }),
    getBuildStatus: (req, ctx) => depgraph.getBuildStatus(req, { signal: ctx.signal }),
    listJobs: (req, ctx) => depgraph.listJobs(req, { signal: ctx.signal }),
    explainJob: (req, ctx) => depgraph.explainJob(req, { signal: ctx.signal }),
    listPlatforms: (req, ctx) => depgraph.listPlatforms(req, { signal: ctx.signal }),
    cancelBuild: (req, ctx) => depgraph.cancelBuild(req, { signal: ctx.signal }),
    // Backpressure carries through: a browser that stops reading stops this
    // loop, and depgraph's own stall guard then ends the upstream call.
    async *watchJobs(req, ctx) {
      yield* depgraph.watchJobs(req, { signal: ctx.signal });
    },
  };
}
