// The synthetic tree of the chaos run: pbulk-index records shaped like a real
// tree's (a few widely used libraries at the bottom, long tails of leaves on
// top), with the hard parts a real tree has: dependency cycles, prefailures
// (PKG_FAIL_REASON, PKG_SKIP_REASON, a dependency nothing provides) and a
// chosen set of packages whose build fails. Pure: the same seed gives the
// same tree.
import { NO_SCAN_VARS } from "../../services/depgraph/core/scan-record.js";
import { DEFAULT_PBULK_WEIGHT, formatScanRecord, type ScanRecord } from "../../services/depgraph/core/scan-record.js";

export interface ChaosTreeOptions {
  readonly packages: number;
  /** Dependency cycles to plant, each of 2 to 6 members. */
  readonly cycles: number;
  /** Share of packages with PKG_FAIL_REASON or PKG_SKIP_REASON. */
  readonly prefailShare: number;
  /** Share of packages whose build command fails. */
  readonly failShare: number;
  readonly random: () => number;
}

/** ChaosTree is the tree and what the run expects of it. */
export interface ChaosTree {
  readonly records: readonly ScanRecord[];
  /** PKGNAMEs whose build the build command fails on purpose. */
  readonly failing: ReadonlySet<string>;
  /** PKGNAMEs given PKG_FAIL_REASON, PKG_SKIP_REASON or an unresolvable dependency. */
  readonly prefailed: ReadonlySet<string>;
  /** PKGNAMEs planted in cycles. */
  readonly inCycles: ReadonlySet<string>;
}

const CATEGORIES = ["devel", "lang", "net", "www", "textproc", "graphics", "audio", "math", "sysutils", "x11", "databases", "security"];

/** chaosLocation names package i: spread over categories like a real tree. */
export function chaosLocation(i: number): string {
  return `${CATEGORIES[i % CATEGORIES.length]}/chaos${i}`;
}

export function chaosRecord(i: number, version: string, deps: readonly number[], extra: Partial<ScanRecord> = {}): ScanRecord {
  const location = chaosLocation(i);
  return {
    pkgname: `chaos${i}-${version}`,
    location,
    dependencies: deps.map((j) => ({ pattern: `chaos${j}>=1.0`, location: chaosLocation(j) })),
    failReason: "",
    skipReason: "",
    multiVersion: "",
    scanDepends: `../../mk/bsd.pkg.mk ../../${location}/Makefile`,
    pbulkWeight: DEFAULT_PBULK_WEIGHT,
    categories: [location.split("/")[0]!],
    maintainer: "chaos@example.org",
    resolvedByPbulk: undefined,
    line: 0,
    ...extra,
    vars: extra.vars ?? NO_SCAN_VARS,
  };
}

/**
 * generateChaosTree builds the records. Package i depends on packages below
 * it, drawn towards the bottom (u² of the range), so low numbers are the
 * libraries everything needs and transitive closures stay in the hundreds,
 * as in pkgsrc. Cycles join packages in the top tenth, where few depend on
 * them, so they block a few dozen packages, not half the tree.
 */
export function generateChaosTree(options: ChaosTreeOptions): ChaosTree {
  const { packages, random } = options;
  const deps: number[][] = [];
  for (let i = 0; i < packages; i++) {
    const own = new Set<number>();
    if (i > 0 && random() > 0.25) {
      const n = 1 + Math.floor(random() * 4);
      for (let k = 0; k < n; k++) own.add(Math.floor(i * random() ** 2));
    }
    deps.push([...own]);
  }
  const inCycles = new Set<number>();
  const top = Math.floor(packages * 0.9);
  for (let c = 0; c < options.cycles; c++) {
    const size = 2 + Math.floor(random() * 5);
    const members: number[] = [];
    while (members.length < size) {
      const m = top + Math.floor(random() * (packages - top));
      if (!inCycles.has(m)) {
        inCycles.add(m);
        members.push(m);
      }
    }
    // m0 → m1 → … → m0.
    members.forEach((m, k) => deps[m]!.push(members[(k + 1) % members.length]!));
  }
  const prefailed = new Set<string>();
  const failing = new Set<string>();
  const records: ScanRecord[] = [];
  for (let i = 0; i < packages; i++) {
    const version = `1.${i % 10}`;
    let extra: Partial<ScanRecord> = {};
    const r = random();
    // The bottom tenth is what most of the tree needs: a failure there blocks
    // thousands, which tells nothing more about the services than one on top.
    const bottom = i < packages / 10;
    if (!inCycles.has(i) && !bottom && r < options.prefailShare) {
      const kind = Math.floor(random() * 3);
      if (kind === 0) extra = { failReason: `"chaos${i} does not build on this platform"` };
      else if (kind === 1) extra = { skipReason: `"chaos${i} has a restrictive licence"` };
      else extra = { dependencies: [...chaosRecord(i, version, deps[i]!).dependencies, { pattern: "nowhere>=1.0", location: "devel/nowhere" }] };
    }
    const record = chaosRecord(i, version, deps[i]!, extra);
    if (extra.failReason !== undefined || extra.skipReason !== undefined || extra.dependencies !== undefined) prefailed.add(record.pkgname);
    else if (!inCycles.has(i) && !bottom && random() < options.failShare) failing.add(record.pkgname);
    records.push(record);
  }
  return { records, failing, prefailed, inCycles: new Set([...inCycles].map((i) => records[i]!.pkgname)) };
}

export function formatRecords(records: readonly ScanRecord[]): string {
  return records.map(formatScanRecord).join("");
}
