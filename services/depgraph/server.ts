import { readFile } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { DepGraphService, file_pkgfarm_v1_depgraph } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { connect, type NatsConnection } from "nats";
import type { DescMethod } from "@bufbuild/protobuf";
import { createAuthInterceptor, createRpcMetricsInterceptor, startGrpcService, startMetricsServer, type Guard } from "../shared/index.js";
import { startJobEventPublisher, type JobEventPublisher } from "./job-events.js";
import { startMetaConsumer, type AppliedChange } from "./meta-events.js";
import { registerDepGraphMetrics, registerEventMetrics } from "./metrics.js";
import type { ScanHelperOptions } from "./scan-helper.js";
import type { DepGraphConfig } from "./config.js";
import { DepGraph } from "./core/depgraph.js";
import { createScanRecordParser, type ScanRecord } from "./core/scan-record.js";
import type { InvalidScanRecord } from "./core/errors.js";
import { createDurationHistory, parseBuildHistoryCsv } from "./core/history.js";
import { readScanChunks } from "./scan-file.js";
import { createDepGraphService } from "./service.js";
import { startLocalScanner } from "./local-scanner.js";
import { openKvStateStore } from "./kv-state-store.js";
import { ackWhenStored, persistState, restoreState, settledWithin } from "./state-persister.js";
import type { StateStore } from "./state-store.js";

/** How long a state-changing call waits for its change to be durable before answering anyway. */
const DURABLE_WAIT_MS = 2_000;

export interface RunningDepGraph {
  readonly depgraph: DepGraph;
  /** Base URL, e.g. http://127.0.0.1:7401 (https:// with TLS). */
  readonly url: string;
  readonly port: number;
  /** The Prometheus endpoint's base URL (metrics at /metrics), when --metrics-port is set. */
  readonly metricsUrl: string | undefined;
  /** The plaintext health-only port, when configured. */
  readonly healthPort?: number;
  /**
   * Turns health NOT_SERVING, ends streams, and resolves once the ports are
   * closed; calls still running after graceMs are cut off.
   */
  close(graceMs?: number): Promise<void>;
  /** Resolves once every state change so far is durable (at once without a durable store). */
  stateSettled(): Promise<void>;
  /** Resolves when the server has stopped on its own (another depgraph took over its state). */
  readonly stopped: Promise<void>;
}

/**
 * The RPCs that change state need the operator token (when one is set):
 * importing and rescanning the tree, starting and cancelling builds, and the
 * lease calls only the dispatcher makes. Reads, reflection and health stay open.
 */
export const DEPGRAPH_OPERATOR_RPCS: ReadonlyMap<DescMethod, Guard> = new Map(
  [
    DepGraphService.method.importScan,
    DepGraphService.method.scanLocations,
    DepGraphService.method.createBuild,
    DepGraphService.method.cancelBuild,
    DepGraphService.method.nextReadyJob,
    DepGraphService.method.markDone,
    DepGraphService.method.renewLease,
    DepGraphService.method.returnJob,
    DepGraphService.method.startScan,
  ].map((method) => [method, "operator"]),
);

/**
 * startDepGraphServer wires the core, the service, reflection and health onto
 * one HTTP/2 port that speaks gRPC, gRPC-Web and Connect.
 */
/** Hooks for tests and benchmarks to see what the server does. */
export interface DepGraphServerHooks {
  /** Called after each change event is applied, made durable and acked. */
  readonly onMetaApplied?: (change: AppliedChange) => void;
}

