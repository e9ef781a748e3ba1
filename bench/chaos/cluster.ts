// The chaos run's processes: each service is `node dist/services/cli/main.js
// <service> ...` in a process of its own, with its output appended to a log
// file that outlives it, so a SIGKILL loses nothing the process had written.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";

/** ManagedProcess is one service process the driver may kill, stop and start again. */
export interface ManagedProcess {
  readonly name: string;
  /** A process is running (it may be SIGSTOPped). */
  readonly up: boolean;
  /** SIGSTOPped and not yet continued. */
  readonly paused: boolean;
  /** CPU seconds (user + system, reaped children included) of every run of it so far, the current one read from /proc. */
  cpuSeconds(): number;
  /** Times it exited without being told to (a crash, or giving up on its own). */
  readonly unexpectedExits: readonly string[];
  /** Spawns it and waits until it serves (health SERVING), if it has a port. */
  start(): Promise<void>;
  /** SIGKILL; resolves once it has exited. */
  kill(): Promise<void>;
  pause(): void;
  resume(): void;
  /** SIGTERM, SIGKILL after graceMs; for the end of the run. */
  terminate(graceMs: number): Promise<void>;
}

export interface ManagedOptions {
  readonly name: string;
  readonly argv: readonly string[];
  readonly logFile: string;
  /** gRPC URL whose health check must say SERVING before start() resolves. */
  readonly healthUrl?: string;
  readonly readyTimeoutMs?: number;
  /** Called when the process exits on its own (not after kill or terminate). */
  readonly onUnexpectedExit?: (name: string, how: string) => void;
}

// Every live child, so a driver stopped by a signal leaves none behind.
const live = new Set<ChildProcess>();

/** killAllNow SIGKILLs every process started here that still runs (for the driver's own SIGINT/SIGTERM). */
export function killAllNow(): void {
  for (const c of live) {
    c.kill("SIGCONT");
    c.kill("SIGKILL");
  }
}

export function managedProcess(options: ManagedOptions): ManagedProcess {
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let expectingExit = false;
  let paused = false;
  const unexpectedExits: string[] = [];
  // CPU of runs that ended: read just before each kill, as /proc forgets a dead process.
  let pastCpu = 0;
  const currentCpu = () => (child?.pid === undefined ? 0 : procCpuSeconds(child.pid));

  const start = async () => {
    if (child !== undefined) throw new Error(`${options.name} is already running`);
    const fd = openSync(options.logFile, "a");
    const [program, ...args] = options.argv;
    const spawned = spawn(program!, args, { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    live.add(spawned);
    child = spawned;
    expectingExit = false;
    paused = false;
    exited = new Promise<void>((resolve) => {
      spawned.once("exit", (code, signal) => {
        live.delete(spawned);
        if (child === spawned) child = undefined;
        if (!expectingExit) {
          const how = `exit ${code ?? signal}`;
          unexpectedExits.push(how);
          options.onUnexpectedExit?.(options.name, how);
        }
        resolve();
      });
    });
    if (options.healthUrl !== undefined) await waitServing(options.name, options.healthUrl, () => child === spawned, options.readyTimeoutMs ?? 60_000);
  };

  const signal = async (sig: NodeJS.Signals) => {
    const c = child;
    if (c === undefined) return;
    expectingExit = true;
    pastCpu += currentCpu();
    if (paused) c.kill("SIGCONT");
    c.kill(sig);
    await exited;
  };

  return {
    name: options.name,
    get up() {
      return child !== undefined;
    },
    get paused() {
      return paused;
    },
    unexpectedExits,
    cpuSeconds: () => pastCpu + currentCpu(),
    start,
    kill: () => signal("SIGKILL"),
    pause() {
      if (child === undefined || paused) return;
      child.kill("SIGSTOP");
      paused = true;
    },
    resume() {
      if (child === undefined || !paused) return;
      child.kill("SIGCONT");
      paused = false;
    },
    async terminate(graceMs) {
      const c = child;
      if (c === undefined) return;
      const hard = setTimeout(() => c.kill("SIGKILL"), graceMs);
      await signal("SIGTERM");
      clearTimeout(hard);
    },
  };
}

/** procCpuSeconds reads utime, stime, cutime and cstime of a process (Linux); 0 where there is no /proc. */
function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14-17 of proc(5), counted from 3 after the command name.
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
    return ticks / 100;
  } catch {
    return 0;
  }
}

/** waitServing polls grpc.health.v1 until SERVING; fails if the process is gone or the deadline passes. */
async function waitServing(name: string, url: string, alive: () => boolean, timeoutMs: number): Promise<void> {
  const health = createClient(Health, createPkgfarmTransport(url));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive()) throw new Error(`${name} exited before it served`);
    try {
      const { status } = await health.check({ service: "" }, { timeoutMs: 1000 });
      if (status === HealthCheckResponse_ServingStatus.SERVING) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${name} did not serve within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
