import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";

/**
 * Cross-origin access to a port, for a web page served from another origin
 * (a dashboard of its own, a second dispatcher). The page this port serves
 * itself is same-origin and needs none of this. Without allowed origins a
 * browser elsewhere may not call the API: its preflight is answered 403, and
 * answers carry no Access-Control-Allow-Origin, so the browser keeps them
 * from the page. Tools (curl, grpcurl, agents) send no Origin and are not
 * affected: CORS guards browsers' users, it is not authentication.
 */
export interface CorsPolicy {
  /**
   * Origins allowed, exactly as browsers send them
   * ("https://status.example.org", scheme and port included); "*" allows
   * any. Empty: same-origin only.
   */
  readonly allowedOrigins: readonly string[];
}

/**
 * What Connect, gRPC-Web and our bearer token need a browser to be allowed,
 * as connect-es's @connectrpc/cors lists them (connectrpc.com/docs/cors).
 * Authorization is ours: the operator token of cancel and drain.
 */
const ALLOWED_METHODS = ["POST", "GET"];
const ALLOWED_HEADERS = ["Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms", "Grpc-Timeout", "X-Grpc-Web", "X-User-Agent", "Authorization"];
const EXPOSED_HEADERS = ["Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"];
/** How long a browser may keep a preflight's answer (2 hours, as connect-es suggests). */
const MAX_AGE_SECONDS = 7200;

/** What connectNodeAdapter returns, and what node:http and node:http2's compat layer both take. */
export type HttpHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
/** A request of either HTTP version. */
export type HttpRequest = Parameters<HttpHandler>[0];

/**
 * withCors answers CORS preflights (OPTIONS with Access-Control-Request-Method)
 * and marks answers to allowed origins so the browser hands them to the page.
 * Everything else goes to `next` unchanged.
 */
export function withCors(next: HttpHandler, policy: CorsPolicy): HttpHandler {
  const anyOrigin = policy.allowedOrigins.includes("*");
  const allowed = new Set(policy.allowedOrigins);
  return (req, res) => {
    const origin = header(req, "origin");
    const allowOrigin = origin !== undefined && (anyOrigin || allowed.has(origin));
    if (req.method === "OPTIONS" && origin !== undefined && header(req, "access-control-request-method") !== undefined) {
      if (!allowOrigin) {
        res.writeHead(403, { "content-type": "text/plain; charset=utf-8", vary: "Origin" });
        res.end(`origin ${origin.slice(0, 200)} may not call this server; start it with --cors-origins ${origin.slice(0, 200)} to allow it\n`);
        return;
      }
      res.writeHead(204, {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": ALLOWED_METHODS.join(", "),
        "access-control-allow-headers": ALLOWED_HEADERS.join(", "),
        "access-control-max-age": String(MAX_AGE_SECONDS),
        vary: "Origin",
      });
      res.end();
      return;
    }
    if (allowOrigin) {
      // Set before the handler writes its head, which merges these in.
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("access-control-expose-headers", EXPOSED_HEADERS.join(", "));
      res.setHeader("vary", "Origin");
    }
    next(req, res);
  };
}

function header(req: HttpRequest, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === "string" && value !== "" ? value : undefined;
}
