// pkgsrcScanner is the Scanner of an agent with a pkgsrc tree: pbulk's scan
// (pkgsrc/scan.ts) run in the job's slot sandbox, whose prefix is first
// restored from the bootstrap kit with the agent's mk.conf lines, so that a
// scan sees exactly the prefix a build of that slot would.

import { enumerateLocations, scanLocations, unchangedSince, type PkgsrcHost } from "../pkgsrc/scan.js";
import { BMAKE } from "./pkgsrc-executor.js";
import type { Scanner } from "./scan-executor.js";
import type { SlotSandbox } from "./slot-sandbox.js";

export interface PkgsrcScannerOptions {
  readonly treeDir: string;
  readonly bootstrapKit: string;
  readonly sandbox: SlotSandbox;
  readonly mkConfLines: readonly string[];
  /** The modification time the prefix's mk.conf gets after the lines are added (SlotSandbox.reset). */
  readonly mkConfMtimeMs?: number;
  /** Limit for one location's bmake pbulk-index, in milliseconds. */
  readonly timeoutMs: number;
}

export function createPkgsrcScanner(o: PkgsrcScannerOptions): Scanner {
  const host = async (slot: number): Promise<PkgsrcHost> => {
    await o.sandbox.reset(slot, o.bootstrapKit, o.mkConfLines, o.mkConfMtimeMs);
    const chrootDir = o.sandbox.chrootDir(slot);
    return { treeDir: o.treeDir, bmake: BMAKE, sandbox: o.sandbox.kind, binds: o.sandbox.binds(slot), timeoutMs: o.timeoutMs, ...(chrootDir === undefined ? {} : { chrootDir }) };
  };
  return {
    name: "bmake pbulk-index",
    async scan(locations, slot, signal) {
      return scanLocations(await host(slot), locations, signal);
    },
    async enumerate(slot, signal) {
      return enumerateLocations(await host(slot), signal);
    },
    unchangedSince(location, scanDepends, lastScannedMs, slot) {
      return unchangedSince(scanDepends, o.treeDir, lastScannedMs, { location, binds: o.sandbox.binds(slot) });
    },
  };
}
