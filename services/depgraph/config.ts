import { parseArgs } from "node:util";
import type { PolicyName } from "./core/priority.js";

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
  readonly logLevel: string;
  /** NATS server for change events and job events; "" runs without (the embedded default). */
  readonly natsUrl: string;
}

const POLICIES: readonly PolicyName[] = ["critical-path", "pbulk-weight", "fifo"];

/**
 * loadDepGraphConfig parses flags (which win) and PKGFARM_* environment
 * variables. It returns every problem at once, one line each, so an operator
 * fixes a bad deployment in one go.
 */
export function loadDepGraphConfig(argv: readonly string[], env: NodeJS.ProcessEnv): DepGraphConfig | { errors: string[] } {
  const errors: string[] = [];
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        host: { type: "string" },
        port: { type: "string" },
        "packages-dir": { type: "string" },
        "scan-helper": { type: "string" },
        tree: { type: "string" },
        history: { type: "string" },
        import: { type: "string" },
        policy: { type: "string" },
        "lease-seconds": { type: "string" },
        "max-lease-seconds": { type: "string" },
        "max-losses": { type: "string" },
        "log-level": { type: "string" },
        nats: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }).values as Record<string, string | undefined>;
  } catch (e) {
    return { errors: [(e as Error).message] };
  }
  const pick = (flag: string, envName: string, fallback: string) => values[flag] ?? env[envName] ?? fallback;
  const int = (flag: string, envName: string, fallback: number, min: number, max: number): number => {
    const raw = pick(flag, envName, String(fallback));
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      errors.push(`--${flag} (${envName}) must be a whole number from ${min} to ${max}, not "${raw}"`);
      return fallback;
    }
    return n;
  };
  const policy = pick("policy", "PKGFARM_POLICY", "critical-path");
  if (!POLICIES.includes(policy as PolicyName)) errors.push(`--policy (PKGFARM_POLICY) must be one of ${POLICIES.join(", ")}, not "${policy}"`);
  const scanHelperRaw = pick("scan-helper", "PKGFARM_SCAN_HELPER", "");
  let scanHelper: string[] = [];
  if (scanHelperRaw !== "") {
    // A JSON array keeps arguments with spaces intact; a plain string is split on spaces.
    try {
      scanHelper = scanHelperRaw.trim().startsWith("[") ? JSON.parse(scanHelperRaw) : scanHelperRaw.trim().split(/\s+/);
      if (!Array.isArray(scanHelper) || !scanHelper.every((a) => typeof a === "string")) throw new Error("not an array of strings");
    } catch (e) {
      errors.push(`--scan-helper (PKGFARM_SCAN_HELPER) must be a command or a JSON array of strings: ${(e as Error).message}`);
    }
  }
  const config: DepGraphConfig = {
    host: pick("host", "PKGFARM_HOST", "127.0.0.1"),
    port: int("port", "PKGFARM_DEPGRAPH_PORT", 7401, 0, 65535),
    packagesDir: pick("packages-dir", "PKGFARM_PACKAGES_DIR", ""),
    scanHelper,
    treeDir: pick("tree", "PKGFARM_TREE", "."),
    historyFile: pick("history", "PKGFARM_HISTORY", ""),
    importFile: pick("import", "PKGFARM_IMPORT", ""),
    defaultPolicy: policy as PolicyName,
    defaultLeaseMs: int("lease-seconds", "PKGFARM_LEASE_SECONDS", 600, 1, 86400) * 1000,
    maxLeaseMs: int("max-lease-seconds", "PKGFARM_MAX_LEASE_SECONDS", 86400, 1, 7 * 86400) * 1000,
    maxLosses: int("max-losses", "PKGFARM_MAX_LOSSES", 3, 1, 100),
    logLevel: pick("log-level", "PKGFARM_LOG_LEVEL", "info"),
    natsUrl: pick("nats", "PKGFARM_NATS_URL", ""),
  };
  if (config.natsUrl !== "" && !/^(nats|tls):\/\/[^/\s]+$|^[^/\s:]+:\d+$/.test(config.natsUrl)) {
    errors.push(`--nats (PKGFARM_NATS_URL) must look like nats://host:4222, not "${config.natsUrl}"`);
  }
  if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(config.logLevel)) {
    errors.push(`--log-level (PKGFARM_LOG_LEVEL) must be one of fatal, error, warn, info, debug, trace, silent, not "${config.logLevel}"`);
  }
  return errors.length > 0 ? { errors } : config;
}
