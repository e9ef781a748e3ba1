import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { Counter, Histogram, type Registry } from "prom-client";

// From a fast unary call to an agent's Connect stream, which lasts as long
// as the agent stays connected (hours), and long polls (NextReadyJob waits
// up to a minute for work).
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14400];

/**
 * codeName is the label a status gets: "OK", or connect's name of the gRPC
 * code ("InvalidArgument", "Unauthenticated"...), as go-grpc-prometheus
 * labels grpc_code, so dashboards made for it read ours.
 */
function codeName(code: Code | undefined): string {
  return code === undefined ? "OK" : Code[code];
}

/**
 * createRpcMetricsInterceptor records every call the server handles:
 * `pkgfarm_rpc_duration_seconds{service,method,code}` and, for calls that
 * did not end OK, `pkgfarm_rpc_errors_total{service,method,code}`. A
 * streaming call is recorded when its response stream ends, whether it
 * ends normally, with an error, or because the client went away
 * ("Canceled").
 *
 * Put it first among a server's interceptors: the first is outermost, so
 * calls that an inner one refuses (an auth check's Unauthenticated) are
 * counted too. Requests refused before any handler runs (an oversized unary
 * message, an unknown method) never reach interceptors and are not counted.
 */
export function createRpcMetricsInterceptor(registry: Registry): Interceptor {
  const duration = new Histogram({
    name: "pkgfarm_rpc_duration_seconds",
    help: "Time from a call's arrival to its end (for streams: the end of the response stream), by gRPC service, method and status code.",
    labelNames: ["service", "method", "code"] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const errors = new Counter({
    name: "pkgfarm_rpc_errors_total",
    help: "Calls that ended with a status other than OK, by gRPC service, method and status code.",
    labelNames: ["service", "method", "code"] as const,
    registers: [registry],
  });

  return (next) => async (req) => {
    const started = performance.now();
    const labels = { service: req.service.typeName, method: req.method.name };
    const record = (code: Code | undefined) => {
      const full = { ...labels, code: codeName(code) };
      duration.observe(full, (performance.now() - started) / 1000);
      if (code !== undefined) errors.inc(full);
    };
    let res;
    try {
      res = await next(req);
    } catch (e) {
      record(ConnectError.from(e).code);
      throw e;
    }
    if (!res.stream) {
      record(undefined);
      return res;
    }
    return { ...res, message: recordAtEnd(res, record) } as StreamResponse;
  };
}

/** recordAtEnd passes a response stream through and records once, when it ends however it ends. */
async function* recordAtEnd(res: StreamResponse, record: (code: Code | undefined) => void): AsyncGenerator<unknown> {
  let code: Code | undefined = Code.Canceled;
  try {
    yield* res.message;
    code = undefined;
  } catch (e) {
    code = ConnectError.from(e).code;
    throw e;
  } finally {
    // Reached without either assignment above when the stream was abandoned
    // (return() from the server after the client left): Canceled.
    record(code);
  }
}
