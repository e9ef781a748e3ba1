import { existsSync, readFileSync, statSync } from "node:fs";
import { arch, hostname, release, type } from "node:os";
import { join, resolve } from "node:path";
import { CLIENT_TLS_FLAGS, LOG_LEVELS, readClientTls, readConfig, type ClientTls } from "../shared/index.js";
import { parseSize } from "../shared/sizes.js";
import { measureHostResources, type HostResources } from "./host-resources.js";
import { isDirectory, isFile } from "../shared/file-kind.js";

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
  /** How builds run: the operator's build command, or pbulk's pkg-build on treeDir. Absent: "command". */
  readonly executor?: "command" | "pkgsrc";
  /** pkgsrc: the bootstrap kit restored into the slot's prefix before every build and scan (with a pkgsrc tree it also makes the agent scan with bmake). */
  readonly bootstrapKit?: string;
  /** How slots are contained. Absent: "none" (the command executor's traditional way). */
  readonly sandbox?: "namespace" | "chroot" | "none";
  /** Slot N's prefix, WRKOBJDIR, PACKAGES and DISTDIR are under <sandboxRoot>/slot-N. */
  readonly sandboxRoot?: string;
  /** chroot: one prepared root per slot. */
  readonly chrootDirs?: readonly string[];
  /** Lines appended to the kit's mk.conf at every reset (--mk-conf FILE), e.g. a PKG_FAIL_REASON. */
  readonly mkConfLines?: readonly string[];
  /** The later of the kit's and the --mk-conf file's modification times: the prefix's mk.conf gets it. */
  readonly mkConfMtimeMs?: number;
  /** pbulk's keep_wrkdir: a failed pkgsrc build's WRKDIR is saved under <workDir>/../kept/<PKGNAME>/. */
  readonly keepWrkdir?: boolean;
  /** pbulk's unprivileged_user for USE_DESTDIR builds; created when missing. Absent: "pkgfarm". */
  readonly buildUser?: string;
  /** Scans of a tree that is not pkgsrc: a command given locations (see command-scan.ts). */
  readonly scanCommand?: readonly string[];
  /** Limit for scanning one location. */
  readonly scanTimeoutMs?: number;
  /** CPUs, memory and work disk the agent gives builds (measured, or --cpus, --memory, --disk); absent: not said. */
  readonly resources?: HostResources;
}

