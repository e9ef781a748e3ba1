import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { setMaxListeners } from "node:events";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createHealth, type ServerHealth } from "./health.js";
import { registerReflection } from "./reflection.js";
import type { ServerTls } from "./tls.js";
import { MAX_MESSAGE_BYTES, SESSION_MEMORY_MIB } from "./transport.js";
import { shapeWireErrors } from "./wire-errors.js";
import { STREAM_RESET } from "./stream-guard.js";

/** Gives handlers a way to cut their own stream off (see STREAM_RESET). */
function streamContext(req: http2.Http2ServerRequest | { stream?: undefined }) {
  const { stream } = req;
  return createContextValues().set(STREAM_RESET, stream === undefined ? undefined : () => {
    if (!stream.destroyed && !stream.closed) stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  });
}

/**
 * JSON requests are read strictly: an unknown field ("limitto" for
 * "limitTo") or enum name ("BUILD_MODE_INCREMENTL") is INVALID_ARGUMENT.
 * connect-es ignores both by default, which turned a typo into a whole-tree
 * build. Every pkgfarm client sends fields this server knows.
 */
const STRICT_JSON = { ignoreUnknownFields: false } as const;

type Handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

/**
 * Concurrent streams (calls) one HTTP/2 connection may have open; the server
 * announces it in its SETTINGS and a well-behaved client queues beyond it.
 * Node's default is 2^32-1, which lets one connection pin unbounded handler
 * memory. pkgfarm's busiest legitimate connection, an agent with many slots
 * uploading and downloading at once, stays well below.
 */
export const MAX_CONCURRENT_STREAMS = 256;

/** A health request is a service name; nothing bigger is read on the health port. */
const HEALTH_MAX_MESSAGE_BYTES = 64 * 1024;

/** Calls still running this long after shutdown begins are cut off. */
const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;

export interface ListeningGrpcServer {
  /** Base URL, e.g. http://127.0.0.1:7401 (https:// with TLS). */
  readonly url: string;
  readonly port: number;
  /**
   * Stops accepting connections and resolves once every session has ended.
   * Calls still running after graceMs are cut off, so a stuck client cannot
   * hold a rollout hostage.
   */
  close(graceMs?: number): Promise<void>;
}

export interface ListenOptions {
  /** Serve TLS (ALPN h2 only) instead of cleartext HTTP/2. */
  readonly tls?: ServerTls;
  readonly maxConcurrentStreams?: number;
}

/**
 * listenGrpc serves a connect handler over HTTP/2: cleartext (h2c), as gRPC
 * clients expect by default, or TLS when options.tls is given. A client that
 * fails the handshake (plaintext, no client certificate under mutual TLS)
 * only loses its own connection.
 */
export async function listenGrpc(handler: Handler, host: string, port: number, options: ListenOptions = {}): Promise<ListeningGrpcServer> {
  const common = {
    maxSessionMemory: SESSION_MEMORY_MIB,
    settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? MAX_CONCURRENT_STREAMS },
  };
  const { tls } = options;
  const server = tls === undefined ? http2.createServer(common, handler) : http2.createSecureServer({
    ...common,
    cert: tls.cert,
    key: tls.key,
    ALPNProtocols: ["h2"],
    allowHTTP1: false,
    minVersion: "TLSv1.2",
    ...(tls.clientCa && { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true }),
  }, handler);
  // Streams per session, so a closing session can end early. A session ends
  // on its own once its streams have; but a client may keep pushing DATA on
  // a stream we have answered (a refused oversized upload), which would hold
  // the session until the grace ends. So once every stream of a closing
  // session is answered, trailers included, the session is destroyed. Not
  // sooner: a stream's "finish" comes before connect's trailers are sent,
  // and destroying then loses them (the client sees CANCEL, not the status).
  const streams = new Map<http2.Http2Session, Set<http2.ServerHttp2Stream>>();
  let closing = false;
  const endIfAnswered = (session: http2.Http2Session) => {
    const open = streams.get(session);
    if (closing && open && [...open].every((stream) => stream.destroyed || stream.sentTrailers !== undefined)) destroySession(session);
  };
  // Sockets too, for the cut-off: a destroyed session has been seen to leave
  // its socket open, which holds server.close() forever. (A session's own
  // `socket` is a proxy that refuses destroy().)
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  const destroySession = (session: http2.Http2Session) => {
    const port = session.socket?.remotePort;
    const address = session.socket?.remoteAddress;
    session.destroy();
    for (const socket of sockets) if (socket.remotePort === port && socket.remoteAddress === address) socket.destroy();
  };
  server.on("session", (session: http2.Http2Session) => {
    streams.set(session, new Set());
    session.once("close", () => streams.delete(session));
  });
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    const session = stream.session;
    const open = session && streams.get(session);
    if (!session || !open) return;
    open.add(stream);
    // The compat layer sends the trailers from its own wantTrailers listener;
    // the check runs after it, and after nghttp2 has written them out.
    stream.once("wantTrailers", () => setImmediate(() => endIfAnswered(session)));
    stream.once("close", () => {
      open.delete(stream);
      endIfAnswered(session);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const boundPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `${tls === undefined ? "http" : "https"}://${urlHost}:${boundPort}`,
    port: boundPort,
    close(graceMs = DEFAULT_SHUTDOWN_GRACE_MS) {
      return new Promise<void>((resolve) => {
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        closing = true;
        for (const session of streams.keys()) {
          session.close();
          endIfAnswered(session);
        }
        const force = setTimeout(() => {
          for (const session of streams.keys()) session.destroy();
          for (const socket of sockets) socket.destroy();
        }, graceMs);
        force.unref();
      });
    },
  };
}

