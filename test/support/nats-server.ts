import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * TestNatsServer is one real nats-server with JetStream, on a loopback port of its
 * own and a store in a fresh temporary directory, so tests never see (or disturb)
 * a NATS the machine may already run on 4222, nor each other.
 */
export interface TestNatsServer {
  /** nats://127.0.0.1:<port>, for connect({ servers: url }). */
  readonly url: string;
  readonly port: number;
  /** The JetStream store directory (-sd); removed by stop(). */
  readonly storeDir: string;
  /** Terminates the server and removes the store. Safe to call more than once. */
  stop(): Promise<void>;
  /** SIGKILL, keeping the store: a crash, for testing what survives one. */
  kill(): Promise<void>;
  /** Starts again on the same port with the same store (after kill()). */
  restart(): Promise<void>;
}

const HOST = "127.0.0.1";
// The line nats-server logs once its client listener accepts connections.
const READY = "Server is ready";
const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
// Only the port search can race with another process; the rest fails the same way twice.
const PORT_ATTEMPTS = 5;

// Servers still running when the test process exits, killed so none outlives it.
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** natsServerBinary prefers the distribution's /usr/sbin/nats-server, else PATH. */
function natsServerBinary(): string {
  return existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server";
}

/**
 * freePort asks the kernel for an unused loopback port. The port is free only until
 * someone else takes it, so startNatsServer retries with a new one if the server
 * cannot listen.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        srv.close();
        reject(new Error("could not read the port of a probe listener"));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

/** NatsServerStartError says why nats-server did not become ready, with its last output. */
export class NatsServerStartError extends Error {
  override readonly name = "NatsServerStartError";
  constructor(
    message: string,
    readonly output: string,
    options?: ErrorOptions,
  ) {
    super(`${message}\n--- nats-server output ---\n${output}`, options);
  }
}

/** spawnReady runs nats-server and resolves once it logs READY; rejects if it exits first. */
function spawnReady(port: number, storeDir: string): Promise<ChildProcess> {
  const binary = natsServerBinary();
  const args = ["-a", HOST, "-p", String(port), "-js", "-sd", storeDir];
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    live.add(child);
    let output = "";
    let settled = false;
    const settle = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err === undefined) {
        resolve(child);
      } else {
        child.kill("SIGKILL");
        reject(err);
      }
    };
    const onData = (chunk: Buffer): void => {
      // Keep only the tail: enough to explain a failure, bounded for chatty servers.
      output = (output + chunk.toString("utf8")).slice(-8192);
      if (output.includes(READY)) settle(undefined);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("error", (err) => {
      live.delete(child);
      settle(new NatsServerStartError(`cannot run ${binary}`, output, { cause: err }));
    });
    child.once("exit", (code, signal) => {
      live.delete(child);
      settle(
        new NatsServerStartError(
          `${binary} ${args.join(" ")} exited before it was ready (code ${code}, signal ${signal})`,
          output,
        ),
      );
    });
    const timer = setTimeout(
      () => settle(new NatsServerStartError(`${binary} was not ready within ${READY_TIMEOUT_MS} ms`, output)),
      READY_TIMEOUT_MS,
    );
  });
}

/** waitExit resolves when child has exited, sending SIGKILL if it takes longer than graceMs. */
async function waitExit(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
    live.delete(child);
  }
}

/**
 * startNatsServer starts a nats-server with JetStream for one test (or file) and
 * resolves once it accepts connections. Call stop() in after()/afterEach().
 */
export async function startNatsServer(): Promise<TestNatsServer> {
  const storeDir = mkdtempSync(join(tmpdir(), "pkgfarm-nats-"));
  let child: ChildProcess | undefined;
  let port = 0;
  try {
    for (let attempt = 1; child === undefined; attempt++) {
      port = await freePort();
      try {
        child = await spawnReady(port, storeDir);
      } catch (err) {
        if (attempt >= PORT_ATTEMPTS) throw err;
      }
    }
  } catch (err) {
    rmSync(storeDir, { recursive: true, force: true });
    throw err;
  }

  let current: ChildProcess | undefined = child;
  let stopped = false;
  return {
    url: `nats://${HOST}:${port}`,
    port,
    storeDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      const c = current;
      current = undefined;
      if (c !== undefined) await waitExit(c, "SIGTERM", STOP_GRACE_MS);
      rmSync(storeDir, { recursive: true, force: true });
    },
    async kill() {
      const c = current;
      current = undefined;
      if (c !== undefined) await waitExit(c, "SIGKILL", STOP_GRACE_MS);
    },
    async restart() {
      if (stopped) throw new Error("restart() after stop(): the store is gone");
      if (current !== undefined) await waitExit(current, "SIGTERM", STOP_GRACE_MS);
      current = undefined;
      // Same port, so clients configured with url reconnect to the same address.
      current = await spawnReady(port, storeDir);
    },
  };
}
