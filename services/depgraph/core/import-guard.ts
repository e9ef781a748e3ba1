import type { InvalidScanRecord } from "./errors.js";
import type { ScanRecord } from "./scan-record.js";

/** The share of a platform's packages a whole-tree import may remove when the caller names none. */
export const DEFAULT_MAX_REMOVED_SHARE = 0.5;

/**
 * TooManyRemoved: a whole-tree import would remove more of the tree than the
 * caller allowed. A truncated file, or a scan that failed half way, looks
 * exactly like a tree that lost half its packages; refusing it by default is
 * what keeps such a file from replacing the tree with half of it.
 */
export class TooManyRemoved extends Error {
  override readonly name = "TooManyRemoved";
  constructor(
    readonly removed: number,
    readonly packages: number,
    readonly maxShare: number,
  ) {
    const percent = (n: number) => `${Math.round(n * 1000) / 10}%`;
    super(
      `this import would remove ${removed} of the tree's ${packages} packages (${percent(removed / packages)}: their locations are not in it), ` +
        `more than the ${percent(maxShare)} max_removed_share allows; the tree was left as it was. ` +
        "If the packages are really gone, import again allowing it (max_removed_share 1, `pkgfarm import --max-removed-share 1`)",
    );
  }
}

/**
 * CutOffImport: a whole-tree import whose input ends inside a record. A cut
 * file is never the whole tree, whatever share it happens to keep, so it
 * replaces nothing unless the caller allows any removal.
 */
export class CutOffImport extends Error {
  override readonly name = "CutOffImport";
  constructor(readonly cut: InvalidScanRecord) {
    super(
      `the import ends inside a record (line ${cut.line}${cut.location ? `, ${cut.location}` : ""}): it was cut off, and a whole-tree import of part of a scan would drop the rest; ` +
        "the tree was left as it was. Import the whole file, or allow it anyway with max_removed_share 1 (`pkgfarm import --max-removed-share 1`)",
    );
  }
}

/** checkWhole throws CutOffImport when a whole-tree import was cut off and the caller did not allow any removal. */
export function checkWhole(problems: readonly InvalidScanRecord[], maxShare: number): void {
  if (maxShare >= 1) return;
  const cut = problems.find((p) => p.cutOff);
  if (cut !== undefined) throw new CutOffImport(cut);
}

/**
 * maxRemovedShareFromWire reads ImportScanRequest.max_removed_share: 0 is the
 * default, 1 allows any removal; anything outside 0..1 is a caller's mistake.
 */
export function maxRemovedShareFromWire(share: number): number | string {
  if (!Number.isFinite(share) || share < 0 || share > 1) return `max_removed_share must be from 0 to 1 (0 means ${DEFAULT_MAX_REMOVED_SHARE}, 1 allows any), not ${share}`;
  return share === 0 ? DEFAULT_MAX_REMOVED_SHARE : share;
}

/**
 * checkRemovedShare throws TooManyRemoved when replacing the tree's packages
 * with `records` would remove more than maxShare of them. A package counts
 * as removed when the import has no record at its location: a location that
 * is still there with a new version (a PKGNAME change) is an update, and an
 * update of every package is a normal whole-tree rescan.
 */
export function checkRemovedShare(current: Iterable<{ readonly record: { readonly location: string } }>, records: readonly ScanRecord[], maxShare: number): void {
  if (maxShare >= 1) return;
  const locations = new Set(records.map((r) => r.location));
  let packages = 0;
  let removed = 0;
  for (const pkg of current) {
    packages++;
    if (!locations.has(pkg.record.location)) removed++;
  }
  if (packages > 0 && removed / packages > maxShare) throw new TooManyRemoved(removed, packages, maxShare);
}