export interface GrpcServiceServer extends ListeningGrpcServer {
  readonly health: ServerHealth;
  /** The plaintext health-only port, when one was asked for. */
  readonly healthPort?: number;
  readonly healthUrl?: string;
  /**
   * Turns health to NOT_SERVING, runs `drain` (the service's own shutdown:
   * end streams, stop timers) for up to half of graceMs, aborts every running
   * handler, then closes the ports, cutting off what still runs when graceMs
   * is up.
   */
  shutdown(drain?: () => void | Promise<void>, graceMs?: number): Promise<void>;
}

export interface GrpcServiceOptions {
  readonly service: DescService;
  readonly register: (router: ConnectRouter) => void;
  readonly files: readonly DescFile[];
  readonly host: string;
  readonly port: number;
  readonly tls?: ServerTls;
  /**
   * A second port, always plaintext, serving only grpc.health.v1 from the
   * same status table: the kubelet's gRPC probe speaks no TLS. 0 picks a
   * free port; absent, there is none.
   */
  readonly healthPort?: number;
  /**
   * Wrap every call on the main port, health and reflection included; the
   * first is outermost (it sees the calls the others refuse).
   */
  readonly interceptors?: readonly Interceptor[];
  readonly maxConcurrentStreams?: number;
}

/**
 * startGrpcService serves one pkgfarm service with what every port carries:
 * health (set SERVING for the service and for ""), reflection of its files,
 * the message-size and stream limits, and a shutdown signal every handler sees.
 */
export async function startGrpcService(options: GrpcServiceOptions): Promise<GrpcServiceServer> {
  const health = createHealth();
  const aborting = new AbortController();
  // Every running call listens on this signal; hundreds at once are normal.
  setMaxListeners(0, aborting.signal);
  const handler = connectNodeAdapter({
    readMaxBytes: MAX_MESSAGE_BYTES,
    jsonOptions: STRICT_JSON,
    shutdownSignal: aborting.signal,
    contextValues: (req) => streamContext(req as http2.Http2ServerRequest),
    interceptors: [...(options.interceptors ?? [])],
    routes(router) {
      options.register(router);
      health.register(router);
      registerReflection(router, options.files);
      shapeWireErrors(router);
    },
  });
  const limits = { maxConcurrentStreams: options.maxConcurrentStreams };
  const listening = await listenGrpc(handler, options.host, options.port, { ...limits, tls: options.tls });
  let healthListening: ListeningGrpcServer | undefined;
  if (options.healthPort !== undefined) {
    const healthHandler = connectNodeAdapter({
      readMaxBytes: HEALTH_MAX_MESSAGE_BYTES,
      jsonOptions: STRICT_JSON,
      shutdownSignal: aborting.signal,
      routes(router) {
        health.register(router);
        shapeWireErrors(router);
      },
    });
    try {
      healthListening = await listenGrpc(healthHandler, options.host, options.healthPort, limits);
    } catch (e) {
      await listening.close(0);
      throw e;
    }
  }
  health.setStatus(options.service.typeName, "SERVING");
  health.setStatus("", "SERVING");
  return {
    ...listening,
    health,
    ...(healthListening && { healthPort: healthListening.port, healthUrl: healthListening.url }),
    async shutdown(drain, graceMs = DEFAULT_SHUTDOWN_GRACE_MS) {
      const deadline = Date.now() + graceMs;
      health.shutdown();
      // A drain that fails or hangs must not keep the ports open: close
      // anyway, then report the failure.
      let failure: { error: unknown } | undefined;
      await withTimeout(Promise.resolve().then(drain).catch((error: unknown) => void (failure = { error })), graceMs / 2);
      // Calls still running end with UNAVAILABLE, which gRPC clients read as
      // "try again, elsewhere", not with a bare stream reset.
      aborting.abort(new ConnectError("the server is shutting down; retry on another instance", Code.Unavailable));
      await listening.close(Math.max(0, deadline - Date.now()));
      // Last, so probes see NOT_SERVING for as long as the main port drains.
      await healthListening?.close(Math.max(0, deadline - Date.now()));
      if (failure !== undefined) throw failure.error;
    },
  };
}

/** Waits for work, but no longer than ms. */
async function withTimeout(work: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