/** Every flag of `pkgfarm agent`, with its variable and meaning, for --help. */
export const AGENT_FLAGS: ReadonlyArray<readonly [flag: string, env: string, meaning: string]> = [
  ["--dispatcher URL", "PKGFARM_DISPATCHER_URL", "the dispatcher (default http://127.0.0.1:7402)"],
  ["--id NAME", "PKGFARM_AGENT_ID", "agent id (default: the host name)"],
  ["--slots N", "PKGFARM_SLOTS", "jobs run at once, each in its own sandbox (default 1)"],
  ["--executor command|pkgsrc", "PKGFARM_EXECUTOR", "run --build-command per job, or build as pbulk's pkg-build does (default command)"],
  ["--tree DIR", "PKGFARM_TREE", "the package tree (pkgsrc: holding mk/bsd.pkg.mk) (default .)"],
  ["--bootstrap-kit FILE", "PKGFARM_BOOTSTRAP_KIT", "pkgsrc: tarball of usr/pkg restored before every build (required with --executor pkgsrc)"],
  ["--sandbox namespace|chroot|none", "PKGFARM_SANDBOX", "how slots are contained (default: namespace for pkgsrc, none for command)"],
  ["--sandbox-root DIR", "PKGFARM_SANDBOX_ROOT", "per-slot prefix, WRKOBJDIR, PACKAGES, DISTDIR under DIR/slot-N (default <work-dir>/../sandbox)"],
  ["--chroot-dirs A,B,...", "PKGFARM_CHROOT_DIRS", "with --sandbox chroot: one prepared root per slot"],
  ["--mk-conf FILE", "PKGFARM_MK_CONF", "lines appended to the kit's mk.conf at every reset"],
  ["--keep-wrkdir", "PKGFARM_KEEP_WRKDIR=yes", "keep a failed build's work directory (pbulk's keep_wrkdir)"],
  ["--build-user NAME", "PKGFARM_BUILD_USER", "unprivileged user for USE_DESTDIR builds, created if missing (default pkgfarm)"],
  ["--build-command CMD", "PKGFARM_BUILD_COMMAND", "command executor: the command that builds one package (JSON argv or words)"],
  ["--scan-command CMD", "PKGFARM_SCAN_COMMAND", "scans of a tree that is not pkgsrc: the command that scans locations"],
  ["--scan-timeout-seconds N", "PKGFARM_SCAN_TIMEOUT_SECONDS", "limit for scanning one location (default 600)"],
  ["--platform NAME", "PKGFARM_PLATFORM", "depgraph platform (default: from bmake with pkgsrc, else <os>-<os-release>-<arch>)"],
  ["--os, --os-release, --arch", "PKGFARM_OS, PKGFARM_OS_RELEASE, PKGFARM_ARCH", "pkgsrc's OPSYS, OS_VERSION, MACHINE_ARCH (default: this host's)"],
  ["--labels k=v,...", "PKGFARM_LABELS", "labels: shown with the agent, and matched by constraints' label:KEY=VALUE"],
  ["--label k=v", "", "one more label (repeatable)"],
  ["--cpus N", "PKGFARM_CPUS", "CPUs builds share, split between them as MAKE_JOBS (default: this host's)"],
  ["--memory SIZE", "PKGFARM_MEMORY", "memory builds share, e.g. 16G (default: this host's total)"],
  ["--disk SIZE", "PKGFARM_DISK", "disk builds share for their work, e.g. 200G (default: free space under --work-dir at start)"],
  ["--work-dir DIR", "PKGFARM_WORK_DIR", "per-job work directories (default var/agent/work)"],
  ["--cache-dir DIR", "PKGFARM_CACHE_DIR", "dependencies' packages by digest (default <work-dir>/../cache)"],
  ["--job-timeout-seconds N", "PKGFARM_JOB_TIMEOUT_SECONDS", "limit for one job (default 14400)"],
  ["--log-level LEVEL", "PKGFARM_LOG_LEVEL", "pino level (default info)"],
  ["--tls-ca, --tls-client-cert, --tls-client-key", "PKGFARM_TLS_CA, PKGFARM_TLS_CLIENT_CERT, PKGFARM_TLS_CLIENT_KEY", "trust and client certificate for an https:// dispatcher"],
  ["", "PKGFARM_AGENT_TOKEN(_FILE)", "the agent token (never a flag)"],
  ["--help", "", "this list"],
];

/** agentHelp is the text `pkgfarm agent --help` prints. */
export function agentHelp(): string {
  const width = Math.max(...AGENT_FLAGS.map(([f]) => f.length));
  return ["usage: pkgfarm agent [flags]", "", ...AGENT_FLAGS.map(([flag, env, meaning]) =>
    `  ${flag.padEnd(width)}  ${meaning}${env === "" ? "" : ` [${env}]`}`), ""].join("\n");
}

/** OPSYS and MACHINE_ARCH as pkgsrc spells them, from Node's names. */
export function hostPlatform(): { os: string; osRelease: string; arch: string } {
  const machine: Record<string, string> = { x64: "x86_64", arm64: "aarch64", ia32: "i386", arm: "earmv7hf", ppc64: "powerpc64", riscv64: "riscv64", s390x: "s390x" };
  return { os: type(), osRelease: release().replace(/[^A-Za-z0-9._-]/g, "_"), arch: machine[arch()] ?? arch() };
}

/** wantsHelp: the command line asks for --help (checked before anything else is). */
export function wantsHelp(argv: readonly string[]): boolean {
  return argv.includes("--help") || argv.includes("-h");
}

