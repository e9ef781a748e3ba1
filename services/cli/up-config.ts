// The configuration of `pkgfarm up`, parsed once at the edge (STYLE.md §9):
// its flags, its --help text, and the checks that turn a bad value into one
// clear line before anything starts.

import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { hostPlatform } from "../builder-agent/config.js";
import { LOG_LEVELS, readConfig } from "../shared/index.js";
import { isDirectory, isFile } from "../shared/file-kind.js";

const PACKAGE_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const EXAMPLES = join(PACKAGE_ROOT, "examples");

/** UpConfig is everything `pkgfarm up` reads from its command line and environment. */
export interface UpConfig {
  /** The package tree: the bundled example tree by default; a pkgsrc tree with --executor pkgsrc. */
  readonly treeDir: string;
  /** command: the example scan helper and a build command; pkgsrc: scans and builds with bmake, as pbulk does. */
  readonly executor: "command" | "pkgsrc";
  /** command executor: depgraph's scan helper, run once with --all over the tree. */
  readonly scanHelper: readonly string[];
  /** command executor: the command that builds one package. */
  readonly buildCommand: readonly string[];
  /** pkgsrc: the kit restored into every slot's prefix before each build and scan. */
  readonly bootstrapKit: string;
  /** A limited list (pbulk's limited_list), read at the edge; empty builds the whole tree. */
  readonly limitTo: readonly string[];
  /** The file it came from, for messages; "" without --limit. */
  readonly limitFile: string;
  /** pkgsrc: agent N's slots have their prefix, WRKOBJDIR, PACKAGES and DISTDIR under <sandboxRoot>/local-N/slot-M. */
  readonly sandboxRoot: string;
  /** pkgsrc: lines appended to the kit's mk.conf at every reset; "" for none. */
  readonly mkConf: string;
  readonly dataDir: string;
  readonly agents: number;
  readonly slots: number;
  readonly incremental: boolean;
  /** Exit 1 when any package failed to build, as CI wants; otherwise a finished build exits 0. */
  readonly strict: boolean;
  /** "" with pkgsrc means: ask bmake (OPSYS-OS_VERSION-MACHINE_ARCH of the kit). */
  readonly platform: string;
  readonly logLevel: string;
}

/** Every flag of `pkgfarm up`, with its variable and meaning, for --help. */
export const UP_FLAGS: ReadonlyArray<readonly [flag: string, env: string, meaning: string]> = [
  ["--tree DIR", "PKGFARM_TREE", "the package tree (default: the bundled example tree; with --executor pkgsrc a pkgsrc tree holding mk/bsd.pkg.mk)"],
  ["--executor command|pkgsrc", "PKGFARM_EXECUTOR", "build with --build-command (default), or scan and build with bmake as pbulk does, in a sandbox per slot"],
  ["--bootstrap-kit FILE", "PKGFARM_BOOTSTRAP_KIT", "pkgsrc: tarball of usr/pkg restored before every build (required with --executor pkgsrc)"],
  ["--limit FILE", "PKGFARM_LIMIT", "build only this limited list (one location or PKGNAME a line) and what it needs; pkgsrc scans its closure first"],
  ["--agents N", "PKGFARM_AGENTS", "builder agents in this process (default 3; 1 with --executor pkgsrc)"],
  ["--slots N", "PKGFARM_SLOTS", "jobs each agent runs at once (default 1)"],
  ["--sandbox-root DIR", "PKGFARM_SANDBOX_ROOT", "pkgsrc: the slots' prefixes and work directories (default <data-dir>/sandbox)"],
  ["--mk-conf FILE", "PKGFARM_MK_CONF", "pkgsrc: lines appended to the kit's mk.conf at every reset"],
  ["--incremental", "", "skip packages whose binary package is up to date"],
  ["--strict", "", "exit 1 when any package failed"],
  ["--data-dir DIR", "PKGFARM_DATA_DIR", "logs, packages, reports and service logs (default var/up)"],
  ["--platform NAME", "PKGFARM_PLATFORM", "platform name (default: from bmake with pkgsrc, else <os>-<os-release>-<arch>)"],
  ["--scan-helper CMD", "PKGFARM_SCAN_HELPER", "command executor: depgraph's scan helper (default the example's scan-one.mjs)"],
  ["--build-command CMD", "PKGFARM_BUILD_COMMAND", "command executor: builds one package (default the example's build-one.mjs)"],
  ["--log-level LEVEL", "PKGFARM_LOG_LEVEL", "pino level of the service log <data-dir>/pkgfarm.log (default info)"],
  ["--help", "", "this list"],
];

/** upHelp is the text `pkgfarm up --help` prints. */
export function upHelp(): string {
  const width = Math.max(...UP_FLAGS.map(([f]) => f.length));
  return [
    "usage: pkgfarm up [flags]",
    "",
    "Bulk-builds a tree locally: depgraph, the dispatcher and builder agents in one process, a scan, one build,",
    "progress while it runs and a report at the end. With no flags: the bundled example tree.",
    "  pkgfarm up --tree DIR --executor pkgsrc --bootstrap-kit FILE [--limit FILE] [--slots N]   builds real pkgsrc",
    "",
    ...UP_FLAGS.map(([flag, env, meaning]) => `  ${flag.padEnd(width)}  ${meaning}${env === "" ? "" : ` [${env}]`}`),
    "",
  ].join("\n");
}

