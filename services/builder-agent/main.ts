import { createLogger } from "../shared/logger.js";
import { createBuilderAgent } from "./agent.js";
import { agentHelp, loadAgentConfig, wantsHelp, type AgentConfig } from "./config.js";
import { BMAKE } from "./executor/pkgsrc-executor.js";
import { executorsFromConfig } from "./executor/from-config.js";
import { readPlatform } from "./pkgsrc/scan.js";

/**
 * runAgent is `pkgfarm agent`. The first SIGTERM (or SIGINT) drains: no new
 * work, running jobs finish, then exit. A second one gives the running jobs
 * back to the queue and exits at once.
 */
export async function runAgent(argv: readonly string[]): Promise<number> {
  if (wantsHelp(argv)) {
    process.stdout.write(agentHelp());
    return 0;
  }
  const loaded = loadAgentConfig(argv, process.env);
  if ("errors" in loaded) {
    for (const line of loaded.errors) process.stderr.write(`pkgfarm agent: ${line}\n`);
    return 2;
  }
  let config: AgentConfig = loaded;
  const logger = createLogger("builder-agent", config.logLevel).child({ agentId: config.agentId });
  let executors;
  try {
    executors = await executorsFromConfig(config, logger);
    // An agent with a pkgsrc tree takes its platform from bmake (issue 9):
    // OPSYS, OS_VERSION and MACHINE_ARCH of the kit it builds with.
    if (config.executor === "pkgsrc" && config.platform === "") {
      const sandbox = executors.sandbox!;
      await sandbox.reset(0, config.bootstrapKit!, config.mkConfLines ?? []);
      const chrootDir = sandbox.chrootDir(0);
      const p = await readPlatform({ treeDir: config.treeDir, bmake: BMAKE, sandbox: sandbox.kind, binds: sandbox.binds(0), timeoutMs: 60_000, ...(chrootDir === undefined ? {} : { chrootDir }) });
      config = { ...config, platform: p.platform, os: p.opsys, osRelease: p.osVersion, arch: p.machineArch };
      logger.info({ platform: p.platform }, "platform from bmake");
    }
  } catch (e) {
    process.stderr.write(`pkgfarm agent: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  const agent = createBuilderAgent(config, logger, executors);
  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    logger.info({ signal, running: agent.runningJobs().length }, signals === 1 ? "draining; send it again to give jobs back and stop now" : "giving jobs back and stopping");
    if (signals === 1) agent.drain();
    else agent.stopNow();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  await agent.run();
  logger.info("agent stopped");
  return 0;
}
