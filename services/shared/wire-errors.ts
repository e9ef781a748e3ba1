import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { clip } from "./quote.js";

/**
 * Longest error message a pkgfarm server sends. Messages quote input through
 * quote() (a couple of hundred characters each); this is the last line of
 * defence for a message built elsewhere (the protobuf runtime quotes unknown
 * JSON keys and enum names whole): a 100 KB grpc-message makes some clients
 * reset the stream instead of showing the status.
 */
export const MAX_ERROR_MESSAGE = 1024;

/**
 * connect-es reports a protobuf message that does not parse as INTERNAL
 * ("parse binary: ..."), as if the server were broken; it is the caller's
 * bad input, INVALID_ARGUMENT, as the JSON codec already says for JSON. The
 * parse of a unary request happens before any interceptor sees the call, so
 * the status is corrected here, on its way out, for each protocol's own way
 * of carrying it: gRPC trailers, a gRPC-Web trailer frame, a Connect
 * end-stream message or a Connect unary error body.
 */
const BINARY_PARSE_PREFIX = "parse binary:";

/**
 * shapeWireErrors wraps every handler registered on the router so its error
 * statuses leave with the right code and a bounded message. Call it after
 * the routes are registered, inside connectNodeAdapter's `routes`.
 */
export function shapeWireErrors(router: ConnectRouter): void {
  const handlers = router.handlers as UniversalHandler[];
  for (let i = 0; i < handlers.length; i++) handlers[i] = shapeHandler(handlers[i]!);
}

function shapeHandler(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => reshape(await handler(req));
  return Object.assign(wrapped, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

type Protocol = "grpc" | "grpc-web" | "connect-stream" | "connect-unary";

function protocolOf(res: UniversalServerResponse): Protocol | undefined {
  const type = res.header?.get("content-type") ?? "";
  if (/^application\/grpc-web(\+proto|\+json|;|$)/.test(type)) return "grpc-web";
  if (/^application\/grpc(\+|;|$)/.test(type)) return "grpc";
  if (/^application\/connect\+/.test(type)) return "connect-stream";
  if (res.status >= 400 && /^application\/json/.test(type)) return "connect-unary";
  return undefined;
}

function reshape(res: UniversalServerResponse): UniversalServerResponse {
  const protocol = protocolOf(res);
  if (protocol === undefined) return res;
  // A rewritten body may change length.
  if (protocol !== "grpc") res.header?.delete("content-length");
  if (protocol === "grpc") {
    // Trailers are filled in while the body is read: fix them now (a unary
    // call has run already) and again once the body is done.
    if (res.trailer !== undefined) fixGrpcTrailer(res.trailer);
    if (res.body === undefined || res.trailer === undefined) return res;
    const { body, trailer } = res;
    return { ...res, body: afterBody(body, () => fixGrpcTrailer(trailer)) };
  }
  if (res.body === undefined) return res;
  if (protocol === "connect-unary") {
    // The adapter reads the status after the first body chunk, so the body
    // may still change it.
    const out: UniversalServerResponse = { ...res };
    out.body = fixConnectUnary(res.body, out);
    return out;
  }
  return { ...res, body: mapFrames(res.body, protocol === "grpc-web" ? 0x80 : 0x02, protocol === "grpc-web" ? fixGrpcWebTrailerFrame : fixConnectEndStream) };
}

async function* afterBody(body: AsyncIterable<Uint8Array>, then: () => void): AsyncGenerator<Uint8Array> {
  yield* body;
  then();
}

/** The code and message an error should leave with. */
function shaped(code: "internal" | string, message: string): { code: string; message: string } {
  const invalid = code === "internal" && message.startsWith(BINARY_PARSE_PREFIX);
  return { code: invalid ? "invalid_argument" : code, message: clip(message, MAX_ERROR_MESSAGE) };
}

const GRPC_INTERNAL = "13";
const GRPC_INVALID_ARGUMENT = "3";

function fixGrpcTrailer(trailer: Headers): void {
  const status = trailer.get("grpc-status");
  if (status === null || status === "0") return;
  const raw = trailer.get("grpc-message") ?? "";
  const message = safeDecode(raw);
  const { code, message: fixed } = shaped(status === GRPC_INTERNAL ? "internal" : status, message);
  if (code === "invalid_argument") trailer.set("grpc-status", GRPC_INVALID_ARGUMENT);
  if (fixed !== message) trailer.set("grpc-message", encodeURIComponent(fixed));
}

function fixGrpcWebTrailerFrame(payload: Uint8Array): Uint8Array {
  const headers = new Headers();
  for (const line of Buffer.from(payload).toString("latin1").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const before = [...headers].map(([k, v]) => `${k}: ${v}`).join("\r\n");
  fixGrpcTrailer(headers);
  const after = [...headers].map(([k, v]) => `${k}: ${v}`).join("\r\n");
  return after === before ? payload : Buffer.from(after + "\r\n", "latin1");
}

function fixConnectEndStream(payload: Uint8Array): Uint8Array {
  let end: { error?: { code?: string; message?: string } };
  try {
    end = JSON.parse(Buffer.from(payload).toString("utf8")) as typeof end;
  } catch {
    return payload;
  }
  if (end.error === undefined || typeof end.error.code !== "string") return payload;
  const fixed = shaped(end.error.code, end.error.message ?? "");
  if (fixed.code === end.error.code && fixed.message === (end.error.message ?? "")) return payload;
  end.error = { ...end.error, ...fixed };
  return Buffer.from(JSON.stringify(end), "utf8");
}

/** Connect unary errors are a small JSON body with an HTTP status that follows the code. */
async function* fixConnectUnary(body: AsyncIterable<Uint8Array>, res: UniversalServerResponse): AsyncGenerator<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of body) parts.push(part);
  const bytes = Buffer.concat(parts);
  let error: { code?: string; message?: string };
  try {
    error = JSON.parse(bytes.toString("utf8")) as typeof error;
  } catch {
    yield bytes;
    return;
  }
  if (typeof error.code !== "string") {
    yield bytes;
    return;
  }
  const fixed = shaped(error.code, error.message ?? "");
  if (fixed.code !== error.code) res.status = 400;
  yield Buffer.from(JSON.stringify({ ...error, ...fixed }), "utf8");
}

/**
 * mapFrames rewrites enveloped frames whose flags match `flag` (the trailer
 * or end-stream frame). Frames may arrive split or joined across chunks, so
 * the body is re-cut on frame boundaries.
 */
async function* mapFrames(body: AsyncIterable<Uint8Array>, flag: number, fix: (payload: Uint8Array) => Uint8Array): AsyncGenerator<Uint8Array> {
  let pending = Buffer.alloc(0);
  for await (const chunk of body) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
    for (;;) {
      if (pending.length < 5) break;
      const length = pending.readUInt32BE(1);
      if (pending.length < 5 + length) break;
      const flags = pending[0]!;
      const payload = pending.subarray(5, 5 + length);
      pending = pending.subarray(5 + length);
      if ((flags & flag) !== flag) {
        yield Buffer.concat([Buffer.from([flags]), u32(length), payload]);
        continue;
      }
      const fixed = fix(payload);
      yield Buffer.concat([Buffer.from([flags]), u32(fixed.length), fixed]);
    }
  }
  if (pending.length > 0) yield pending;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
