import { LOG_LEVELS, READ_AUTH_MODES, readConfig, readServerTls, readShutdownGraceMs, SERVER_TLS_FLAGS, SHUTDOWN_FLAGS, type ReadAuth, type ServerTls } from "../shared/index.js";
import { DEFAULT_KEEP_FINISHED_BUILDS } from "./core/depgraph.js";
import type { PolicyName } from "./core/priority.js";
import { readFileSync } from "node:fs";
import { parseConstraints, type ConstraintRule } from "./core/constraints.js";

/** DepGraphConfig is everything depgraph reads from its command line and environment. */
export interface DepGraphConfig {
  /** Address to listen on; loopback unless told otherwise. */
  readonly host: string;
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  /** pkgsrc PACKAGES directory (holding All/) that incremental builds check by default. */
  readonly packagesDir: string;
  /** Scan helper argv (location appended), or empty for none. */
  readonly scanHelper: readonly string[];
  /** Locations given to one run of the scan helper. */
  readonly scanBatch: number;
  /** Package tree root the scan helper runs in. */
  readonly treeDir: string;
  /** bob-style history CSV whose durations seed the critical-path policy; "" for none. */
  readonly historyFile: string;
  /** pbulk-index file imported at start-up (gzip or plain); "" for none. */
  readonly importFile: string;
  readonly defaultPolicy: PolicyName;
  readonly defaultLeaseMs: number;
  readonly maxLeaseMs: number;
  readonly maxLosses: number;
  /** Finished and cancelled builds kept; older ones are forgotten as new ones start. */
  readonly keepFinishedBuilds: number;
  readonly logLevel: string;
  /** NATS server for change events and job events; "" runs without (the embedded default). */
  readonly natsUrl: string;
  /** Where builds and the tree live: in this process only, or in a JetStream KV bucket that survives restarts. */
  readonly state: "memory" | "nats-kv";
  /** JetStream KV bucket of the nats-kv state. */
  readonly stateBucket: string;
  /** Port of the plain-HTTP Prometheus endpoint (GET /metrics) on host; undefined: off; 0 picks a free one. */
  readonly metricsPort?: number;
  // Security and operations; each absent means off (the embedded default).
  /** TLS for the gRPC port; absent: cleartext h2c. */
  readonly tls?: ServerTls;
  /** A plaintext port serving only grpc.health.v1, for the kubelet's probe. */
  readonly healthPort?: number;
  /** Required of callers of the state-changing RPCs (DEPGRAPH_OPERATOR_RPCS). */
  readonly operatorToken?: string;
  /** "token": the read RPCs need a token too (the read token, or the operator token). */
  readonly readAuth?: ReadAuth;
  /** A token good for the read RPCs only. */
  readonly readToken?: string;
  /** Most bytes one ImportScan stream may carry. */
  readonly maxImportBytes?: number;
  /** Longest a WatchJobs message may wait for its reader before the stream is cut off (no flag: 30 s, tests set less). */
  readonly streamStallMs?: number;
  /** Most bytes of transitions a WatchJobs reader may fall behind (no flag: 8 MiB, tests set less). */
  readonly maxWatchBacklogBytes?: number;
  /** How long a SIGTERM shutdown may take before the process exits anyway. */
  readonly shutdownGraceMs?: number;
  /** What packages need of a build host, from --constraints FILE (see core/constraints.ts); none without it. */
  readonly constraints?: readonly ConstraintRule[];
}

const POLICIES: readonly PolicyName[] = ["critical-path", "pbulk-weight", "fifo"];

/**
 * loadDepGraphConfig parses flags (which win) and PKGFARM_* environment
 * variables. It returns every problem at once, one line each, so an operator
 * fixes a bad deployment in one go.
 */
