// Pages of ListJobs and ListPackages: bounded by count and by encoded size,
// so no page outgrows what a gRPC client takes by default (4 MiB in grpc-js,
// grpcio and buf curl) however large the records in it are.
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { InvalidRequest } from "./core/errors.js";

/** Items in a page when the request names no page_size. */
export const DEFAULT_PAGE_SIZE = 1000;
/** Most items in a page, whatever page_size asks for. */
export const MAX_PAGE_SIZE = 10_000;
/**
 * Most encoded bytes of the items in a page: under 4 MiB with room for the
 * rest of the answer. A page ends before the item that would pass it (a
 * page always holds at least one item, and one item is bounded on its own).
 */
export const MAX_PAGE_BYTES = 3 * 1024 * 1024;

/** PageRequest is the part of a List request that says which page. */
export interface PageRequest {
  readonly pageSize: number;
  readonly pageToken: string;
}

/**
 * pageOf converts items[start...] to wire messages until the page holds
 * page_size of them or the next would pass maxBytes, and says where the next
 * page starts. Only the items of the page are converted.
 */
export function pageOf<T, Desc extends DescMessage>(
  items: readonly T[],
  request: PageRequest,
  schema: Desc,
  toWire: (item: T) => MessageShape<Desc>,
  maxBytes = MAX_PAGE_BYTES,
): { page: MessageShape<Desc>[]; next: string } {
  const size = request.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(request.pageSize, MAX_PAGE_SIZE);
  const token = request.pageToken;
  const start = token === "" ? 0 : /^[0-9]{1,12}$/.test(token) ? Number(token) : -1;
  if (start < 0 || start > items.length) {
    const shown = token.length > 64 ? `${token.slice(0, 64)}...` : token;
    throw new InvalidRequest(`page_token ${JSON.stringify(shown)} is not one this server gave out`);
  }
  const page: MessageShape<Desc>[] = [];
  let bytes = 0;
  let at = start;
  while (at < items.length && page.length < size) {
    const message = toWire(items[at]!);
    // The item's own bytes, its field tag and its length prefix.
    const itemBytes = toBinary(schema, message).byteLength + 6;
    if (page.length > 0 && bytes + itemBytes > maxBytes) break;
    page.push(message);
    bytes += itemBytes;
    at++;
  }
  return { page, next: at < items.length ? String(at) : "" };
}
