// What this host gives builds, measured when the agent starts: its CPUs,
// its memory, and the disk free where jobs work. Flags override each
// (--cpus, --memory, --disk), e.g. to leave room for something else on the
// host, or to split one host between two agents.

import { statfsSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { dirname } from "node:path";

/** HostResources is what the agent says it has in its hello; 0 means not known. */
export interface HostResources {
  readonly cpus: number;
  readonly memoryBytes: number;
  /** Free for work on the work directory's file system, when the agent started. */
  readonly diskBytes: number;
}

/** measureHostResources reads the host's CPUs and memory and the space free under workDir (or its nearest existing parent). */
export function measureHostResources(workDir: string): HostResources {
  return { cpus: availableParallelism(), memoryBytes: totalmem(), diskBytes: freeSpaceUnder(workDir) };
}

function freeSpaceUnder(path: string): number {
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      const fs = statfsSync(dir);
      return Number(fs.bavail) * Number(fs.bsize);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || dirname(dir) === dir) return 0;
    }
  }
}
