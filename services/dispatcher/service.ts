import type { ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createAgentMessageHandler } from "./agent-messages.js";
import { createAgentStreams } from "./agent-stream.js";
import { createAgentsView } from "./agents-view.js";
import { createAssigner } from "./assigner.js";
import { AgentRegistry, type HeldJob } from "./core/registry.js";
import type { DepGraphLink } from "./depgraph-link.js";
import { createDownloadHandler, createReadLogHandler } from "./downloads.js";
import { createJobControl } from "./job-control.js";
import { startLeaseRenewer } from "./lease-renewer.js";
import type { LogStore } from "./log-store.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { PackageStore } from "./package-store.js";
import { createPullers } from "./puller.js";
import { createReportHandler } from "./report-reader.js";
import { createResultRelay } from "./results.js";
import { createStartNotices } from "./start-notices.js";
import { SessionTable } from "./sessions.js";
import { createUploadHandler, UploadLedger } from "./uploads.js";

export interface DispatcherServiceOptions {
  readonly depgraph: DepGraphLink;
  readonly packages: PackageStore;
  readonly logs: LogStore;
  readonly logger: Logger;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  /** Renew running jobs' leases this often (well inside the lease length). */
  readonly renewEveryMs: number;
  /** Connect streams served at once, those still waiting for their hello included; default 1000. */
  readonly maxAgents?: number;
  readonly now?: () => number;
  /** Where job movements are counted; none when metrics are off. */
  readonly metrics?: DispatcherMetrics;
  /** Longest a ReadLog chunk may wait for its reader before the stream is cut off (default DEFAULT_STALL_MS). */
  readonly streamStallMs?: number;
  /** `<data-dir>/reports`, where the build publisher writes each build's reports (GetReport reads them); none: GetReport answers NOT_FOUND. */
  readonly reportsRoot?: string;
}

export interface RunningDispatcherService {
  readonly impl: ServiceImpl<typeof DispatcherService>;
  readonly registry: AgentRegistry;
  /** Ends every agent stream and gives their jobs back (as draining: not the job's fault). */
  close(): Promise<void>;
}

/**
 * createDispatcherService keeps one Connect stream per agent, pulls ready
 * jobs from depgraph for each platform's free slots, and relays results,
 * logs and packages back. Every agent's jobs go back to depgraph the moment
 * its stream ends or its heartbeats stop. It only wires the parts; each
 * part is one module with one job.
 */
export function createDispatcherService(options: DispatcherServiceOptions): RunningDispatcherService {
  const { depgraph, packages, logs, logger, metrics } = options;
  const now = options.now ?? Date.now;
  const registry = new AgentRegistry({ heartbeatTimeoutMs: options.heartbeatTimeoutMs });
  const sessions = new SessionTable();
  const uploads = new UploadLedger();
  const root = new AbortController();
  // The pullers need the assigner, which needs job control, which wakes the
  // pullers: the late binding breaks the circle.
  const wake = (platform: string) => pullers.wake(platform);
  const jobs = createJobControl({ registry, sessions, uploads, logs, depgraph, metrics, wake });
  const assigner = createAssigner({ registry, sessions, logs, jobs, logger, now, metrics });
  const pullers = createPullers({ registry, depgraph, logger, signal: root.signal, place: assigner.place });
  const results = createResultRelay({ registry, uploads, packages, logs, depgraph, jobs, wake, metrics });
  const onLost = (job: HeldJob) => jobs.cancel(job, "the lease is no longer held (build cancelled, or the job was given to another agent)");
  const renewer = startLeaseRenewer({ registry, depgraph, logger, everyMs: options.renewEveryMs, onLost });
  const starts = createStartNotices({ depgraph, logger, onLost });
  const streams = createAgentStreams({
    registry, sessions, depgraph, jobs, wake, logger, now,
    onMessage: createAgentMessageHandler({ registry, logs, jobs, results, wake, now, metrics, unacceptedGraceMs: Math.max(options.heartbeatIntervalMs, options.heartbeatTimeoutMs), onAccepted: starts.accepted }),
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    heartbeatTimeoutMs: options.heartbeatTimeoutMs,
    maxAgents: options.maxAgents,
  });

  const impl: ServiceImpl<typeof DispatcherService> = {
    connect: streams.connect,
    uploadPackage: createUploadHandler({ sessions, registry, packages, uploads, jobs, depgraph, logs, metrics }),
    downloadPackage: createDownloadHandler(packages),
    readLog: createReadLogHandler(logs, { stallMs: options.streamStallMs, logger }),
    ...createAgentsView(registry, sessions),
    getReport: createReportHandler({ reportsRoot: options.reportsRoot, stallMs: options.streamStallMs, logger }),
  };

  return {
    impl,
    registry,
    async close() {
      root.abort();
      renewer.stop();
      streams.close();
      await logs.close();
    },
  };
}
