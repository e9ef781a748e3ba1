import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type { AddressInfo, Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { setMaxListeners } from "node:events";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { withCors, type CorsPolicy, type HttpHandler, type HttpRequest } from "./cors.js";
import { createHealth, type ServerHealth } from "./health.js";
import { registerReflection } from "./reflection.js";
import type { ServerTls } from "./tls.js";
import { MAX_MESSAGE_BYTES, SESSION_MEMORY_MIB } from "./transport.js";
import { shapeWireErrors } from "./wire-errors.js";
import { STREAM_RESET } from "./stream-guard.js";

/**
 * Gives handlers a way to cut their own stream off (see STREAM_RESET). An
 * HTTP/1.1 call (a browser, curl) has no stream of its own to reset: its
 * connection is closed instead, which its reader sees as the call failing.
 */
function streamContext(req: HttpRequest | { stream?: undefined; socket?: undefined }) {
  if (!("stream" in req) || req.stream === undefined) {
    const socket = req.socket;
    return createContextValues().set(STREAM_RESET, socket === undefined ? undefined : () => socket.destroy());
  }
  const { stream } = req;
  return createContextValues().set(STREAM_RESET, () => {
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

type Handler = HttpHandler;

/**
 * What every HTTP/2 connection starts with (RFC 9113 section 3.4). A
 * cleartext connection that does not is HTTP/1.1 (curl --http1.1, browsers,
 * which never speak cleartext HTTP/2).
 */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

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
  /** Serve TLS (ALPN h2, then http/1.1) instead of cleartext. */
  readonly tls?: ServerTls;
  readonly maxConcurrentStreams?: number;
}

/**
 * listenGrpc serves a connect handler over HTTP/2 and HTTP/1.1 on one port:
 * cleartext (h2c with prior knowledge, as gRPC clients speak by default, or
 * HTTP/1.1, told apart by the HTTP/2 preface), or TLS when options.tls is
 * given (ALPN picks h2 or http/1.1). connect serves Connect and gRPC-Web
 * over either; gRPC itself needs HTTP/2. A client that fails the handshake
 * (plaintext, no client certificate under mutual TLS) only loses its own
 * connection.
 */
export async function listenGrpc(handler: Handler, host: string, port: number, options: ListenOptions = {}): Promise<ListeningGrpcServer> {
  const common = {
    maxSessionMemory: SESSION_MEMORY_MIB,
    settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? MAX_CONCURRENT_STREAMS },
  };
  const { tls } = options;
  // HTTP/1.1 connections, each with the calls it has open, so a shutdown can
  // close the idle ones at once and the busy ones when their call ends
  // (HTTP/1.1 has no GOAWAY; a browser keeps its connections open).
  const http1 = new Map<Socket, number>();
  let closing = false;
  const http1Socket = (socket: Socket) => {
    if (http1.has(socket)) return;
    http1.set(socket, 0);
    socket.once("close", () => http1.delete(socket));
  };
  const counted: Handler = (req, res) => {
    if (!("stream" in req)) {
      const socket = req.socket;
      http1Socket(socket);
      http1.set(socket, (http1.get(socket) ?? 0) + 1);
      if (closing) res.setHeader("connection", "close");
      res.once("close", () => {
        const open = (http1.get(socket) ?? 1) - 1;
        if (http1.has(socket)) http1.set(socket, open);
        if (closing && open === 0) socket.destroy();
      });
    }
    handler(req, res);
  };
  const server = tls === undefined ? http2.createServer(common, counted) : http2.createSecureServer({
    ...common,
    cert: tls.cert,
    key: tls.key,
    ALPNProtocols: ["h2", "http/1.1"],
    allowHTTP1: true,
    minVersion: "TLSv1.2",
    ...(tls.clientCa && { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true }),
  }, counted);
  if (tls !== undefined) server.on("secureConnection", (socket: TLSSocket) => {
    if (socket.alpnProtocol !== "h2") http1Socket(socket);
  });
  // Cleartext: one listening socket in front; each connection goes to the
  // HTTP/2 server or to an HTTP/1.1 one by its first bytes. Connections
  // that have sent nothing yet are closed at once on shutdown.
  const undecided = new Set<Socket>();
  const plain1 = tls === undefined ? http.createServer({}, counted) : undefined;
  const front = tls === undefined ? net.createServer((socket) => {
    undecided.add(socket);
    socket.once("close", () => undecided.delete(socket));
    // Until a server takes the socket, its errors (a reset) are ours to
    // take, or they would end the process.
    const lost = () => socket.destroy();
    socket.on("error", lost);
    sniffHttp2(socket, (isHttp2) => {
      undecided.delete(socket);
      socket.off("error", lost);
      if (isHttp2) {
        // The HTTP/2 session takes the socket's handle and reads what was
        // put back itself.
        server.emit("connection", socket);
      } else {
        http1Socket(socket);
        plain1!.emit("connection", socket);
        // The HTTP/1.1 parser reads the put-back bytes as "data": it needs
        // the socket flowing again.
        socket.resume();
      }
    });
  }) : server;
  // Streams per session, so a closing session can end early. A session ends
  // on its own once its streams have; but a client may keep pushing DATA on
  // a stream we have answered (a refused oversized upload), which would hold
  // the session until the grace ends. So once every stream of a closing
  // session is answered, trailers included, the session is destroyed. Not
  // sooner: a stream's "finish" comes before connect's trailers are sent,
  // and destroying then loses them (the client sees CANCEL, not the status).
  const streams = new Map<http2.Http2Session, Set<http2.ServerHttp2Stream>>();
  const endIfAnswered = (session: http2.Http2Session) => {
    const open = streams.get(session);
    if (closing && open && [...open].every((stream) => stream.destroyed || stream.sentTrailers !== undefined)) destroySession(session);
  };
  // Sockets too, for the cut-off: a destroyed session has been seen to leave
  // its socket open, which holds server.close() forever. (A session's own
  // `socket` is a proxy that refuses destroy().)
  const sockets = new Set<Socket>();
  front.on("connection", (socket: Socket) => {
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
    front.once("error", reject);
    front.listen(port, host, () => {
      front.off("error", reject);
      resolve();
    });
  });
  const boundPort = (front.address() as AddressInfo).port;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `${tls === undefined ? "http" : "https"}://${urlHost}:${boundPort}`,
    port: boundPort,
    close(graceMs = DEFAULT_SHUTDOWN_GRACE_MS) {
      return new Promise<void>((resolve) => {
        front.close(() => {
          clearTimeout(force);
          resolve();
        });
        closing = true;
        for (const session of streams.keys()) {
          session.close();
          endIfAnswered(session);
        }
        for (const socket of undecided) socket.destroy();
        for (const [socket, open] of http1) if (open === 0) socket.destroy();
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
  /** Browsers of other origins allowed on the main port; absent: same-origin only. */
  readonly cors?: CorsPolicy;
  /**
   * Serves what is not an RPC (a GET of the web page, its files); absent,
   * such requests get 404.
   */
  readonly fallback?: HttpHandler;
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
    contextValues: (req) => streamContext(req),
    interceptors: [...(options.interceptors ?? [])],
    routes(router) {
      options.register(router);
      health.register(router);
      registerReflection(router, options.files);
      shapeWireErrors(router);
    },
    ...(options.fallback && { fallback: options.fallback }),
  });
  const limits = { maxConcurrentStreams: options.maxConcurrentStreams };
  const listening = await listenGrpc(withCors(handler, options.cors ?? { allowedOrigins: [] }), options.host, options.port, { ...limits, tls: options.tls });
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

/**
 * sniffHttp2 reads a new cleartext connection's first bytes, puts them back,
 * and says whether they are the HTTP/2 preface. It decides as soon as a byte
 * differs (an HTTP/1.1 request line) or the whole preface has come.
 */
function sniffHttp2(socket: Socket, decided: (isHttp2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, HTTP2_PREFACE.length);
    const matches = seen.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
    if (matches && seen.length < HTTP2_PREFACE.length) return;
    socket.off("data", onData);
    socket.pause();
    socket.unshift(seen);
    decided(matches);
  };
  socket.on("data", onData);
}
