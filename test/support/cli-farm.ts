// A farm on loopback for the CLI tests: real depgraph (the example tree
// imported) and a real dispatcher (its build publisher writing reports), with
// TLS and tokens when asked; and two ways to run `pkgfarm`: as a child
// process, as an operator does, or in process, for the many calls a test
// makes (each child costs a Node start-up).
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { runFarmCommand } from "../../services/cli/farm-commands.js";
import { createTestPki, type TestPki } from "./certs.js";
import { startTestDepGraph } from "./depgraph-server.js";

export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const TREE = join(ROOT, "examples", "tree");
const BUILD_ONE = [process.execPath, join(ROOT, "examples", "bin", "build-one.mjs")];

export const OPERATOR_TOKEN = "operator-0123456789abcdef0123456789";
export const READ_TOKEN = "reader-0123456789abcdef01234567890";
export const AGENT_TOKEN = "agent-0123456789abcdef012345678901";

export interface CliFarmOptions {
  /** Serve TLS from a throw-away CA; clients then need --tls-ca. */
  readonly tls?: boolean;
  /** Operator and agent tokens, and reads that need the read (or operator) token. */
  readonly tokens?: boolean;
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliFarm {
  readonly dir: string;
  readonly depgraph: RunningDepGraph;
  readonly dispatcher: RunningDispatcher;
  readonly pki: TestPki | undefined;
  /** The flags and environment that reach this farm, without any token. */
  readonly flags: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Starts a real builder agent process of the platform (the example tree's build command; with scans, its scan command too). */
  startAgent(id: string, platform: string, slots?: number, scans?: boolean): ChildProcess;
  /** `node dist/services/cli/main.js ARGS` with the farm's flags and env (plus extra env). */
  child(args: readonly string[], env?: NodeJS.ProcessEnv): Promise<CliResult>;
  /** The same command run in this process; farmFlags false leaves the farm's URLs and CA out. */
  run(args: readonly string[], env?: NodeJS.ProcessEnv, farmFlags?: boolean): Promise<CliResult>;
  close(): Promise<void>;
}

/** Collects what a command writes. */
function capture(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      done();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

export async function startCliFarm(options: CliFarmOptions = {}): Promise<CliFarm> {
  const dir = mkdtempSync(join(tmpdir(), "pkgfarm-cli-"));
  const scan = execFileSync(process.execPath, [join(ROOT, "examples", "bin", "scan-one.mjs"), "--all"], { encoding: "utf8" });
  writeFileSync(join(dir, "scan.txt"), scan);
  const pki = options.tls ? createTestPki(dir) : undefined;
  const serverTls = pki === undefined ? undefined : { cert: pki.server.cert, key: pki.server.key };
  const tokens = options.tokens ? { operatorToken: OPERATOR_TOKEN, readToken: READ_TOKEN, readAuth: "token" as const } : {};
  const depgraph = await startTestDepGraph({ importFile: join(dir, "scan.txt"), ...(serverTls && { tls: serverTls }), ...tokens });
  const dispatcher = await startDispatcherServer({
    host: "127.0.0.1",
    port: 0,
    depgraphUrl: depgraph.url,
    packagesRoot: join(dir, "packages"),
    logsRoot: dir,
    reportsRoot: join(dir, "reports"),
    repositoryRoot: join(dir, "repository"),
    heartbeatIntervalMs: 500,
    heartbeatTimeoutMs: 10_000,
    leaseMs: 60_000,
    logLevel: "silent",
    publishIntervalMs: 200,
    ...(serverTls && { tls: serverTls, depgraphTls: { ca: pki!.ca } }),
    ...(options.tokens && { operatorToken: OPERATOR_TOKEN, agentToken: AGENT_TOKEN, readToken: READ_TOKEN, readAuth: "token" as const }),
  }, pino({ level: "silent" }));
  const flags = ["--depgraph", depgraph.url, "--dispatcher", dispatcher.url, ...(pki ? ["--tls-ca", pki.caPath] : [])];
  // Nothing of the test runner's own PKGFARM_* settings may leak into a command.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PKGFARM_")));
  const children: ChildProcess[] = [];
  return {
    dir,
    depgraph,
    dispatcher,
    pki,
    flags,
    env,
    startAgent(id, platform, slots = 2, scans = false) {
      const child = spawn(process.execPath, [CLI, "agent", "--dispatcher", dispatcher.url, "--id", id, "--platform", platform, "--tree", TREE, "--slots", String(slots),
        ...(scans ? ["--scan-command", JSON.stringify([process.execPath, join(ROOT, "examples", "bin", "scan-one.mjs")])] : []),
        "--build-command", JSON.stringify(BUILD_ONE), "--work-dir", join(dir, id, "work"), "--cache-dir", join(dir, id, "cache"), "--log-level", "warn",
        ...(pki ? ["--tls-ca", pki.caPath] : [])],
      { stdio: ["ignore", "ignore", "inherit"], env: { ...env, ...(options.tokens && { PKGFARM_AGENT_TOKEN: AGENT_TOKEN }) } });
      children.push(child);
      return child;
    },
    child(args, extra = {}) {
      const [command, ...rest] = args;
      return new Promise((resolve) => {
        execFile(process.execPath, [CLI, command!, ...rest, ...flags], { env: { ...env, ...extra }, timeout: 60_000 }, (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof (error as { code?: unknown }).code === "number" ? (error as { code: number }).code : -1;
          resolve({ code, stdout, stderr });
        });
      });
    },
    async run(args, extra = {}, farmFlags = true) {
      const [command, ...rest] = args;
      const out = capture();
      const err = capture();
      const code = await runFarmCommand(command!, [...rest, ...(farmFlags ? flags : [])], { out: out.stream, err: err.stream, env: { ...env, ...extra } });
      return { code, stdout: out.text(), stderr: err.text() };
    },
    async close() {
      for (const child of children) child.kill("SIGKILL");
      await dispatcher.close();
      await depgraph.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
