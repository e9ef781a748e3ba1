import type { Logger } from "pino";
import { createLogger } from "../shared/logger.js";
import { serveUntilSignal } from "../shared/index.js";
import { loadDepGraphConfig } from "./config.js";
import { startDepGraphServer } from "./server.js";

/**
 * runDepGraph is `pkgfarm depgraph`: parse configuration, serve until SIGTERM
 * or SIGINT, then stop within the grace period (health NOT_SERVING first).
 */
export async function runDepGraph(argv: readonly string[]): Promise<number> {
  const config = loadDepGraphConfig(argv, process.env);
  if ("errors" in config) {
    for (const line of config.errors) process.stderr.write(`pkgfarm depgraph: ${line}\n`);
    return 2;
  }
  const logger: Logger = createLogger("depgraph", config.logLevel);
  const running = await startDepGraphServer(config, logger);
  // Another depgraph taking the state over stops this one on its own: exit
  // non-zero so a supervisor notices.
  let fenced = false;
  const fencing = running.stopped.then(() => (fenced = true));
  await serveUntilSignal({ logger, graceMs: config.shutdownGraceMs ?? 20_000, close: (graceMs) => running.close(graceMs), until: fencing });
  logger.info("depgraph stopped");
  return fenced ? 1 : 0;
}
