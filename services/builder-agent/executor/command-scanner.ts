// commandScanner is the Scanner of an agent whose tree is not pkgsrc: the
// operator's scan command (command-scan.ts) per location. Reuse compares the
// SCAN_DEPENDS files' dates in the tree, as for pkgsrc.

import { enumerateLocations, scanLocations, type ScanCommandHost } from "../command-scan.js";
import { unchangedSince } from "../pkgsrc/scan.js";
import type { Scanner } from "./scan-executor.js";

export interface CommandScannerOptions {
  readonly command: readonly string[];
  readonly treeDir: string;
  /** Limit for one run of the command, in milliseconds. */
  readonly timeoutMs: number;
  /** PATH, HOME, TMPDIR for the command. */
  readonly env: Readonly<Record<string, string>>;
}

export function createCommandScanner(o: CommandScannerOptions): Scanner {
  const host: ScanCommandHost = { command: o.command, treeDir: o.treeDir, timeoutMs: o.timeoutMs, env: o.env };
  return {
    name: o.command.join(" "),
    scan: (locations, _slot, signal) => scanLocations(host, locations, signal),
    enumerate: (_slot, signal) => enumerateLocations(host, signal),
    unchangedSince: (location, scanDepends, lastScannedMs) => unchangedSince(scanDepends, o.treeDir, lastScannedMs, { location }),
  };
}
