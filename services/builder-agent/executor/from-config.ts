// executorsFromConfig wires the agent's executors from its configuration:
// the one place that knows which executor, sandbox, scanner and build user a
// set of flags means. Everything it returns is then composed with the
// wrappers by the agent.

import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { agentEnvironment, type AgentExecutors } from "../agent.js";
import type { AgentConfig } from "../config.js";
import { sandboxSupport } from "../sandbox.js";
import { ensureBuildUser } from "./build-user.js";
import { createCommandExecutor } from "./command-executor.js";
import type { Executor } from "./executor.js";
import { createCommandScanner } from "./command-scanner.js";
import { pkgsrcUpToDate } from "./pkgsrc-up-to-date.js";
import { createPkgsrcExecutor } from "./pkgsrc-executor.js";
import { createPkgsrcScanner } from "./pkgsrc-scanner.js";
import { createScanExecutor } from "./scan-executor.js";
import { createSlotSandbox, type SlotSandbox } from "./slot-sandbox.js";

/** ExecutorSetupFailed: the host cannot run what the configuration asks for. */
export class ExecutorSetupFailed extends Error {
  override readonly name = "ExecutorSetupFailed";
}

export async function executorsFromConfig(config: AgentConfig, logger: Logger): Promise<AgentExecutors & { sandbox: SlotSandbox | undefined }> {
  const kind = config.sandbox ?? "none";
  if (kind === "namespace") {
    const support = sandboxSupport();
    if (!support.namespace) throw new ExecutorSetupFailed(`--sandbox namespace does not work on this host: ${support.why ?? "unknown reason"}`);
  }
  const sandbox = kind === "none" && config.executor !== "pkgsrc" ? undefined
    : createSlotSandbox({ kind, root: config.sandboxRoot ?? join(config.workDir, "..", "sandbox"), chrootDirs: config.chrootDirs ?? [] });
  const baseEnv = agentEnvironment();
  if (config.executor === "pkgsrc") {
    const kit = config.bootstrapKit!;
    const root = process.getuid?.() === 0;
    const buildUser = root ? await ensureBuildUser(config.buildUser ?? "pkgfarm") : undefined;
    if (buildUser !== undefined) logger.info({ user: buildUser.name, uid: buildUser.uid }, "USE_DESTDIR builds run as this user");
    const mkConfLines = config.mkConfLines ?? [];
    const mkConfMtimeMs = config.mkConfMtimeMs;
    const build = createPkgsrcExecutor({
      treeDir: config.treeDir,
      bootstrapKit: kit,
      sandbox: sandbox!,
      mkConfLines,
      mkConfMtimeMs,
      keepWrkdirDir: config.keepWrkdir === true ? join(config.workDir, "..", "kept") : undefined,
      buildUser,
      timeoutMs: config.jobTimeoutMs,
      baseEnv,
    });
    const scan = createScanExecutor(createPkgsrcScanner({ treeDir: config.treeDir, bootstrapKit: kit, sandbox: sandbox!, mkConfLines, mkConfMtimeMs, timeoutMs: config.scanTimeoutMs ?? 600_000 }));
    return { build, scan, sandbox, checkUpToDate: pkgsrcUpToDate(config.treeDir) };
  }
  const build = createCommandExecutor({ command: config.buildCommand, treeDir: config.treeDir, timeoutMs: config.jobTimeoutMs, baseEnv, ...(sandbox === undefined ? {} : { sandbox }) });
  // Scans: with bmake when the tree is pkgsrc and there is a kit to scan
  // with (in the slot sandboxes), else with the operator's scan command.
  let scan: Executor | undefined;
  if (config.bootstrapKit !== undefined && existsSync(join(config.treeDir, "mk", "bsd.pkg.mk"))) {
    const scanSandbox = sandbox ?? createSlotSandbox({ kind, root: config.sandboxRoot ?? join(config.workDir, "..", "sandbox"), chrootDirs: config.chrootDirs ?? [] });
    scan = createScanExecutor(createPkgsrcScanner({ treeDir: config.treeDir, bootstrapKit: config.bootstrapKit, sandbox: scanSandbox, mkConfLines: config.mkConfLines ?? [], mkConfMtimeMs: config.mkConfMtimeMs, timeoutMs: config.scanTimeoutMs ?? 600_000 }));
  } else if (config.scanCommand !== undefined) {
    scan = createScanExecutor(createCommandScanner({ command: config.scanCommand, treeDir: config.treeDir, timeoutMs: config.scanTimeoutMs ?? 600_000, env: baseEnv }));
  }
  return { build, sandbox, ...(scan === undefined ? {} : { scan }) };
}
