// rpc.js: the Connect protocol with JSON (connectrpc.com/docs/protocol), by
// fetch, for the status page. Unary calls are one POST of a JSON body; server
// streams are one POST whose answer is a sequence of envelopes (1 byte of
// flags, 4 bytes of big-endian length, the JSON message), the last one
// (flag 0x02) carrying the status. Every call goes to the page's own origin:
// the dispatcher serves the page and forwards depgraph's calls.

const TOKEN_KEY = "pkgfarm.operatorToken";
const END_STREAM = 0x02;

/** RpcError is a call that failed, with the Connect code ("unauthenticated", "not_found", ...). */
export class RpcError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "RpcError";
    this.code = code;
    this.rawMessage = message;
  }
}

/** The operator token, kept for this tab only (sessionStorage), never in the URL. */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token) {
  if (token === "") sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

function headers(contentType) {
  const h = { "content-type": contentType, "connect-protocol-version": "1" };
  const token = getToken();
  if (token !== "") h.authorization = `Bearer ${token}`;
  return h;
}

/** Connect's codes for HTTP statuses that carry no Connect error body (a proxy in between, say). */
function codeOfHttpStatus(status) {
  return { 400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "unimplemented", 429: "unavailable", 502: "unavailable", 503: "unavailable", 504: "unavailable" }[status] ?? "unknown";
}

/** unary calls service/method (e.g. "DepGraphService", "GetBuildStatus") with a request object; resolves to the answer object. */
export async function unary(service, method, request, signal) {
  const res = await fetch(`/pkgfarm.v1.${service}/${method}`, { method: "POST", headers: headers("application/json"), body: JSON.stringify(request), signal });
  const text = await res.text();
  let body;
  try {
    body = text === "" ? {} : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) throw new RpcError(body?.code ?? codeOfHttpStatus(res.status), body?.message ?? `HTTP ${res.status}`);
  if (body === undefined) throw new RpcError("internal", "the answer is not JSON");
  return body;
}

/** stream calls a server-streaming method and yields each message as it arrives, until the stream ends or signal aborts. */
export async function* stream(service, method, request, signal) {
  const json = new TextEncoder().encode(JSON.stringify(request));
  const envelope = new Uint8Array(5 + json.length);
  new DataView(envelope.buffer).setUint32(1, json.length);
  envelope.set(json, 5);
  const res = await fetch(`/pkgfarm.v1.${service}/${method}`, { method: "POST", headers: headers("application/connect+json"), body: envelope, signal });
  if (!res.ok || res.body === null) {
    let body;
    try {
      body = await res.json();
    } catch {
      body = undefined;
    }
    throw new RpcError(body?.code ?? codeOfHttpStatus(res.status), body?.message ?? `HTTP ${res.status}`);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = new Uint8Array(0);
  try {
    for (;;) {
      while (buffer.length >= 5) {
        const length = new DataView(buffer.buffer, buffer.byteOffset, 5).getUint32(1);
        if (buffer.length < 5 + length) break;
        const flags = buffer[0];
        const message = JSON.parse(decoder.decode(buffer.subarray(5, 5 + length)) || "{}");
        buffer = buffer.subarray(5 + length);
        if (flags & END_STREAM) {
          if (message.error) throw new RpcError(message.error.code ?? "unknown", message.error.message ?? "");
          return;
        }
        yield message;
      }
      const { done, value } = await reader.read();
      if (done) throw new RpcError("unavailable", "the stream ended without its status (connection lost)");
      const joined = new Uint8Array(buffer.length + value.length);
      joined.set(buffer);
      joined.set(value, buffer.length);
      buffer = joined;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Decodes a protobuf JSON bytes field (base64) into bytes. */
export function base64Bytes(text) {
  const binary = atob(text ?? "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
