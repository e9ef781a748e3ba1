// npm run bench:scan — prints one JSON object: scanning the real pkgsrc tree
// (../shared/pkgsrc) through pkgfarm (depgraph, dispatcher and pkgsrc agents
// as separate processes, scan jobs over gRPC) beside the same
// `bmake pbulk-index` calls run directly in shell loops in one sandbox each,
// in the same run:
//
//   direct1 / pkgfarm1: the limited list's 94 closure locations, one loop / one agent
//   direct2 / pkgfarm2: the same split over two loops / two agents
//   closure:            StartScan SCAN_SCOPE_CLOSURE of the 79-location list on a
//                       fresh platform with two agents: rounds and seconds to closed
//
// overhead = pkgfarm / direct - 1 for each width. The machine is noisy; compare
// figures of one run only.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import { DepGraphService, ScanScope, ScanState, type Scan } from "../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService } from "../gen/pkgfarm/v1/dispatcher_pb.js";
import { resetPrefix, sandboxCommand, slotDirs } from "../services/builder-agent/sandbox.js";
import { loadDepGraphConfig } from "../services/depgraph/config.js";
import { startDepGraphServer } from "../services/depgraph/server.js";
import { startDispatcherServer } from "../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../services/shared/index.js";
import { BOOTSTRAP_KIT, EXPECTED_DIR, limitedList, pkgsrcTree, pkgsrcUnavailable } from "../test/support/pkgsrc.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (what: string) => process.stderr.write(`[${new Date().toISOString()}] ${what}\n`);

function closureLocations(): string[] {
  const [, ...rows] = readFileSync(join(EXPECTED_DIR, "closure-resolved.tsv"), "utf8").trimEnd().split("\n");
  return [...new Set(rows.map((r) => r.split("\t")[1]!))].sort();
}

/** One shell loop of `bmake pbulk-index` over the locations, in a sandbox with the kit's prefix. */
async function directLoop(tree: string, root: string, slot: number, locations: readonly string[]): Promise<void> {
  const dirs = slotDirs(root, slot);
  mkdirSync(dirs.prefix, { recursive: true });
  await resetPrefix(dirs.prefix, BOOTSTRAP_KIT);
  const script = 'cd "$1"; shift; for l in "$@"; do /usr/pkg/bin/bmake -C "$l" pbulk-index >/dev/null 2>&1 || echo "failed $l" >&2; done';
  const argv = sandboxCommand("namespace", { binds: [{ source: dirs.prefix, target: "/usr/pkg" }] }, ["/bin/sh", "-c", script, "loop", tree, ...locations]);
  await new Promise<void>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "inherit"], env: { PATH: "/usr/pkg/bin:/usr/sbin:/usr/bin:/sbin:/bin" } });
    child.once("error", reject);
    child.once("close", () => resolve());
  });
}

async function waitForScan(depgraph: Client<typeof DepGraphService>, scanId: string): Promise<Scan> {
  const deadline = Date.now() + 1_800_000;
  for (;;) {
    const { scan } = await depgraph.getScan({ scanId });
    if (scan!.state !== ScanState.RUNNING) return scan!;
    if (Date.now() > deadline) throw new Error(`scan ${scanId} still running after 30 min`);
    await sleep(100);
  }
}

