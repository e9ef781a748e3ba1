// byJobKind sends scan assignments to the scan executor and everything else
// to the build executor: one slot pool, two kinds of work (issue 9: builds
// and scans share the agents' slots).

import type { Executor } from "./executor.js";
import { failed } from "./executor.js";

export function byJobKind(build: Executor, scan: Executor | undefined): Executor {
  return {
    name: build.name,
    async run(job, ctx) {
      if (job.scan === undefined) return build.run(job, ctx);
      if (scan === undefined) return failed(0, "this agent cannot scan (it has no pkgsrc tree and no --scan-command)", "scan");
      return scan.run(job, ctx);
    },
  };
}
