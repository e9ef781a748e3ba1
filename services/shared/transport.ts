import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";

/** Largest message a pkgfarm server reads; bigger ones get RESOURCE_EXHAUSTED. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * HTTP/2 session memory (MiB) for both ends. Node's default (10 MiB) is below
 * MAX_MESSAGE_BYTES: a session that buffers one large message would be torn
 * down with ENHANCE_YOUR_CALM instead of getting a proper gRPC status.
 */
export const SESSION_MEMORY_MIB = (4 * MAX_MESSAGE_BYTES) / (1024 * 1024);

export function createPkgfarmTransport(baseUrl: string): Transport {
  return createGrpcTransport({
    baseUrl,
    nodeOptions: { maxSessionMemory: SESSION_MEMORY_MIB },
  });
}
