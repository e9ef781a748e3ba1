import { arch, hostname, release, type } from "node:os";
import { resolve } from "node:path";
import { CLIENT_TLS_FLAGS, LOG_LEVELS, readClientTls, readConfig, type ClientTls } from "../shared/index.js";

/** AgentConfig is everything an agent reads from its command line and environment. */
export interface AgentConfig {
  /** The dispatcher's base URL. */
  readonly dispatcherUrl: string;
  readonly agentId: string;
  readonly slots: number;
  /** pkgsrc's names for this host: OPSYS, OS_VERSION, MACHINE_ARCH. */
  readonly os: string;
  readonly osRelease: string;
  readonly arch: string;
  /** depgraph platform; "" means "<os>-<osRelease>-<arch>". */
  readonly platform: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The package tree checkout the build command works in. */
  readonly treeDir: string;
  /** Build command argv; package fields reach it only as PKGFARM_* environment. */
  readonly buildCommand: readonly string[];
  /** Per-job work directories live under it. */
  readonly workDir: string;
  /** Dependencies' packages, cached by digest. */
  readonly cacheDir: string;
  readonly jobTimeoutMs: number;
  readonly logLevel: string;
  /** Trust and client certificate for an https:// dispatcher URL. */
  readonly tls?: ClientTls;
  /** Sent to the dispatcher as `authorization: Bearer`; absent: none. */
  readonly token?: string;
}

/** OPSYS and MACHINE_ARCH as pkgsrc spells them, from Node's names. */
export function hostPlatform(): { os: string; osRelease: string; arch: string } {
  const machine: Record<string, string> = { x64: "x86_64", arm64: "aarch64", ia32: "i386", arm: "earmv7hf", ppc64: "powerpc64", riscv64: "riscv64", s390x: "s390x" };
  return { os: type(), osRelease: release().replace(/[^A-Za-z0-9._-]/g, "_"), arch: machine[arch()] ?? arch() };
}

export function loadAgentConfig(argv: readonly string[], env: NodeJS.ProcessEnv): AgentConfig | { errors: string[] } {
  const read = readConfig(argv, env, [
    "dispatcher", "id", "slots", "os", "os-release", "arch", "platform", "labels", "tree", "build-command", "work-dir", "cache-dir", "job-timeout-seconds", "log-level",
    ...CLIENT_TLS_FLAGS,
  ]);
  const host = hostPlatform();
  const dispatcherUrl = read.string("dispatcher", "PKGFARM_DISPATCHER_URL", "http://127.0.0.1:7402");
  if (!/^https?:\/\/[^/\s]+\/?$/.test(dispatcherUrl)) read.errors.push(`--dispatcher (PKGFARM_DISPATCHER_URL) must be a URL like http://dispatcher:7402, not "${dispatcherUrl}"`);
  const buildCommand = read.argv("build-command", "PKGFARM_BUILD_COMMAND", []);
  if (buildCommand.length === 0) read.errors.push("--build-command (PKGFARM_BUILD_COMMAND) is required: the command that builds one package (e.g. [\"node\", \"/path/build-one.mjs\"])");
  const labels: Record<string, string> = {};
  for (const pair of read.string("labels", "PKGFARM_LABELS", "").split(",").filter((p) => p.trim() !== "")) {
    const [key, value] = pair.split("=", 2);
    if (key === undefined || value === undefined || key.trim() === "") read.errors.push(`--labels (PKGFARM_LABELS) must be key=value pairs separated by commas, not "${pair}"`);
    else labels[key.trim()] = value.trim();
  }
  const workDir = resolve(read.string("work-dir", "PKGFARM_WORK_DIR", "var/agent/work"));
  const config: AgentConfig = {
    dispatcherUrl: dispatcherUrl.replace(/\/$/, ""),
    agentId: read.string("id", "PKGFARM_AGENT_ID", hostname()),
    slots: read.int("slots", "PKGFARM_SLOTS", 1, 1, 1024),
    os: read.string("os", "PKGFARM_OS", host.os),
    osRelease: read.string("os-release", "PKGFARM_OS_RELEASE", host.osRelease),
    arch: read.string("arch", "PKGFARM_ARCH", host.arch),
    platform: read.string("platform", "PKGFARM_PLATFORM", ""),
    labels,
    treeDir: resolve(read.string("tree", "PKGFARM_TREE", ".")),
    buildCommand,
    workDir,
    cacheDir: resolve(read.string("cache-dir", "PKGFARM_CACHE_DIR", `${workDir}/../cache`)),
    jobTimeoutMs: read.int("job-timeout-seconds", "PKGFARM_JOB_TIMEOUT_SECONDS", 4 * 3600, 1, 7 * 86400) * 1000,
    logLevel: read.oneOf("log-level", "PKGFARM_LOG_LEVEL", "info", LOG_LEVELS),
    tls: readClientTls(read, dispatcherUrl, "--dispatcher (PKGFARM_DISPATCHER_URL)"),
    token: read.secret("PKGFARM_AGENT_TOKEN"),
  };
  return read.errors.length > 0 ? { errors: read.errors } : config;
}
