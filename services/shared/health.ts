import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  Health as HealthService,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.js";

/** The statuses a server may report; SERVICE_UNKNOWN is reserved for Watch on a name never set. */
export type ServingStatusName = "UNKNOWN" | "SERVING" | "NOT_SERVING";

/** The grpc.health.v1 List method refuses to answer for more services than this. */
export const MAX_LISTED_SERVICES = 100;

/**
 * ServerHealth is the status table behind grpc.health.v1.Health. The service
 * name "" stands for the server as a whole.
 */
export interface ServerHealth {
  /** Records a service's status; ignored after shutdown(), so a late setter cannot revive a draining server. */
  setStatus(service: string, status: ServingStatusName | ServingStatus): void;
  /** The recorded status, or undefined for a service never set. */
  getStatus(service: string): ServingStatus | undefined;
  /** Marks every known service NOT_SERVING and freezes the table, so probes fail while the server drains. */
  shutdown(): void;
  /** The implementation of grpc.health.v1.Health over this table. */
  readonly impl: ServiceImpl<typeof HealthService>;
  /** Adds grpc.health.v1.Health to the router. */
  register(router: ConnectRouter): ConnectRouter;
}

type StatusListener = (status: ServingStatus) => void;

/**
 * createHealth starts with the server as a whole ("") SERVING, as grpc-go and
 * grpc-java do: a port that answers is up unless the owner says otherwise.
 */
export function createHealth(): ServerHealth {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  const listeners = new Map<string, Set<StatusListener>>();
  let shutDown = false;

  function record(service: string, status: ServingStatus): void {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    for (const listener of listeners.get(service) ?? []) listener(status);
  }

  function subscribe(service: string, listener: StatusListener): () => void {
    let set = listeners.get(service);
    if (set === undefined) listeners.set(service, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) listeners.delete(service);
    };
  }

  const impl: ServiceImpl<typeof HealthService> = {
    check(request) {
      const status = statuses.get(request.service);
      if (status === undefined) throw new ConnectError(`unknown service ${JSON.stringify(request.service)}`, Code.NotFound);
      return { status };
    },
    list() {
      if (statuses.size > MAX_LISTED_SERVICES) {
        throw new ConnectError(`${statuses.size} services exceed the limit of ${MAX_LISTED_SERVICES}`, Code.ResourceExhausted);
      }
      const listed: Record<string, { status: ServingStatus }> = {};
      for (const [service, status] of statuses) listed[service] = { status };
      return { statuses: listed };
    },
    async *watch(request, context: HandlerContext) {
      for await (const status of watchStatus(request.service, context.signal)) yield { status };
    },
  };

  /**
   * Yields the current status, then each change until the signal aborts. A
   * slow reader sees only the latest status, never a backlog: a health client
   * wants the present, not history.
   */
  async function* watchStatus(service: string, signal: AbortSignal): AsyncGenerator<ServingStatus> {
    let pending: ServingStatus | undefined = statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
    let wake: (() => void) | undefined;
    const unsubscribe = subscribe(service, (status) => {
      pending = status;
      wake?.();
    });
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      let sent: ServingStatus | undefined;
      for (;;) {
        // A change already recorded goes out even when the signal has fired,
        // so a watcher hears NOT_SERVING from shutdown() before its stream ends.
        if (pending !== undefined && pending !== sent) {
          sent = pending;
          pending = undefined;
          yield sent;
          continue;
        }
        if (signal.aborted) return;
        pending = undefined;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      unsubscribe();
      signal.removeEventListener("abort", onAbort);
    }
  }

  return {
    setStatus(service, status) {
      if (shutDown) return;
      record(service, toServingStatus(status));
    },
    getStatus(service) {
      return statuses.get(service);
    },
    shutdown() {
      shutDown = true;
      for (const service of statuses.keys()) record(service, ServingStatus.NOT_SERVING);
    },
    impl,
    register(router) {
      return router.service(HealthService, impl);
    },
  };
}

function toServingStatus(status: ServingStatusName | ServingStatus): ServingStatus {
  if (typeof status === "string") return ServingStatus[status];
  if (status === ServingStatus.SERVICE_UNKNOWN || ServingStatus[status] === undefined) {
    throw new RangeError(`${status} is not a status a server may report`);
  }
  return status;
}