/** wantsUpHelp: the command line asks for --help (checked before anything else is). */
export function wantsUpHelp(argv: readonly string[]): boolean {
  return argv.includes("--help") || argv.includes("-h");
}

/**
 * loadUpConfig parses flags (which win) and PKGFARM_* variables and returns
 * every problem at once, one line each.
 */
export function loadUpConfig(argv: readonly string[], env: NodeJS.ProcessEnv): UpConfig | { errors: string[] } {
  const booleans = ["--incremental", "--strict"];
  const read = readConfig(argv.filter((a) => !booleans.includes(a)), env,
    ["tree", "executor", "bootstrap-kit", "limit", "sandbox-root", "mk-conf", "scan-helper", "build-command", "data-dir", "agents", "slots", "platform", "log-level"]);
  const executor = read.oneOf("executor", "PKGFARM_EXECUTOR", "command", ["command", "pkgsrc"] as const);
  const pkgsrc = executor === "pkgsrc";
  const treeDir = resolve(read.string("tree", "PKGFARM_TREE", pkgsrc ? "" : join(EXAMPLES, "tree")));
  if (pkgsrc) {
    if (read.string("tree", "PKGFARM_TREE", "") === "") read.errors.push("--tree (PKGFARM_TREE) is required with --executor pkgsrc: the pkgsrc tree to build");
    else if (!isFile(join(treeDir, "mk", "bsd.pkg.mk"))) read.errors.push(`--tree (PKGFARM_TREE) must be a pkgsrc tree with --executor pkgsrc: ${treeDir} has no mk/bsd.pkg.mk`);
  } else if (!isDirectory(treeDir)) {
    read.errors.push(`--tree (PKGFARM_TREE): ${treeDir} is not a directory`);
  }
  const kit = read.string("bootstrap-kit", "PKGFARM_BOOTSTRAP_KIT", "");
  if (pkgsrc && kit === "") read.errors.push("--bootstrap-kit (PKGFARM_BOOTSTRAP_KIT) is required with --executor pkgsrc: the tarball of usr/pkg restored before every build");
  else if (kit !== "" && !isFile(kit)) read.errors.push(`--bootstrap-kit (PKGFARM_BOOTSTRAP_KIT): ${kit} is not a file`);
  else if (kit !== "" && !pkgsrc) read.errors.push("--bootstrap-kit (PKGFARM_BOOTSTRAP_KIT) needs --executor pkgsrc");
  const limitFile = read.string("limit", "PKGFARM_LIMIT", "");
  let limitTo: string[] = [];
  if (limitFile !== "") {
    try {
      limitTo = readFileSync(limitFile, "utf8").split("\n").map((line) => line.replace(/#.*/, "").trim()).filter((line) => line !== "");
      if (limitTo.length === 0) read.errors.push(`--limit (PKGFARM_LIMIT): ${limitFile} names no location (it would build the whole tree; leave --limit out for that)`);
    } catch (e) {
      read.errors.push(`--limit (PKGFARM_LIMIT): cannot read ${limitFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const mkConf = read.string("mk-conf", "PKGFARM_MK_CONF", "");
  if (mkConf !== "" && !pkgsrc) read.errors.push("--mk-conf (PKGFARM_MK_CONF) needs --executor pkgsrc");
  else if (mkConf !== "" && !isFile(mkConf)) read.errors.push(`--mk-conf (PKGFARM_MK_CONF): ${mkConf} is not a file`);
  const sandboxRootFlag = read.string("sandbox-root", "PKGFARM_SANDBOX_ROOT", "");
  if (sandboxRootFlag !== "" && !pkgsrc) read.errors.push("--sandbox-root (PKGFARM_SANDBOX_ROOT) needs --executor pkgsrc");
  const dataDir = resolve(read.string("data-dir", "PKGFARM_DATA_DIR", "var/up"));
  const host = hostPlatform();
  const config: UpConfig = {
    treeDir,
    executor,
    scanHelper: read.argv("scan-helper", "PKGFARM_SCAN_HELPER", [process.execPath, join(EXAMPLES, "bin", "scan-one.mjs")]),
    buildCommand: read.argv("build-command", "PKGFARM_BUILD_COMMAND", [process.execPath, join(EXAMPLES, "bin", "build-one.mjs")]),
    bootstrapKit: kit === "" ? "" : resolve(kit),
    limitTo,
    limitFile,
    sandboxRoot: resolve(sandboxRootFlag === "" ? join(dataDir, "sandbox") : sandboxRootFlag),
    mkConf: mkConf === "" ? "" : resolve(mkConf),
    dataDir,
    agents: read.int("agents", "PKGFARM_AGENTS", pkgsrc ? 1 : 3, 1, 64),
    slots: read.int("slots", "PKGFARM_SLOTS", 1, 1, 64),
    incremental: argv.includes("--incremental"),
    strict: argv.includes("--strict"),
    platform: read.string("platform", "PKGFARM_PLATFORM", pkgsrc ? "" : `${host.os}-${host.osRelease}-${host.arch}`),
    logLevel: read.oneOf("log-level", "PKGFARM_LOG_LEVEL", "info", LOG_LEVELS),
  };
  return read.errors.length > 0 ? { errors: read.errors } : config;
}
