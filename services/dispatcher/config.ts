import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  CLIENT_TLS_FLAGS, LOG_LEVELS, MIN_SECRET_LENGTH, READ_AUTH_MODES, parseAgentTokens, readClientTls, readConfig, readServerTls, readShutdownGraceMs,
  SERVER_TLS_FLAGS, SHUTDOWN_FLAGS, type ClientTls, type ReadAuth, type ServerTls,
} from "../shared/index.js";

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
  // Security and operations; each absent means off (the embedded default).
  /** TLS for the gRPC port; absent: cleartext h2c. */
  readonly tls?: ServerTls;
  /** A plaintext port serving only grpc.health.v1, for the kubelet's probe. */
  readonly healthPort?: number;
  /** Trust and client certificate for an https:// depgraph URL. */
  readonly depgraphTls?: ClientTls;
  /** Required of DrainAgent callers, and sent to depgraph. */
  readonly operatorToken?: string;
  /** One token any agent may use. */
  readonly agentToken?: string;
  /** Tokens each valid for one agent name only. */
  readonly agentTokens?: ReadonlyMap<string, string>;
  /** "token": the read RPCs (ReadLog, ListAgents) need a token too: the read, operator or an agent token. */
  readonly readAuth?: ReadAuth;
  /** A token good for the read RPCs only. */
  readonly readToken?: string;
  /** Longest a ReadLog chunk may wait for its reader before the stream is cut off (no flag: 30 s, tests set less). */
  readonly streamStallMs?: number;
  /** Agent streams served at once (waiting for their hello included); more get RESOURCE_EXHAUSTED. */
  readonly maxAgents?: number;
  /** How long a SIGTERM shutdown may take before the process exits anyway. */
  readonly shutdownGraceMs?: number;
  /**
   * How often ended builds are looked for, to write their reports into
   * <reportsRoot>/<build>/ and publish the platform's repository at
   * <repositoryRoot>/<platform>; undefined or 0: off.
   */
  readonly publishIntervalMs?: number;
  /** Default <logsRoot>/reports. */
  readonly reportsRoot?: string;
  /** Default <logsRoot>/repository. */
  readonly repositoryRoot?: string;
  /** Origins whose web pages may call this port (CORS), "*" for any; empty or absent: same-origin only. */
  readonly corsOrigins?: readonly string[];
}

export function loadDispatcherConfig(argv: readonly string[], env: NodeJS.ProcessEnv): DispatcherConfig | { errors: string[] } {
  const read = readConfig(argv, env, ["host", "port", "depgraph", "data-dir", "heartbeat-seconds", "heartbeat-timeout-seconds", "lease-seconds", "log-level", "metrics-port",
    "max-agents", "health-port", "read-auth", "publish-interval-seconds", "cors-origins", ...SERVER_TLS_FLAGS, ...CLIENT_TLS_FLAGS, ...SHUTDOWN_FLAGS]);
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
    tls: readServerTls(read),
    healthPort: read.optionalInt("health-port", "PKGFARM_HEALTH_PORT", 0, 65535),
    depgraphTls: readClientTls(read, depgraphUrl, "--depgraph (PKGFARM_DEPGRAPH_URL)"),
    operatorToken: read.secret("PKGFARM_OPERATOR_TOKEN"),
    agentToken: read.secret("PKGFARM_AGENT_TOKEN"),
    agentTokens: readAgentTokensFile(env, read.errors),
    readAuth: read.oneOf("read-auth", "PKGFARM_READ_AUTH", "open", READ_AUTH_MODES),
    readToken: read.secret("PKGFARM_READ_TOKEN"),
    maxAgents: read.int("max-agents", "PKGFARM_MAX_AGENTS", 1000, 1, 100_000),
    shutdownGraceMs: readShutdownGraceMs(read),
    publishIntervalMs: read.int("publish-interval-seconds", "PKGFARM_PUBLISH_INTERVAL_SECONDS", 5, 0, 3600) * 1000,
    reportsRoot: join(dataDir, "reports"),
    repositoryRoot: join(dataDir, "repository"),
    corsOrigins: readCorsOrigins(read.string("cors-origins", "PKGFARM_CORS_ORIGINS", ""), read.errors),
  };
  if (config.readAuth === "token" && !config.operatorToken && !config.readToken && !config.agentToken && (config.agentTokens?.size ?? 0) === 0) {
    read.errors.push("--read-auth token (PKGFARM_READ_AUTH) needs a token to check: set PKGFARM_READ_TOKEN, PKGFARM_OPERATOR_TOKEN or agent tokens");
  }
  return read.errors.length > 0 ? { errors: read.errors } : config;
}

/**
 * --cors-origins: comma-separated origins as browsers send them
 * (scheme://host[:port], no path), or "*".
 */
function readCorsOrigins(text: string, errors: string[]): string[] {
  const origins = text.split(",").map((o) => o.trim()).filter((o) => o !== "");
  for (const origin of origins) {
    if (origin !== "*" && !/^https?:\/\/[^/\s]+$/.test(origin)) {
      errors.push(`--cors-origins (PKGFARM_CORS_ORIGINS) takes origins like https://status.example.org or "*", not "${origin.slice(0, 200)}"`);
    }
  }
  return origins;
}

/** PKGFARM_AGENT_TOKENS_FILE: `agent-name token` per line; each token is valid for its agent only. */
function readAgentTokensFile(env: NodeJS.ProcessEnv, errors: string[]): ReadonlyMap<string, string> | undefined {
  const path = env["PKGFARM_AGENT_TOKENS_FILE"];
  if (path === undefined || path === "") return undefined;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    errors.push(`PKGFARM_AGENT_TOKENS_FILE: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return undefined;
  }
  const parsed = parseAgentTokens(text, `PKGFARM_AGENT_TOKENS_FILE (${path})`, MIN_SECRET_LENGTH);
  errors.push(...parsed.errors);
  if (parsed.errors.length === 0 && parsed.tokens.size === 0) errors.push(`PKGFARM_AGENT_TOKENS_FILE (${path}) names no agent; leave it unset to turn per-agent tokens off`);
  return parsed.tokens;
}
