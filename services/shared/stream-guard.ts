import { createContextKey, type HandlerContext } from "@connectrpc/connect";

/**
 * STREAM_RESET, in a handler's context values, resets the call's HTTP/2
 * stream with ENHANCE_YOUR_CALM, which gRPC clients (grpc-js, grpcio,
 * connect-es) report as RESOURCE_EXHAUSTED. It is the only status that
 * reaches a reader who takes nothing: trailers wait behind the data it does
 * not read. The server puts it there (grpc-server.ts); outside a real HTTP/2
 * server (a router transport in tests) it is undefined.
 */
export const STREAM_RESET = createContextKey<(() => void) | undefined>(undefined, { description: "pkgfarm HTTP/2 stream reset" });

/** How long a streamed message may wait for its reader before the stream is cut off, by default. */
export const DEFAULT_STALL_MS = 30_000;

export interface StallGuardOptions {
  /** Longest a message may wait to be taken by the reader. */
  readonly stallMs: number;
  /** Told once when the stream is cut off (for the log). */
  readonly onCutOff?: () => void;
}

/**
 * cutOffStalled passes a server stream's messages through, and cuts the
 * stream off (STREAM_RESET) when the reader leaves one untaken for stallMs.
 * connect writes with backpressure, so a reader that stops reading stops
 * the handler at its `yield`, holding its buffers (a log chunk, a backlog of
 * transitions) for as long as the connection lives; this bounds that time.
 * A stream with nothing to send is not stalled: only waiting readers count.
 */
export async function* cutOffStalled<T>(source: AsyncIterable<T>, ctx: HandlerContext, options: StallGuardOptions): AsyncGenerator<T> {
  const reset = ctx.values.get(STREAM_RESET);
  for await (const message of source) {
    const timer = reset === undefined ? undefined : setTimeout(() => {
      options.onCutOff?.();
      reset();
    }, options.stallMs);
    try {
      yield message;
    } finally {
      clearTimeout(timer);
    }
  }
}