export async function startDepGraphServer(config: DepGraphConfig, logger: Logger, hooks: DepGraphServerHooks = {}): Promise<RunningDepGraph> {
  const historyRows = config.historyFile === "" ? [] : parseBuildHistoryCsv(await readFile(config.historyFile, "utf8"));
  const history = createDurationHistory(historyRows);
  const now = Date.now;
  const depgraph = new DepGraph({
    now,
    newId: randomUUID,
    history,
    defaultPolicy: config.defaultPolicy,
    defaultLeaseMs: config.defaultLeaseMs,
    maxLeaseMs: config.maxLeaseMs,
    maxLosses: config.maxLosses,
    keepFinishedBuilds: config.keepFinishedBuilds,
    fallbackDurationMs: 60_000,
    sharedTreeScanner: config.scanHelper.length > 0,
  });
  const nc = config.natsUrl === "" ? undefined : await connectNats(config.natsUrl, logger);
  let fencedBy: ((writer: string) => void) | undefined;
  let store: StateStore | undefined;
  if (config.state === "nats-kv") {
    store = await openKvStateStore({ nc: nc!, logger: logger.child({ component: "state" }), bucket: config.stateBucket, onFenced: (writer) => fencedBy?.(writer) });
    await restoreState(store, depgraph, history, logger);
    persistState(store, depgraph, history);
    // A smaller --keep-finished-builds, or a forget that failed last time.
    depgraph.forgetOldBuilds();
  }
  if (config.importFile !== "") await importFile(depgraph, config.importFile, logger);

  const scanHelper: ScanHelperOptions | undefined = config.scanHelper.length === 0 ? undefined
    : { command: config.scanHelper, treeDir: config.treeDir, timeoutMs: 300_000, concurrency: 2, batchSize: config.scanBatch };
  const durable = store === undefined ? undefined : () => settledWithin(store, DURABLE_WAIT_MS);
  const localScanner = scanHelper === undefined ? undefined : startLocalScanner({ depgraph, scanHelper, logger: logger.child({ component: "local-scanner" }) });
  const service = createDepGraphService({
    depgraph,
    history,
    logger,
    packagesDir: config.packagesDir,
    scanHelper,
    maxWaitMs: 60_000,
    maxJobsPerCall: 1024,
    maxWatchBacklog: 100_000,
    now,
    durable,
    maxImportBytes: config.maxImportBytes,
    streamStallMs: config.streamStallMs,
    maxWatchBacklogBytes: config.maxWatchBacklogBytes,
  });
  const metrics = config.metricsPort === undefined ? undefined : await startMetricsServer({ host: config.host, port: config.metricsPort });
  if (metrics !== undefined) registerDepGraphMetrics(metrics.registry, depgraph);
  const server = await startGrpcService({
    service: DepGraphService,
    register: (router) => router.service(DepGraphService, service.impl),
    files: [file_pkgfarm_v1_depgraph],
    host: config.host,
    port: config.port,
    tls: config.tls,
    healthPort: config.healthPort,
    // Metrics outermost, so refused calls are counted too.
    interceptors: [
      ...(metrics === undefined ? [] : [createRpcMetricsInterceptor(metrics.registry)]),
      createAuthInterceptor(DEPGRAPH_OPERATOR_RPCS, {
        operatorToken: config.operatorToken,
        readToken: config.readToken,
        readsNeedToken: config.readAuth === "token" ? [DepGraphService] : [],
      }),
    ],
  }).catch(async (e: unknown) => {
    await metrics?.close();
    throw e;
  });
  // RPCs answer after at most DURABLE_WAIT_MS (a late answer beats none while
  // NATS is away; the client retries), but a change event is acked only once
  // its change is stored: an ack is a promise never to deliver it again.
  const stored = store === undefined ? undefined : ackWhenStored(store);
  const events = nc === undefined ? undefined : startEvents(nc, depgraph, scanHelper, stored, hooks, logger);
  if (metrics !== undefined && nc !== undefined && events !== undefined) {
    registerEventMetrics(metrics.registry, { nc, publisher: events.jobEvents, logger: logger.child({ component: "metrics" }) });
  }
  logger.info({ port: server.port, host: config.host, tls: config.tls !== undefined, mutualTls: config.tls?.clientCa !== undefined,
    healthPort: server.healthPort, operatorToken: Boolean(config.operatorToken), historyRows: historyRows.length, state: config.state,
    metricsPort: metrics?.port }, "depgraph listening");
  let closing: Promise<void> | undefined;
  const close = (graceMs?: number) => closing ??= server.shutdown(async () => {
    service.close();
    await localScanner?.stop();
    await events?.stop();
    await store?.close();
    await nc?.drain().catch(() => nc.close());
  }, graceMs).then(() => metrics?.close());
  const stopped = new Promise<void>((resolve) => {
    fencedBy = (writer) => {
      logger.fatal({ writer }, "another depgraph owns the state now; stopping");
      void close().then(resolve);
    };
  });
  return { depgraph, url: server.url, port: server.port, metricsUrl: metrics?.url, healthPort: server.healthPort, close, stopped, stateSettled: () => store?.settled() ?? Promise.resolve() };
}

/**
 * connectNats waits for NATS without giving up: depgraph with its state in
 * NATS cannot start without it, and events resume by themselves later.
 */
async function connectNats(url: string, logger: Logger): Promise<NatsConnection> {
  const nc = await connect({ servers: url, name: "depgraph", waitOnFirstConnect: true, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 500 });
  void (async () => {
    for await (const status of nc.status()) logger.info({ type: status.type, data: String(status.data) }, "nats status");
  })();
  return nc;
}

/**
 * startEvents consumes change events and publishes job events. depgraph
 * serves RPCs whether or not NATS is up; both catch up once it is.
 */
function startEvents(nc: NatsConnection, depgraph: DepGraph, scanHelper: ScanHelperOptions | undefined, durable: (() => Promise<unknown>) | undefined, hooks: DepGraphServerHooks, logger: Logger): { jobEvents: JobEventPublisher; stop(): Promise<void> } {
  const consumer = startMetaConsumer({ nc, depgraph, logger: logger.child({ component: "meta-events" }), scanHelper, durable, onApplied: hooks.onMetaApplied });
  const jobEvents = startJobEventPublisher({ nc, depgraph, logger: logger.child({ component: "job-events" }) });
  return {
    jobEvents,
    async stop() {
      await consumer.stop();
      await jobEvents.stop();
    },
  };
}

async function importFile(depgraph: DepGraph, path: string, logger: Logger): Promise<void> {
  const records: ScanRecord[] = [];
  const problems: InvalidScanRecord[] = [];
  const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
  for await (const chunk of readScanChunks(path)) parser.push(chunk);
  parser.end();
  problems.push(...depgraph.replaceTree(records, "tree"));
  for (const p of problems.slice(0, 20)) logger.warn({ line: p.line, location: p.location }, p.problem);
  logger.info({ path, records: records.length, problems: problems.length, ...depgraph.tree.summary(), cycles: depgraph.tree.cyclesFound().length }, "scan file imported");
}