async function main(): Promise<void> {
  const why = pkgsrcUnavailable();
  if (why !== undefined) throw new Error(why);
  const tree = pkgsrcTree();
  const dir = mkdtempSync(join(tmpdir(), "pkgfarm-bench-scan-"));
  const logger = pino({ level: "silent" });
  const config = loadDepGraphConfig(["--port", "0"], {});
  if ("errors" in config) throw new Error(config.errors.join("; "));
  const depgraphServer = await startDepGraphServer(config, logger);
  const dispatcher = await startDispatcherServer({
    host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
    heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 20_000, leaseMs: 600_000, logLevel: "silent",
  }, logger);
  const depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
  const agentsView = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url));
  const children: ChildProcess[] = [];
  const startAgents = async (platform: string, count: number): Promise<ChildProcess[]> => {
    const started = Array.from({ length: count }, (_, i) => {
      const id = `${platform}-${i + 1}`;
      const child = spawn(process.execPath, [CLI, "agent", "--dispatcher", dispatcher.url, "--id", id, "--slots", "1", "--executor", "pkgsrc",
        "--tree", tree, "--bootstrap-kit", BOOTSTRAP_KIT, "--sandbox-root", join(dir, id), "--work-dir", join(dir, id, "work"),
        "--platform", platform, "--log-level", "warn"], { stdio: ["ignore", "ignore", "inherit"] });
      children.push(child);
      return child;
    });
    for (const deadline = Date.now() + 120_000; ;) {
      const connected = (await agentsView.listAgents({})).agents.filter((a) => a.platform === platform).length;
      if (connected === count) return started;
      if (Date.now() > deadline) throw new Error(`${count} agents of ${platform} did not connect`);
      await sleep(200);
    }
  };
  const stopAgents = async (agents: ChildProcess[]) => {
    for (const a of agents) a.kill("SIGKILL");
    await Promise.all(agents.map((a) => a.exitCode !== null || a.signalCode !== null ? undefined : new Promise((r) => a.once("exit", r))));
  };
  const viaPkgfarm = async (platform: string, agents: number, locations: readonly string[], scope = ScanScope.LOCATIONS) => {
    const running = await startAgents(platform, agents);
    const t0 = performance.now();
    const { scan } = await depgraph.startScan({ platform, scope, locations: [...locations], locationsPerJob: 8 });
    const done = await waitForScan(depgraph, scan!.id);
    const seconds = (performance.now() - t0) / 1000;
    await stopAgents(running);
    if (done.locationsFailed > 0) say(`${platform}: ${done.locationsFailed} locations failed: ${done.problems.slice(0, 3).map((p) => p.message).join("; ")}`);
    return { seconds, scan: done };
  };

  try {
    const locations = closureLocations();
    const half = Math.ceil(locations.length / 2);
    say(`direct, one loop over ${locations.length} locations`);
    let t0 = performance.now();
    await directLoop(tree, join(dir, "direct"), 0, locations);
    const direct1 = (performance.now() - t0) / 1000;
    say("pkgfarm, one agent");
    const pkgfarm1 = await viaPkgfarm("Bench-one-x86_64", 1, locations);
    say("pkgfarm, two agents");
    const pkgfarm2 = await viaPkgfarm("Bench-two-x86_64", 2, locations);
    say("direct, two loops");
    t0 = performance.now();
    await Promise.all([directLoop(tree, join(dir, "direct"), 0, locations.slice(0, half)), directLoop(tree, join(dir, "direct"), 1, locations.slice(half))]);
    const direct2 = (performance.now() - t0) / 1000;
    say("closure of the limited list, two agents");
    const closure = await viaPkgfarm("Bench-closure-x86_64", 2, limitedList(), ScanScope.CLOSURE);
    const rate = (n: number, s: number) => Number((n / s).toFixed(2));
    process.stdout.write(`${JSON.stringify({
      locations: locations.length,
      direct1Seconds: Number(direct1.toFixed(1)), pkgfarm1Seconds: Number(pkgfarm1.seconds.toFixed(1)),
      direct2Seconds: Number(direct2.toFixed(1)), pkgfarm2Seconds: Number(pkgfarm2.seconds.toFixed(1)),
      locationsPerSecond: { direct1: rate(locations.length, direct1), pkgfarm1: rate(locations.length, pkgfarm1.seconds), direct2: rate(locations.length, direct2), pkgfarm2: rate(locations.length, pkgfarm2.seconds) },
      overhead1: Number((pkgfarm1.seconds / direct1 - 1).toFixed(3)),
      overhead2: Number((pkgfarm2.seconds / direct2 - 1).toFixed(3)),
      failed: { pkgfarm1: pkgfarm1.scan.locationsFailed, pkgfarm2: pkgfarm2.scan.locationsFailed },
      closure: { listed: limitedList().length, rounds: closure.scan.rounds, locations: closure.scan.locationsTotal, seconds: Number(closure.seconds.toFixed(1)), failed: closure.scan.locationsFailed },
    })}\n`);
  } finally {
    await stopAgents(children);
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
