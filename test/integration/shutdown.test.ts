import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { DepGraphService, type ImportScanRequest } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { createChannel, createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { connectRawAgent } from "../support/raw-agent.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");

interface Started {
  readonly child: ChildProcess;
  readonly port: number;
  readonly healthPort: number;
  /** Log lines (JSON) so far. */
  readonly lines: Record<string, unknown>[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Runs `pkgfarm <service>` as its own process and waits for its "listening" log line. */
async function startService(service: "depgraph" | "dispatcher", args: string[]): Promise<Started> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("PKGFARM_")));
  const child = spawn(process.execPath, [CLI, service, "--port", "0", "--health-port", "0", "--log-level", "info", ...args],
    { env, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal, at: Date.now() })));
  const lines: Record<string, unknown>[] = [];
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      lines.push(entry);
      if (entry["msg"] === `${service} listening`) resolve(entry);
    });
    void exited.then(({ code }) => reject(new Error(`${service} exited (${code}) before listening`)));
  });
  return { child, port: listening["port"] as number, healthPort: listening["healthPort"] as number, lines, exited };
}

/** Collects the statuses a Health.Watch stream reports until it ends. */
function watchHealth(healthPort: number): { statuses: ServingStatus[]; ended: Promise<void>; next(status: ServingStatus): Promise<void> } {
  const statuses: ServingStatus[] = [];
  const waiters: (() => void)[] = [];
  const client = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${healthPort}` }));
  const ended = (async () => {
    try {
      for await (const { status } of client.watch({ service: "" })) {
        statuses.push(status);
        for (const wake of waiters.splice(0)) wake();
      }
    } catch {
      // The server ending the stream as it goes away is expected.
    }
  })();
  return {
    statuses,
    ended,
    next: (status) => new Promise<void>((resolve) => {
      const check = () => (statuses.includes(status) ? resolve() : waiters.push(check));
      check();
    }),
  };
}

const children: ChildProcess[] = [];
after(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
});

test("SIGTERM: depgraph turns health NOT_SERVING, cuts off a stuck client, and exits 0 within the grace period", async () => {
  const graceMs = 2000;
  const depgraph = await startService("depgraph", ["--shutdown-grace-seconds", String(graceMs / 1000)]);
  children.push(depgraph.child);
  const health = watchHealth(depgraph.healthPort);
  await health.next(ServingStatus.SERVING);
  // A client that opens ImportScan and never finishes it.
  const never = createChannel<ImportScanRequest>();
  const client = createClient(DepGraphService, createPkgfarmTransport(`http://127.0.0.1:${depgraph.port}`));
  const stuck = client.importScan(never).then(() => "finished", (e: unknown) => ConnectError.from(e));
  await new Promise((r) => setTimeout(r, 100));

  const signalled = Date.now();
  depgraph.child.kill("SIGTERM");
  await health.next(ServingStatus.NOT_SERVING);
  const exit = await depgraph.exited;
  assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null });
  const tookMs = exit.at - signalled;
  assert.ok(tookMs < graceMs, `exited ${tookMs} ms after SIGTERM; the grace is ${graceMs} ms`);
  assert.deepEqual(health.statuses, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  await health.ended;
  assert.ok((await stuck) instanceof ConnectError, "the stuck call was cut off");
  const messages = depgraph.lines.map((l) => l["msg"]);
  assert.ok(messages.includes("shutting down") && messages.includes("depgraph stopped"), JSON.stringify(messages));
  never.close();
});

test("SIGTERM: the dispatcher tells its agents to reconnect elsewhere and exits 0 at once when nothing is stuck", async () => {
  const dir = mkdtempSync(join(tmpdir(), "pkgfarm-sigterm-"));
  const depgraphServer = await startTestDepGraph();
  try {
    const dispatcher = await startService("dispatcher", ["--depgraph", depgraphServer.url, "--data-dir", dir, "--shutdown-grace-seconds", "10"]);
    children.push(dispatcher.child);
    const health = watchHealth(dispatcher.healthPort);
    await health.next(ServingStatus.SERVING);
    const agent = connectRawAgent(`http://127.0.0.1:${dispatcher.port}`, { agentId: "sigterm-agent", platform: "Stop-1.0-x86_64" });
    await agent.waitFor((m) => m.message.case === "welcome");

    const signalled = Date.now();
    dispatcher.child.kill("SIGTERM");
    const ended = ConnectError.from(await agent.ended);
    assert.equal(ended.code, Code.Unavailable);
    assert.match(ended.message, /shutting down/);
    const exit = await dispatcher.exited;
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null });
    assert.ok(exit.at - signalled < 5000, `exited ${exit.at - signalled} ms after SIGTERM`);
    assert.deepEqual(health.statuses, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  } finally {
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
