import type { Client } from "@connectrpc/connect";
import { BuildState, type Build, type DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";

/**
 * waitForBuild polls GetBuild until the build has ended (neither scanning
 * its list's closure nor running), and throws with its job counts once
 * timeoutMs has passed. A failing GetBuild fails the wait at once.
 */
export async function waitForBuild(depgraph: Client<typeof DepGraphService>, buildId: string, timeoutMs: number, pollMs = 50): Promise<Build> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { build } = await depgraph.getBuild({ buildId });
    if (build!.state !== BuildState.RUNNING && build!.state !== BuildState.SCANNING) return build!;
    if (Date.now() > deadline) throw new Error(`build ${buildId} still ${BuildState[build!.state]} after ${timeoutMs} ms: ${JSON.stringify(build!.jobCounts)}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
