import { hostname } from "node:os";
import { createClient } from "@connectrpc/connect";
import type { Logger } from "pino";
import { DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService, file_pkgfarm_v1_dispatcher } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createPkgfarmTransport, createRpcMetricsInterceptor, startGrpcService, startMetricsServer } from "../shared/index.js";
import type { DispatcherConfig } from "./config.js";
import type { AgentRegistry } from "./core/registry.js";
import { createDepGraphLink } from "./depgraph-link.js";
import { createLogStore } from "./log-store.js";
import { createDispatcherMetrics, registerAgentMetrics } from "./metrics.js";
import { createPackageStore, type PackageStore } from "./package-store.js";
import { createDispatcherService } from "./service.js";

export interface RunningDispatcher {
  /** Base URL, e.g. http://127.0.0.1:7402. */
  readonly url: string;
  readonly port: number;
  /** The Prometheus endpoint's base URL (metrics at /metrics), when --metrics-port is set. */
  readonly metricsUrl: string | undefined;
  readonly registry: AgentRegistry;
  readonly packages: PackageStore;
  /** Ends agent streams (agents re-attach to the next dispatcher), then closes the port. */
  close(): Promise<void>;
}

/** startDispatcherServer wires the stores, the depgraph link, health and reflection onto one port. */
export async function startDispatcherServer(config: DispatcherConfig, logger: Logger): Promise<RunningDispatcher> {
  const packages = createPackageStore({ root: config.packagesRoot });
  const logs = createLogStore({ root: config.logsRoot });
  const depgraph = createDepGraphLink({
    client: createClient(DepGraphService, createPkgfarmTransport(config.depgraphUrl)),
    holderId: `dispatcher@${hostname()}`,
    leaseMs: config.leaseMs,
    pollWaitMs: 10_000,
    logger,
  });
  const metrics = config.metricsPort === undefined ? undefined : await startMetricsServer({ host: config.host, port: config.metricsPort });
  const service = createDispatcherService({
    depgraph,
    packages,
    logs,
    logger,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    renewEveryMs: Math.max(1000, Math.floor(config.leaseMs / 3)),
    metrics: metrics === undefined ? undefined : createDispatcherMetrics(metrics.registry),
  });
  if (metrics !== undefined) registerAgentMetrics(metrics.registry, service.registry);
  const server = await startGrpcService({
    service: DispatcherService,
    register: (router) => router.service(DispatcherService, service.impl),
    files: [file_pkgfarm_v1_dispatcher],
    host: config.host,
    port: config.port,
    interceptors: metrics === undefined ? [] : [createRpcMetricsInterceptor(metrics.registry)],
  }).catch(async (e: unknown) => {
    await service.close();
    await metrics?.close();
    throw e;
  });
  logger.info({ port: server.port, host: config.host, depgraph: config.depgraphUrl, packages: config.packagesRoot, metricsPort: metrics?.port }, "dispatcher listening");
  return {
    url: server.url,
    port: server.port,
    metricsUrl: metrics?.url,
    registry: service.registry,
    packages,
    close: async () => {
      await server.shutdown(() => service.close());
      await metrics?.close();
    },
  };
}
