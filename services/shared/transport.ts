import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import { bearerToken } from "./auth.js";
import type { ClientTls } from "./tls.js";

/** Largest message a pkgfarm server reads; bigger ones get RESOURCE_EXHAUSTED. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * HTTP/2 session memory (MiB) for both ends. Node's default (10 MiB) is below
 * MAX_MESSAGE_BYTES: a session that buffers one large message would be torn
 * down with ENHANCE_YOUR_CALM instead of getting a proper gRPC status.
 */
export const SESSION_MEMORY_MIB = (4 * MAX_MESSAGE_BYTES) / (1024 * 1024);

/** ClientSecurity is how a pkgfarm client proves itself; both parts optional. */
export interface ClientSecurity {
  /** Trust and client certificate for an https:// URL. */
  readonly tls?: ClientTls;
  /** Sent as `authorization: Bearer <token>` on every call. */
  readonly token?: string;
}

/**
 * createPkgfarmTransport speaks gRPC to a pkgfarm server: h2c for http://,
 * TLS with ALPN h2 for https:// (trusting tls.ca instead of the system's CAs
 * when given).
 */
export function createPkgfarmTransport(baseUrl: string, security: ClientSecurity = {}): Transport {
  const { tls, token } = security;
  return createGrpcTransport({
    baseUrl,
    nodeOptions: {
      maxSessionMemory: SESSION_MEMORY_MIB,
      ...(tls?.ca && { ca: tls.ca }),
      ...(tls?.cert && { cert: tls.cert }),
      ...(tls?.key && { key: tls.key }),
    },
    interceptors: token ? [bearerToken(token)] : [],
  });
}
