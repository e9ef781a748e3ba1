import { InvalidRequest } from "./core/errors.js";
import type { TreePackage } from "./core/tree.js";
import { quote } from "../shared/quote.js";

/** ListPackages page size when the caller names none. */
export const DEFAULT_PACKAGE_PAGE_SIZE = 1000;
/** Largest page_size ListPackages takes; more is INVALID_ARGUMENT, not quietly less. */
export const MAX_PACKAGE_PAGE_SIZE = 10_000;
/**
 * Bytes of packages one page holds at most. grpcio, grpc-js and buf curl
 * refuse answers over 4 MiB by default, so a page ends early (with a
 * next_page_token) rather than grow past it: with SCAN_DEPENDS, a thousand
 * packages of a real tree are about 5.5 MB.
 */
export const PAGE_BYTE_BUDGET = 3 * 1024 * 1024;

/** pageSizeFromWire reads a page_size: 0 is the default, over the maximum is refused. */
export function pageSizeFromWire(pageSize: number, fallback: number, max: number): number {
  if (pageSize > max) throw new InvalidRequest(`page_size ${pageSize} is over the maximum of ${max}; ask for at most ${max} and follow next_page_token`);
  return pageSize === 0 ? fallback : pageSize;
}

/**
 * packagePage cuts one page out of `names` (sorted) at the offset the token
 * names: at most pageSize packages, and no more than PAGE_BYTE_BUDGET of them
 * by estimate, but always at least one.
 */
export function packagePage(
  names: readonly string[],
  request: { readonly pageSize: number; readonly pageToken: string },
  estimateBytes: (name: string) => number,
  budget = PAGE_BYTE_BUDGET,
): { page: string[]; next: string } {
  const size = pageSizeFromWire(request.pageSize, DEFAULT_PACKAGE_PAGE_SIZE, MAX_PACKAGE_PAGE_SIZE);
  const start = request.pageToken === "" ? 0 : Number(request.pageToken);
  if (!/^[0-9]{0,12}$/.test(request.pageToken) || start > names.length) {
    throw new InvalidRequest(`page_token ${quote(request.pageToken, 100)} is not one this server gave out`);
  }
  let end = start;
  let bytes = 0;
  while (end < names.length && end - start < size) {
    bytes += estimateBytes(names[end]!);
    if (bytes > budget && end > start) break;
    end++;
  }
  return { page: names.slice(start, end), next: end < names.length ? String(end) : "" };
}

/**
 * estimatePackageBytes is about what a package costs on the wire (strings
 * plus a little per field), a little over rather than under.
 */
export function estimatePackageBytes(pkg: TreePackage, withScanDepends: boolean): number {
  const r = pkg.record;
  let n = 64 + r.pkgname.length + r.location.length + r.multiVersion.length + r.failReason.length + pkg.unresolved.length + r.skipReason.length + r.maintainer.length;
  for (const d of r.dependencies) n += d.pattern.length + d.location.length + 12;
  for (const d of pkg.dependencies) n += d.length + 3;
  for (const c of r.categories) n += c.length + 2;
  for (const [k, v] of Object.entries(r.vars)) n += k.length + v.length + 8;
  if (withScanDepends) n += r.scanDepends.length + 3 * (r.scanDepends.length / 30);
  return n;
}
