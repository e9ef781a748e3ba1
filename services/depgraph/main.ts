import type { Logger } from "pino";
import { createLogger } from "../shared/logger.js";
import { loadDepGraphConfig } from "./config.js";
import { startDepGraphServer } from "./server.js";

/** SHUTDOWN_GRACE_MS is shorter than Kubernetes' default 30 s grace period. */
const SHUTDOWN_GRACE_MS = 20_000;

/** runDepGraph is `pkgfarm depgraph`: parse configuration, serve until SIGTERM or SIGINT. */
export async function runDepGraph(argv: readonly string[]): Promise<number> {
  const config = loadDepGraphConfig(argv, process.env);
  if ("errors" in config) {
    for (const line of config.errors) process.stderr.write(`pkgfarm depgraph: ${line}\n`);
    return 2;
  }
  const logger: Logger = createLogger("depgraph", config.logLevel);
  const running = await startDepGraphServer(config, logger);
  let fenced = false;
  void running.stopped.then(() => (fenced = true));
  await new Promise<void>((resolve) => {
    // Another depgraph took the state over: exit non-zero so a supervisor notices.
    void running.stopped.then(resolve);
    const stop = (signal: string) => {
      logger.info({ signal }, "shutting down");
      const hard = setTimeout(() => {
        logger.error("shutdown took too long; exiting");
        process.exit(1);
      }, SHUTDOWN_GRACE_MS);
      hard.unref();
      void running.close().then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return fenced ? 1 : 0;
}
