import { join } from "node:path";
import { LOG_LEVELS, readConfig } from "../shared/index.js";

/** DispatcherConfig is everything the dispatcher reads from its command line and environment. */
export interface DispatcherConfig {
  /** Address to listen on; loopback unless told otherwise. */
  readonly host: string;
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  /** depgraph's base URL. */
  readonly depgraphUrl: string;
  /** Root of the package directories: <packagesRoot>/<platform>/All/<PKGNAME>.tgz. */
  readonly packagesRoot: string;
  /** Build logs live under <logsRoot>/logs/<build>/<pkgname>.log. */
  readonly logsRoot: string;
  readonly heartbeatIntervalMs: number;
  /** An agent silent this long is lost and its jobs go back. */
  readonly heartbeatTimeoutMs: number;
  /** Lease length the dispatcher asks depgraph for; renewed every third of it. */
  readonly leaseMs: number;
  readonly logLevel: string;
  /** Port of the plain-HTTP Prometheus endpoint (GET /metrics) on host; undefined: off; 0 picks a free one. */
  readonly metricsPort?: number;
}

export function loadDispatcherConfig(argv: readonly string[], env: NodeJS.ProcessEnv): DispatcherConfig | { errors: string[] } {
  const read = readConfig(argv, env, ["host", "port", "depgraph", "data-dir", "heartbeat-seconds", "heartbeat-timeout-seconds", "lease-seconds", "log-level", "metrics-port"]);
  const dataDir = read.string("data-dir", "PKGFARM_DATA_DIR", "var");
  const heartbeatIntervalMs = read.int("heartbeat-seconds", "PKGFARM_HEARTBEAT_SECONDS", 5, 1, 3600) * 1000;
  const heartbeatTimeoutMs = read.int("heartbeat-timeout-seconds", "PKGFARM_HEARTBEAT_TIMEOUT_SECONDS", 15, 1, 3600) * 1000;
  if (heartbeatTimeoutMs <= heartbeatIntervalMs) {
    read.errors.push(`--heartbeat-timeout-seconds (PKGFARM_HEARTBEAT_TIMEOUT_SECONDS) must be longer than the heartbeat interval (${heartbeatIntervalMs / 1000} s)`);
  }
  const depgraphUrl = read.string("depgraph", "PKGFARM_DEPGRAPH_URL", "http://127.0.0.1:7401");
  if (!/^https?:\/\/[^/\s]+\/?$/.test(depgraphUrl)) read.errors.push(`--depgraph (PKGFARM_DEPGRAPH_URL) must be a URL like http://depgraph:7401, not "${depgraphUrl}"`);
  const config: DispatcherConfig = {
    host: read.string("host", "PKGFARM_HOST", "127.0.0.1"),
    port: read.int("port", "PKGFARM_DISPATCHER_PORT", 7402, 0, 65535),
    depgraphUrl: depgraphUrl.replace(/\/$/, ""),
    packagesRoot: join(dataDir, "packages"),
    logsRoot: dataDir,
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    leaseMs: read.int("lease-seconds", "PKGFARM_LEASE_SECONDS", 120, 5, 86400) * 1000,
    logLevel: read.oneOf("log-level", "PKGFARM_LOG_LEVEL", "info", LOG_LEVELS),
    metricsPort: read.optionalInt("metrics-port", "PKGFARM_METRICS_PORT", 0, 65535),
  };
  return read.errors.length > 0 ? { errors: read.errors } : config;
}