export function loadAgentConfig(argv: readonly string[], env: NodeJS.ProcessEnv): AgentConfig | { errors: string[] } {
  // --keep-wrkdir is the one flag without a value; the reader takes only valued ones.
  const keepWrkdirFlag = argv.includes("--keep-wrkdir");
  // --label may be given many times; the reader keeps one value per flag.
  const { rest, labelFlags } = takeLabelFlags(argv.filter((a) => a !== "--keep-wrkdir"));
  const read = readConfig(rest, env, [
    "cpus", "memory", "disk",
    "dispatcher", "id", "slots", "os", "os-release", "arch", "platform", "labels", "tree", "build-command", "work-dir", "cache-dir", "job-timeout-seconds", "log-level",
    "executor", "bootstrap-kit", "sandbox", "sandbox-root", "chroot-dirs", "mk-conf", "build-user", "scan-command", "scan-timeout-seconds",
    ...CLIENT_TLS_FLAGS,
  ]);
  const host = hostPlatform();
  const dispatcherUrl = read.string("dispatcher", "PKGFARM_DISPATCHER_URL", "http://127.0.0.1:7402");
  if (!/^https?:\/\/[^/\s]+\/?$/.test(dispatcherUrl)) read.errors.push(`--dispatcher (PKGFARM_DISPATCHER_URL) must be a URL like http://dispatcher:7402, not "${dispatcherUrl}"`);
  const executor = read.oneOf("executor", "PKGFARM_EXECUTOR", "command", ["command", "pkgsrc"] as const);
  const buildCommand = read.argv("build-command", "PKGFARM_BUILD_COMMAND", []);
  if (executor === "command" && buildCommand.length === 0) read.errors.push("--build-command (PKGFARM_BUILD_COMMAND) is required with --executor command: the command that builds one package (e.g. [\"node\", \"/path/build-one.mjs\"])");
  const treeDir = resolve(read.string("tree", "PKGFARM_TREE", "."));
  let bootstrapKit: string | undefined;
  const kit = read.string("bootstrap-kit", "PKGFARM_BOOTSTRAP_KIT", "");
  if (executor === "pkgsrc") {
    if (!existsSync(join(treeDir, "mk", "bsd.pkg.mk"))) read.errors.push(`--tree (PKGFARM_TREE) must be a pkgsrc tree with --executor pkgsrc: ${treeDir} has no mk/bsd.pkg.mk`);
    if (kit === "") read.errors.push("--bootstrap-kit (PKGFARM_BOOTSTRAP_KIT) is required with --executor pkgsrc: the tarball of usr/pkg restored before every build");
  }
  if (kit !== "") {
    if (!isFile(kit)) read.errors.push(`--bootstrap-kit (PKGFARM_BOOTSTRAP_KIT): ${kit} is not a file`);
    else bootstrapKit = resolve(kit);
  }
  const sandbox = read.oneOf("sandbox", "PKGFARM_SANDBOX", executor === "pkgsrc" ? "namespace" : "none", ["namespace", "chroot", "none"] as const);
  if (sandbox === "namespace" && process.platform !== "linux") read.errors.push(`--sandbox (PKGFARM_SANDBOX) namespace needs Linux (this is ${process.platform}); use chroot with --chroot-dirs, or none with one slot`);
  const chrootDirs = read.string("chroot-dirs", "PKGFARM_CHROOT_DIRS", "").split(",").map((d) => d.trim()).filter((d) => d !== "").map((d) => resolve(d));
  const mkConfPath = read.string("mk-conf", "PKGFARM_MK_CONF", "");
  let mkConfLines: string[] = [];
  let mkConfMtimeMs: number | undefined;
  if (mkConfPath !== "") {
    try {
      mkConfLines = readFileSync(mkConfPath, "utf8").split("\n").filter((l) => l.trim() !== "");
      mkConfMtimeMs = statSync(mkConfPath).mtimeMs;
    } catch (e) {
      read.errors.push(`--mk-conf (PKGFARM_MK_CONF): cannot read ${mkConfPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const keepEnv = env["PKGFARM_KEEP_WRKDIR"] ?? "";
  if (!["", "yes", "no"].includes(keepEnv)) read.errors.push(`PKGFARM_KEEP_WRKDIR must be yes or no, not "${keepEnv}"`);
  const scanCommand = read.argv("scan-command", "PKGFARM_SCAN_COMMAND", []);
  const labels: Record<string, string> = {};
  for (const pair of read.string("labels", "PKGFARM_LABELS", "").split(",").filter((p) => p.trim() !== "")) {
    const [key, value] = pair.split("=", 2);
    if (key === undefined || value === undefined || key.trim() === "") read.errors.push(`--labels (PKGFARM_LABELS) must be key=value pairs separated by commas, not "${pair}"`);
    else labels[key.trim()] = value.trim();
  }
  for (const pair of labelFlags) {
    const eq = pair.indexOf("=");
    if (eq <= 0) read.errors.push(`--label must be key=value, not "${pair}"`);
    else labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  const workDir = resolve(read.string("work-dir", "PKGFARM_WORK_DIR", "var/agent/work"));
  const measured = measureHostResources(workDir);
  const size = (flag: string, envName: string, fallback: number) => {
    const raw = read.string(flag, envName, "");
    if (raw === "") return fallback;
    const bytes = parseSize(raw);
    if (bytes === undefined || bytes <= 0) read.errors.push(`--${flag} (${envName}) must be a size such as 16G, 512M or 200GiB, not "${raw}"`);
    return bytes ?? fallback;
  };
  const resources: HostResources = {
    cpus: read.int("cpus", "PKGFARM_CPUS", measured.cpus, 1, 65_536),
    memoryBytes: size("memory", "PKGFARM_MEMORY", measured.memoryBytes),
    diskBytes: size("disk", "PKGFARM_DISK", measured.diskBytes),
  };
  const slots = read.int("slots", "PKGFARM_SLOTS", 1, 1, 1024);
  if (sandbox === "chroot") {
    if (chrootDirs.length !== slots) read.errors.push(`--chroot-dirs (PKGFARM_CHROOT_DIRS) must name one directory per slot: ${slots} slot(s), ${chrootDirs.length} director${chrootDirs.length === 1 ? "y" : "ies"}`);
    for (const dir of chrootDirs) if (!isDirectory(dir)) read.errors.push(`--chroot-dirs (PKGFARM_CHROOT_DIRS): ${dir} is not a directory`);
  } else if (chrootDirs.length > 0) {
    read.errors.push("--chroot-dirs (PKGFARM_CHROOT_DIRS) needs --sandbox chroot");
  }
  if (sandbox === "none" && executor === "pkgsrc" && slots > 1) read.errors.push(`--slots (PKGFARM_SLOTS) ${slots} needs a sandbox per slot: with --sandbox none every pkgsrc build uses the host's /usr/pkg, so only one slot`);
  const buildUser = read.string("build-user", "PKGFARM_BUILD_USER", "pkgfarm");
  if (!/^[a-z_][a-z0-9_-]*$/.test(buildUser)) read.errors.push(`--build-user (PKGFARM_BUILD_USER) must be a user name like pkgfarm, not "${buildUser}"`);
  const config: AgentConfig = {
    dispatcherUrl: dispatcherUrl.replace(/\/$/, ""),
    agentId: read.string("id", "PKGFARM_AGENT_ID", hostname()),
    slots,
    os: read.string("os", "PKGFARM_OS", host.os),
    osRelease: read.string("os-release", "PKGFARM_OS_RELEASE", host.osRelease),
    arch: read.string("arch", "PKGFARM_ARCH", host.arch),
    platform: read.string("platform", "PKGFARM_PLATFORM", ""),
    labels,
    treeDir,
    buildCommand,
    workDir,
    cacheDir: resolve(read.string("cache-dir", "PKGFARM_CACHE_DIR", `${workDir}/../cache`)),
    jobTimeoutMs: read.int("job-timeout-seconds", "PKGFARM_JOB_TIMEOUT_SECONDS", 4 * 3600, 1, 7 * 86400) * 1000,
    logLevel: read.oneOf("log-level", "PKGFARM_LOG_LEVEL", "info", LOG_LEVELS),
    tls: readClientTls(read, dispatcherUrl, "--dispatcher (PKGFARM_DISPATCHER_URL)"),
    token: read.secret("PKGFARM_AGENT_TOKEN"),
    executor,
    bootstrapKit,
    sandbox,
    sandboxRoot: resolve(read.string("sandbox-root", "PKGFARM_SANDBOX_ROOT", `${workDir}/../sandbox`)),
    chrootDirs,
    mkConfLines,
    mkConfMtimeMs: mkConfMtimeMs === undefined || bootstrapKit === undefined ? mkConfMtimeMs : Math.max(mkConfMtimeMs, statSync(bootstrapKit).mtimeMs),
    keepWrkdir: keepWrkdirFlag || keepEnv === "yes",
    buildUser,
    scanCommand: scanCommand.length > 0 ? scanCommand : undefined,
    scanTimeoutMs: read.int("scan-timeout-seconds", "PKGFARM_SCAN_TIMEOUT_SECONDS", 600, 1, 86400) * 1000,
    resources,
  };
  return read.errors.length > 0 ? { errors: read.errors } : config;
}

/** takeLabelFlags pulls every `--label k=v` (and `--label=k=v`) out of argv. */
function takeLabelFlags(argv: readonly string[]): { rest: string[]; labelFlags: string[] } {
  const rest: string[] = [];
  const labelFlags: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--label" && i + 1 < argv.length) labelFlags.push(argv[++i]!);
    else if (arg.startsWith("--label=")) labelFlags.push(arg.slice("--label=".length));
    else rest.push(arg);
  }
  return { rest, labelFlags };
}
