import { createLogger } from "../shared/logger.js";
import { loadDispatcherConfig } from "./config.js";
import { startDispatcherServer } from "./server.js";

/** SHUTDOWN_GRACE_MS is shorter than Kubernetes' default 30 s grace period. */
const SHUTDOWN_GRACE_MS = 20_000;

/** runDispatcher is `pkgfarm dispatcher`: parse configuration, serve until SIGTERM or SIGINT. */
export async function runDispatcher(argv: readonly string[]): Promise<number> {
  const config = loadDispatcherConfig(argv, process.env);
  if ("errors" in config) {
    for (const line of config.errors) process.stderr.write(`pkgfarm dispatcher: ${line}\n`);
    return 2;
  }
  const logger = createLogger("dispatcher", config.logLevel);
  const running = await startDispatcherServer(config, logger);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, "shutting down");
      setTimeout(() => {
        logger.error("shutdown took too long; exiting");
        process.exit(1);
      }, SHUTDOWN_GRACE_MS).unref();
      void running.close().then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return 0;
}