export function loadDepGraphConfig(argv: readonly string[], env: NodeJS.ProcessEnv): DepGraphConfig | { errors: string[] } {
  const read = readConfig(argv, env, [
    "host", "port", "packages-dir", "scan-helper", "scan-batch", "tree", "history", "import", "policy",
    "lease-seconds", "max-lease-seconds", "max-losses", "keep-finished-builds", "log-level", "nats", "state", "state-bucket", "metrics-port",
    "read-auth", "max-import-mib", ...SERVER_TLS_FLAGS, "health-port", ...SHUTDOWN_FLAGS, "constraints",
  ]);
  const config: DepGraphConfig = {
    host: read.string("host", "PKGFARM_HOST", "127.0.0.1"),
    port: read.int("port", "PKGFARM_DEPGRAPH_PORT", 7401, 0, 65535),
    packagesDir: read.string("packages-dir", "PKGFARM_PACKAGES_DIR", ""),
    scanHelper: read.argv("scan-helper", "PKGFARM_SCAN_HELPER", []),
    scanBatch: read.int("scan-batch", "PKGFARM_SCAN_BATCH", 1, 1, 100_000),
    treeDir: read.string("tree", "PKGFARM_TREE", "."),
    historyFile: read.string("history", "PKGFARM_HISTORY", ""),
    importFile: read.string("import", "PKGFARM_IMPORT", ""),
    defaultPolicy: read.oneOf("policy", "PKGFARM_POLICY", "critical-path", POLICIES),
    defaultLeaseMs: read.int("lease-seconds", "PKGFARM_LEASE_SECONDS", 600, 1, 86400) * 1000,
    maxLeaseMs: read.int("max-lease-seconds", "PKGFARM_MAX_LEASE_SECONDS", 86400, 1, 7 * 86400) * 1000,
    maxLosses: read.int("max-losses", "PKGFARM_MAX_LOSSES", 3, 1, 100),
    keepFinishedBuilds: read.int("keep-finished-builds", "PKGFARM_KEEP_FINISHED_BUILDS", DEFAULT_KEEP_FINISHED_BUILDS, 0, 10_000),
    logLevel: read.oneOf("log-level", "PKGFARM_LOG_LEVEL", "info", LOG_LEVELS),
    natsUrl: read.string("nats", "PKGFARM_NATS_URL", ""),
    state: read.oneOf("state", "PKGFARM_STATE", "memory", ["memory", "nats-kv"] as const),
    stateBucket: read.string("state-bucket", "PKGFARM_STATE_BUCKET", "pkgfarm-depgraph"),
    metricsPort: read.optionalInt("metrics-port", "PKGFARM_METRICS_PORT", 0, 65535),
    tls: readServerTls(read),
    healthPort: read.optionalInt("health-port", "PKGFARM_HEALTH_PORT", 0, 65535),
    operatorToken: read.secret("PKGFARM_OPERATOR_TOKEN"),
    readAuth: read.oneOf("read-auth", "PKGFARM_READ_AUTH", "open", READ_AUTH_MODES),
    readToken: read.secret("PKGFARM_READ_TOKEN"),
    maxImportBytes: read.int("max-import-mib", "PKGFARM_MAX_IMPORT_MIB", 256, 1, 64 * 1024) * 1024 * 1024,
    shutdownGraceMs: readShutdownGraceMs(read),
  };
  if (config.readAuth === "token" && !config.operatorToken && !config.readToken) {
    read.errors.push("--read-auth token (PKGFARM_READ_AUTH) needs a token to check: set PKGFARM_READ_TOKEN or PKGFARM_OPERATOR_TOKEN (or their _FILE)");
  }
  if (config.state === "nats-kv" && config.natsUrl === "") {
    read.errors.push("--state nats-kv (PKGFARM_STATE) keeps state in JetStream KV: it needs --nats (PKGFARM_NATS_URL)");
  }
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(config.stateBucket)) {
    read.errors.push(`--state-bucket (PKGFARM_STATE_BUCKET) must be 1-64 letters, digits, '_' or '-', not "${config.stateBucket}"`);
  }
  if (config.natsUrl !== "" && !/^(nats|tls):\/\/[^/\s]+$|^[^/\s:]+:\d+$/.test(config.natsUrl)) {
    read.errors.push(`--nats (PKGFARM_NATS_URL) must look like nats://host:4222, not "${config.natsUrl}"`);
  }
  const constraints = readConstraintsFile(read.string("constraints", "PKGFARM_CONSTRAINTS", ""), read.errors);
  return read.errors.length > 0 ? { errors: read.errors } : { ...config, constraints };
}

/** --constraints FILE: every bad line is one error at start-up. */
function readConstraintsFile(path: string, errors: string[]): readonly ConstraintRule[] {
  if (path === "") return [];
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    errors.push(`--constraints (PKGFARM_CONSTRAINTS): cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return [];
  }
  const parsed = parseConstraints(text);
  for (const error of parsed.errors) errors.push(`--constraints (PKGFARM_CONSTRAINTS) ${path}: ${error.message}`);
  return parsed.rules;
}
