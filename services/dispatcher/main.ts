import { createLogger } from "../shared/logger.js";
import { serveUntilSignal } from "../shared/index.js";
import { loadDispatcherConfig } from "./config.js";
import { startDispatcherServer } from "./server.js";

/**
 * runDispatcher is `pkgfarm dispatcher`: parse configuration, serve until
 * SIGTERM or SIGINT, then stop within the grace period (health NOT_SERVING
 * first; agents are told to reconnect and keep their jobs).
 */
export async function runDispatcher(argv: readonly string[]): Promise<number> {
  const config = loadDispatcherConfig(argv, process.env);
  if ("errors" in config) {
    for (const line of config.errors) process.stderr.write(`pkgfarm dispatcher: ${line}\n`);
    return 2;
  }
  const logger = createLogger("dispatcher", config.logLevel);
  const running = await startDispatcherServer(config, logger);
  await serveUntilSignal({ logger, graceMs: config.shutdownGraceMs ?? 20_000, close: (graceMs) => running.close(graceMs) });
  logger.info("dispatcher stopped");
  return 0;
}
