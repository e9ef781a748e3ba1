import { hostname } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import type { Logger } from "pino";
import { DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService, file_pkgfarm_v1_dispatcher } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { DescMethod } from "@bufbuild/protobuf";
import { createAuthInterceptor, createPkgfarmTransport, createRpcMetricsInterceptor, startGrpcService, startMetricsServer, type Guard } from "../shared/index.js";
import type { DispatcherConfig } from "./config.js";
import type { AgentRegistry } from "./core/registry.js";
import { startBuildPublisher } from "./build-publisher.js";
import { createDepGraphLink } from "./depgraph-link.js";
import { createLogStore } from "./log-store.js";
import { createDispatcherMetrics, registerAgentMetrics } from "./metrics.js";
import { createPackageStore, type PackageStore } from "./package-store.js";
import { createDispatcherService } from "./service.js";
import { createDepGraphForwarder, createStaticFiles, WEB_FORWARDED_GUARDS } from "../web/index.js";

export interface RunningDispatcher {
  /** Base URL, e.g. http://127.0.0.1:7402 (https:// with TLS). */
  readonly url: string;
  readonly port: number;
  /** The Prometheus endpoint's base URL (metrics at /metrics), when --metrics-port is set. */
  readonly metricsUrl: string | undefined;
  /** The plaintext health-only port, when configured. */
  readonly healthPort?: number;
  readonly registry: AgentRegistry;
  readonly packages: PackageStore;
  /**
   * Turns health NOT_SERVING, ends agent streams (agents re-attach to the
   * next dispatcher and keep their jobs), then closes the ports; calls still
   * running after graceMs are cut off.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Agents' RPCs need an agent token, DrainAgent the operator token (when
 * set). ReadLog and ListAgents only read and stay open, as do reflection
 * and health.
 */
export const DISPATCHER_GUARDED_RPCS: ReadonlyMap<DescMethod, Guard> = new Map<DescMethod, Guard>([
  [DispatcherService.method.connect, "agent"],
  [DispatcherService.method.uploadPackage, "agent"],
  [DispatcherService.method.downloadPackage, "agent"],
  [DispatcherService.method.drainAgent, "operator"],
]);

/** startDispatcherServer wires the stores, the depgraph link, health and reflection onto one port. */
export async function startDispatcherServer(config: DispatcherConfig, logger: Logger): Promise<RunningDispatcher> {
  const packages = createPackageStore({ root: config.packagesRoot });
  const logs = createLogStore({ root: config.logsRoot });
  const depgraphClient = createClient(DepGraphService, createPkgfarmTransport(config.depgraphUrl, { tls: config.depgraphTls, token: config.operatorToken }));
  const depgraph = createDepGraphLink({
    client: depgraphClient,
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
    maxAgents: config.maxAgents,
    streamStallMs: config.streamStallMs,
    reportsRoot: config.reportsRoot ?? join(config.logsRoot, "reports"),
  });
  if (metrics !== undefined) registerAgentMetrics(metrics.registry, service.registry);
  const server = await startGrpcService({
    service: DispatcherService,
    // The web status page (GET /) and the depgraph calls it makes, forwarded
    // (services/web/depgraph-forwarder.ts says why).
    register: (router) => {
      router.service(DispatcherService, service.impl);
      router.service(DepGraphService, createDepGraphForwarder(depgraphClient));
    },
    fallback: createStaticFiles(),
    cors: { allowedOrigins: config.corsOrigins ?? [] },
    files: [file_pkgfarm_v1_dispatcher],
    host: config.host,
    port: config.port,
    tls: config.tls,
    healthPort: config.healthPort,
    // Metrics outermost, so refused calls are counted too.
    interceptors: [
      ...(metrics === undefined ? [] : [createRpcMetricsInterceptor(metrics.registry)]),
      createAuthInterceptor(new Map([...DISPATCHER_GUARDED_RPCS, ...WEB_FORWARDED_GUARDS]), {
        operatorToken: config.operatorToken,
        agentToken: config.agentToken,
        agentTokens: config.agentTokens,
        readToken: config.readToken,
        readsNeedToken: config.readAuth === "token" ? [DispatcherService, DepGraphService] : [],
      }),
    ],
  }).catch(async (e: unknown) => {
    await service.close();
    await metrics?.close();
    throw e;
  });
  const publisher = (config.publishIntervalMs ?? 0) <= 0 ? undefined : startBuildPublisher({
    depgraph,
    logs,
    packages,
    reportsRoot: config.reportsRoot ?? join(config.logsRoot, "reports"),
    repositoryRoot: config.repositoryRoot ?? join(config.logsRoot, "repository"),
    intervalMs: config.publishIntervalMs!,
    logger,
  });
  logger.info({ port: server.port, host: config.host, tls: config.tls !== undefined, mutualTls: config.tls?.clientCa !== undefined,
    healthPort: server.healthPort, depgraph: config.depgraphUrl, packages: config.packagesRoot, metricsPort: metrics?.port,
    operatorToken: Boolean(config.operatorToken), agentToken: Boolean(config.agentToken), perAgentTokens: config.agentTokens?.size ?? 0 }, "dispatcher listening");
  return {
    url: server.url,
    port: server.port,
    metricsUrl: metrics?.url,
    healthPort: server.healthPort,
    registry: service.registry,
    packages,
    close: async (graceMs) => {
      await publisher?.close();
      await server.shutdown(() => service.close(), graceMs);
      await metrics?.close();
    },
  };
}
