import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { setMaxListeners } from "node:events";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createHealth, type ServerHealth } from "./health.js";
import { registerReflection } from "./reflection.js";
import { MAX_MESSAGE_BYTES, SESSION_MEMORY_MIB } from "./transport.js";

type Handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

export interface ListeningGrpcServer {
  /** Base URL, e.g. http://127.0.0.1:7401. */
  readonly url: string;
  readonly port: number;
  /**
   * Stops accepting connections and resolves once every session has ended.
   * Calls still running after graceMs are cut off, so a stuck client cannot
   * hold a rollout hostage.
   */
  close(graceMs?: number): Promise<void>;
}

/** listenGrpc serves a connect handler over cleartext HTTP/2 (h2c), as gRPC clients expect. */
export async function listenGrpc(handler: Handler, host: string, port: number): Promise<ListeningGrpcServer> {
  const server = http2.createServer({ maxSessionMemory: SESSION_MEMORY_MIB }, handler);
  // Streams per session. A closing session whose streams are all answered is
  // destroyed at once: a client still pushing DATA for a call we already
  // refused (an oversized message) would otherwise keep it open until the
  // grace ends. Resetting such streams early is no better: connect's client
  // reads the reset as "Premature close" and loses the real status.
  const streams = new Map<http2.Http2Session, Set<http2.ServerHttp2Stream>>();
  let closing = false;
  const endIfIdle = (session: http2.Http2Session) => {
    const open = streams.get(session);
    if (closing && open && [...open].every((stream) => stream.destroyed || stream.writableFinished)) destroySession(session);
  };
  // Sockets too: a destroyed session has been seen to leave its socket open,
  // which holds server.close() forever. (A session's own `socket` is a proxy
  // that refuses destroy(), so they are matched by remote port.)
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
    stream.once("finish", () => endIfIdle(session));
    stream.once("close", () => {
      open.delete(stream);
      endIfIdle(session);
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
    url: `http://${urlHost}:${boundPort}`,
    port: boundPort,
    close(graceMs = 5_000) {
      return new Promise<void>((resolve) => {
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        closing = true;
        for (const session of streams.keys()) {
          session.close();
          endIfIdle(session);
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
  /**
   * Turns health to NOT_SERVING, runs `drain` (the service's own shutdown:
   * end streams, stop timers), aborts every running handler, then closes.
   */
  shutdown(drain?: () => void | Promise<void>): Promise<void>;
}

/**
 * startGrpcService serves one pkgfarm service with what every port carries:
 * health (set SERVING for the service and for ""), reflection of its files,
 * the message-size limit, and a shutdown signal every handler sees.
 */
export async function startGrpcService(options: {
  readonly service: DescService;
  readonly register: (router: ConnectRouter) => void;
  readonly files: readonly DescFile[];
  readonly host: string;
  readonly port: number;
  /**
   * Wrap every call, health and reflection included; the first is
   * outermost (it sees the calls the others refuse).
   */
  readonly interceptors?: readonly Interceptor[];
}): Promise<GrpcServiceServer> {
  const health = createHealth();
  const aborting = new AbortController();
  // Every running call listens on this signal; hundreds at once are normal.
  setMaxListeners(0, aborting.signal);
  const handler = connectNodeAdapter({
    readMaxBytes: MAX_MESSAGE_BYTES,
    shutdownSignal: aborting.signal,
    interceptors: [...(options.interceptors ?? [])],
    routes(router) {
      options.register(router);
      health.register(router);
      registerReflection(router, options.files);
    },
  });
  const listening = await listenGrpc(handler, options.host, options.port);
  health.setStatus(options.service.typeName, "SERVING");
  health.setStatus("", "SERVING");
  return {
    ...listening,
    health,
    async shutdown(drain) {
      health.shutdown();
      await drain?.();
      aborting.abort();
      await listening.close();
    },
  };
}
