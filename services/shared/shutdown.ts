import type { Logger } from "pino";
import type { ConfigReader } from "./config.js";

/** Flags readShutdownGraceMs reads; list them in the service's readConfig call. */
export const SHUTDOWN_FLAGS = ["shutdown-grace-seconds"] as const;

/**
 * readShutdownGraceMs reads how long a service may take to stop after
 * SIGTERM. The default stays under Kubernetes' 30 s terminationGracePeriod,
 * so the service exits on its own before the kubelet's SIGKILL.
 */
export function readShutdownGraceMs(read: ConfigReader): number {
  return read.int("shutdown-grace-seconds", "PKGFARM_SHUTDOWN_GRACE_SECONDS", 20, 1, 3600) * 1000;
}

/**
 * serveUntilSignal waits for SIGTERM or SIGINT, then runs close with a
 * budget a little inside graceMs (its own cut-off comes first) and exits the
 * process with status 1 if close has not finished when graceMs is up. It
 * also returns when `until` settles: the service stopped on its own.
 */
export async function serveUntilSignal(options: {
  logger: Logger;
  graceMs: number;
  close(graceMs: number): Promise<void>;
  until?: Promise<unknown>;
}): Promise<void> {
  const { logger, graceMs } = options;
  await new Promise<void>((resolve, reject) => {
    void options.until?.then(() => resolve(), reject);
    const stop = (signal: string) => {
      logger.info({ signal, graceMs }, "shutting down");
      setTimeout(() => {
        logger.error({ graceMs }, "shutdown took too long; exiting");
        process.exit(1);
      }, graceMs).unref();
      // The server's own cut-off comes first, leaving time to exit cleanly.
      options.close(Math.floor(graceMs * 0.75)).then(resolve, reject);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
