import { createLogger } from "../shared/logger.js";
import { createBuilderAgent } from "./agent.js";
import { loadAgentConfig } from "./config.js";

/**
 * runAgent is `pkgfarm agent`. The first SIGTERM (or SIGINT) drains: no new
 * work, running jobs finish, then exit. A second one gives the running jobs
 * back to the queue and exits at once.
 */
export async function runAgent(argv: readonly string[]): Promise<number> {
  const config = loadAgentConfig(argv, process.env);
  if ("errors" in config) {
    for (const line of config.errors) process.stderr.write(`pkgfarm agent: ${line}\n`);
    return 2;
  }
  const logger = createLogger("builder-agent", config.logLevel).child({ agentId: config.agentId });
  const agent = createBuilderAgent(config, logger);
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
