// npm run chaos — depgraph (state in JetStream KV), a real nats-server, a
// dispatcher and several builder agents, each a process of its own, build a
// synthetic tree while this driver SIGKILLs and restarts each of them,
// SIGSTOPs agents and publishes change events. When the time is up it lets
// every build finish and checks that nothing was lost or done twice (see
// bench/chaos/checks.ts). Prints one JSON object; progress goes to stderr.
//
//   node dist/bench/chaos.bench.js [--minutes 3] [--packages 5000] [--agents 6] [--slots 2]
//     [--seed N] [--min-ms 5] [--max-ms 60] [--settle-seconds 240] [--depgraph-lease-seconds 10] [--build-share 1]
//     [--no-faults] [--keep]
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { createClient, type Client } from "@connectrpc/connect";
import { connect, StorageType, type NatsConnection } from "nats";
import { BuildState, DepGraphService, JobState, type Job } from "../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService } from "../gen/pkgfarm/v1/dispatcher_pb.js";
import type { ScanRecord } from "../services/depgraph/core/scan-record.js";
import { META_CONSUMER, META_STREAM } from "../services/depgraph/meta-events.js";
import { createPkgfarmTransport } from "../services/shared/index.js";
import { freePort, startNatsServer, type TestNatsServer } from "../test/support/nats-server.js";
import { checkChaos, TERMINAL_STATES, type CheckedBuild, type ExpectedChange, type JobEvent } from "./chaos/checks.js";
import { killAllNow, managedProcess, type ManagedProcess } from "./chaos/cluster.js";
import { chaosRecord, formatRecords, generateChaosTree } from "./chaos/tree.js";
import { seededRandom } from "./simulate.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const BUILD_ONE = join(ROOT, "bench", "chaos", "build-one.sh");
const PLATFORM = "Chaos-1.0-x86_64";
const EVENTS_STREAM = "CHAOS_JOB_EVENTS";
const execFileP = promisify(execFile);

const log = (text: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] chaos: ${text}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Options {
  minutes: number;
  packages: number;
  agents: number;
  slots: number;
  seed: number;
  minMs: number;
  maxMs: number;
  settleSeconds: number;
  faults: boolean;
  keep: boolean;
  /** depgraph's --lease-seconds: the deadline a restored lease gets (core/depgraph.ts restoreBuild), not the 10 s the dispatcher asks for. */
  depgraphLeaseSeconds: number;
  /** Share of the tree's locations the first build is limited to (with what they need); 1 builds the whole tree. */
  buildShare: number;
}

function readOptions(): Options {
  const { values } = parseArgs({
    options: {
      minutes: { type: "string", default: "3" }, packages: { type: "string", default: "5000" }, agents: { type: "string", default: "6" },
      slots: { type: "string", default: "2" }, seed: { type: "string", default: String(Date.now() % 100_000) }, "min-ms": { type: "string", default: "5" },
      "max-ms": { type: "string", default: "60" }, "settle-seconds": { type: "string", default: "240" }, "no-faults": { type: "boolean", default: false },
      keep: { type: "boolean", default: false }, "depgraph-lease-seconds": { type: "string", default: "10" },
      "build-share": { type: "string", default: "1" },
    },
    strict: true,
  });
  const num = (name: keyof typeof values, min: number) => {
    const n = Number(values[name]);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, not "${values[name]}"`);
    return n;
  };
  return {
    minutes: num("minutes", 0), packages: num("packages", 10), agents: num("agents", 1), slots: num("slots", 1), seed: num("seed", 0),
    minMs: num("min-ms", 0), maxMs: num("max-ms", 1), settleSeconds: num("settle-seconds", 1), faults: !values["no-faults"], keep: values.keep === true,
    depgraphLeaseSeconds: num("depgraph-lease-seconds", 1), buildShare: Math.min(1, num("build-share", 0.001)),
  };
}

/** Faults by kind, as the JSON reports them. */
type FaultKind = "agentKill" | "agentStop" | "dispatcherKill" | "depgraphKill" | "natsKill" | "changeEvents";
const FAULT_WEIGHTS: readonly [FaultKind, number][] = [
  ["agentKill", 4], ["agentStop", 4], ["dispatcherKill", 1], ["depgraphKill", 1], ["natsKill", 1], ["changeEvents", 3],
];

async function main(): Promise<void> {
  const options = readOptions();
  const random = seededRandom(options.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const between = (lo: number, hi: number) => lo + random() * (hi - lo);
  const work = mkdtempSync(join(tmpdir(), "pkgfarm-chaos-"));
  const logs = join(work, "logs");
  mkdirSync(logs);
  log(`work directory ${work}, seed ${options.seed}`);

  // The tree, the packages chosen to fail, and the build command's list of them.
  const tree = generateChaosTree({ packages: options.packages, cycles: 8, prefailShare: 0.015, failShare: 0.02, random });
  const scanFile = join(work, "scan.txt");
  writeFileSync(scanFile, formatRecords(tree.records));
  const failList = join(work, "failing.txt");
  writeFileSync(failList, [...tree.failing].join("\n") + "\n");

  const nats: TestNatsServer = await startNatsServer();
  const depgraphPort = await freePort();
  const dispatcherPort = await freePort();
  const depgraphUrl = `http://127.0.0.1:${depgraphPort}`;
  const dispatcherUrl = `http://127.0.0.1:${dispatcherPort}`;
  const dataDir = join(work, "dispatcher");
  const crashes: string[] = [];
  let ending = false;
  let natsDown = false;
  // A process is under at most one fault at a time (faults on different ones
  // overlap), and is started by one restart at a time.
  const busy = new Set<string>();
  const restarting = new Set<string>();
  // A process that exits on its own is started again, as a supervisor would.
  const onUnexpectedExit = (name: string, how: string) => {
    crashes.push(`${name}: ${how}`);
    log(`${name} exited on its own (${how})`);
    if (ending) return;
    const p = all.find((x) => x.name === name);
    if (p !== undefined && !restarting.has(name) && !busy.has(name)) void sleep(1000).then(() => (p.up || restarting.has(name) ? undefined : restart(p)));
  };
  const depgraph = managedProcess({
    name: "depgraph", logFile: join(logs, "depgraph.log"), healthUrl: depgraphUrl, onUnexpectedExit, readyTimeoutMs: 120_000,
    argv: [process.execPath, CLI, "depgraph", "--port", String(depgraphPort), "--nats", nats.url, "--state", "nats-kv", "--state-bucket", "chaos",
      "--max-losses", "10", "--shutdown-grace-seconds", "5", "--lease-seconds", String(options.depgraphLeaseSeconds)],
  });
  const dispatcher = managedProcess({
    name: "dispatcher", logFile: join(logs, "dispatcher.log"), healthUrl: dispatcherUrl, onUnexpectedExit,
    argv: [process.execPath, CLI, "dispatcher", "--port", String(dispatcherPort), "--depgraph", depgraphUrl, "--data-dir", dataDir,
      "--heartbeat-seconds", "1", "--heartbeat-timeout-seconds", "3", "--lease-seconds", "10", "--shutdown-grace-seconds", "5"],
  });
  const agents: ManagedProcess[] = [];
  for (let i = 1; i <= options.agents; i++) {
    const dir = join(work, `agent-${i}`);
    mkdirSync(join(dir, "tree"), { recursive: true });
    agents.push(managedProcess({
      name: `agent-${i}`, logFile: join(logs, `agent-${i}.log`), onUnexpectedExit,
      argv: [process.execPath, CLI, "agent", "--dispatcher", dispatcherUrl, "--id", `chaos-agent-${i}`, "--slots", String(options.slots),
        "--platform", PLATFORM, "--tree", join(dir, "tree"), "--work-dir", join(dir, "work"), "--cache-dir", join(dir, "cache"),
        "--job-timeout-seconds", "120", "--build-command", JSON.stringify(["/bin/sh", BUILD_ONE, failList, String(options.minMs), String(options.maxMs)])],
    }));
  }
  const all: ManagedProcess[] = [depgraph, dispatcher, ...agents];
  const restart = async (p: ManagedProcess) => {
    restarting.add(p.name);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          if (!p.up) await p.start();
          return;
        } catch (e) {
          log(`${p.name} did not start (attempt ${attempt}): ${(e as Error).message}`);
          await p.kill();
          if (ending && attempt >= 5) throw e;
          await sleep(1000);
        }
      }
    } finally {
      restarting.delete(p.name);
    }
  };

  const depgraphClient: Client<typeof DepGraphService> = createClient(DepGraphService, createPkgfarmTransport(depgraphUrl));
  const dispatcherClient: Client<typeof DispatcherService> = createClient(DispatcherService, createPkgfarmTransport(dispatcherUrl));
  let nc: NatsConnection | undefined;
  const faults: Record<FaultKind, number> = { agentKill: 0, agentStop: 0, dispatcherKill: 0, depgraphKill: 0, natsKill: 0, changeEvents: 0 };
  const builds: string[] = [];
  try {
    // Job transitions are core NATS (at most once); a file-backed stream of
    // our own keeps every one that reached the server, across its restarts.
    nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: "chaos-driver" });
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: EVENTS_STREAM, subjects: ["pkgfarm.build.>"], storage: StorageType.File });

    log(`starting depgraph, dispatcher and ${options.agents} agents (${options.slots} slots each)`);
    await depgraph.start();
    const imported = await execFileP(process.execPath, [CLI, "import", "--server", depgraphUrl, scanFile], { maxBuffer: 64 << 20 });
    log(`imported ${tree.records.length} records: ${imported.stdout.trim().split("\n").slice(0, 3).join(" | ")}`);
    await dispatcher.start();
    await Promise.all(agents.map((a) => a.start()));
    // The faults start once every agent has said hello: on a busy machine a
    // Node process takes seconds to start, and a run that begins with no
    // agents measures that.
    for (const until = Date.now() + 60_000; ;) {
      const connected = await dispatcherClient.listAgents({}, { timeoutMs: 5000 }).then((r) => r.agents.length, () => 0);
      if (connected >= agents.length) break;
      if (Date.now() > until) throw new Error(`only ${connected} of ${agents.length} agents connected within 60 s`);
      await sleep(250);
    }

    const started = performance.now();
    const faultUntil = Date.now() + options.minutes * 60_000;
    const createBuild = async (limitTo: string[]) => {
      for (;;) {
        try {
          const { build } = await depgraphClient.createBuild({ platform: PLATFORM, limitTo }, { timeoutMs: 30_000 });
          builds.push(build!.id);
          log(`build ${build!.id}: ${build!.totalJobs} jobs${limitTo.length > 0 ? ` (limited to ${limitTo.length} locations)` : ""}`);
          return build!.id;
        } catch (e) {
          log(`CreateBuild failed (${(e as Error).message}); retrying`);
          await sleep(1000);
        }
      }
    };
    let current = await createBuild(options.buildShare >= 1 ? [] : tree.records.filter(() => random() < options.buildShare).map((r) => r.location));
    const buildStarted = new Map<string, number>([[current, performance.now()]]);

    // Change events: each publish replaces a few locations; the last event
    // for a location is what the tree must hold at the end.
    let nextNew = options.packages;
    const byLocation = new Map<string, ScanRecord[]>();
    for (const r of tree.records) byLocation.set(r.location, [r]);
    const expected = new Map<string, ExpectedChange>();
    let bumps = 0;
    let publishing = Promise.resolve();
    const publishChanges = async () => {
      const changed: ScanRecord[] = [];
      // One record per location and event: two for one location in one file
      // would be one event whose outcome depends on which record wins.
      const taken = new Set<string>();
      const n = 1 + Math.floor(random() * 5);
      for (let k = 0; k < n; k++) {
        const kind = random();
        if (kind < 0.2) {
          // A new package at a new location, needing a few existing ones.
          const deps = [Math.floor(random() * options.packages), Math.floor(random() * options.packages)];
          changed.push(chaosRecord(nextNew++, "1.0", [...new Set(deps)]));
          continue;
        }
        const old = pick(tree.records);
        if (taken.has(old.location)) continue;
        taken.add(old.location);
        const now = byLocation.get(old.location)![0]!;
        if (kind < 0.7) {
          // A version bump: a new PKGNAME at the same location.
          changed.push({ ...now, pkgname: `${now.pkgname.replace(/nb\d+$/, "")}nb${++bumps}` });
        } else {
          // One more dependency on a package below it.
          const below = Math.floor(random() * Number(old.pkgname.match(/^chaos(\d+)/)![1]!));
          const dep = { pattern: `chaos${below}>=1.0`, location: chaosRecord(below, "1.0", []).location };
          if (now.dependencies.some((d) => d.location === dep.location) || below === 0) continue;
          changed.push({ ...now, dependencies: [...now.dependencies, dep] });
        }
      }
      if (changed.length === 0) return;
      const file = join(work, `change-${faults.changeEvents + 1}.txt`);
      writeFileSync(file, formatRecords(changed));
      for (let attempt = 1; ; attempt++) {
        try {
          await execFileP(process.execPath, [CLI, "publish", "--nats", nats.url, "--records", file], { timeout: 30_000 });
          break;
        } catch (e) {
          if (attempt === 1) log(`publish failed (${(e as Error).message.split("\n")[0]}); retrying until NATS takes it`);
          await sleep(1000);
        }
      }
      for (const r of changed) {
        byLocation.set(r.location, [r]);
        expected.set(r.location, { location: r.location, packages: new Map([[r.pkgname, r.dependencies.map((d) => `${d.pattern}:../../${d.location}`)]]) });
      }
    };

    // The faults, one at a time, each undone after a short while.
    const killAndRestart = async (p: ManagedProcess) => {
      await p.kill();
      await sleep(between(300, 3000));
      await restart(p);
    };
    const inject = async (kind: FaultKind) => {
      const free = (xs: readonly ManagedProcess[]) => xs.filter((x) => x.up && !busy.has(x.name));
      const target = kind === "agentKill" || kind === "agentStop" ? pick(free(agents))
        : kind === "dispatcherKill" ? free([dispatcher])[0] : kind === "depgraphKill" ? free([depgraph])[0] : undefined;
      if ((target === undefined && kind !== "natsKill" && kind !== "changeEvents") || (kind === "natsKill" && natsDown)) return;
      faults[kind]++;
      if (target !== undefined) busy.add(target.name);
      try {
        switch (kind) {
          case "agentKill":
          case "dispatcherKill":
          case "depgraphKill":
            return await killAndRestart(target!);
          case "agentStop":
            target!.pause();
            // Sometimes shorter, sometimes longer than the 3 s heartbeat timeout.
            await sleep(between(500, 6000));
            return target!.resume();
          case "natsKill":
            natsDown = true;
            await nats.kill();
            await sleep(between(500, 4000));
            for (;;) {
              try {
                await nats.restart();
                natsDown = false;
                return;
              } catch (e) {
                log(`nats-server did not restart: ${(e as Error).message.split("\n")[0]}`);
                await sleep(1000);
              }
            }
          case "changeEvents":
            // One publish at a time, so the last one for a location is the last one NATS has.
            return await (publishing = publishing.then(publishChanges));
        }
      } finally {
        if (target !== undefined) busy.delete(target.name);
      }
    };
    const weightSum = FAULT_WEIGHTS.reduce((s, [, w]) => s + w, 0);
    const drawFault = (): FaultKind => {
      let r = random() * weightSum;
      for (const [kind, w] of FAULT_WEIGHTS) if ((r -= w) < 0) return kind;
      return "agentKill";
    };

    // While faults run: when a build finishes early, the next one starts,
    // limited to a share of the tree that fits the time left.
    const finishedAt = new Map<string, number>();
    const watchBuilds = async () => {
      while (Date.now() < faultUntil) {
        await sleep(1000);
        const state = await depgraphClient.getBuild({ buildId: current }, { timeoutMs: 5000 }).then((r) => r.build?.state, () => undefined);
        if (state !== BuildState.FINISHED) continue;
        finishedAt.set(current, performance.now());
        const seconds = (performance.now() - buildStarted.get(current)!) / 1000;
        const leftSeconds = (faultUntil - Date.now()) / 1000;
        log(`build ${current} finished in ${seconds.toFixed(1)} s; ${leftSeconds.toFixed(0)} s of faults left`);
        if (leftSeconds < 15) break;
        const share = Math.min(1, (0.5 * leftSeconds) / seconds);
        const limit = tree.records.filter(() => random() < share * 0.4).map((r) => r.location);
        current = await createBuild(limit);
        buildStarted.set(current, performance.now());
      }
    };
    const watching = watchBuilds();
    if (options.faults) {
      while (Date.now() < faultUntil) {
        await sleep(between(1000, 4000));
        if (Date.now() >= faultUntil) break;
        const kind = drawFault();
        log(`fault: ${kind}`);
        // Faults overlap: a kill may come while another process is still down.
        void inject(kind).catch((e) => log(`fault ${kind} failed: ${(e as Error).message}`));
      }
    } else {
      await sleep(Math.max(0, faultUntil - Date.now()));
    }
    await watching;

    // Settle: everything up and running, then every build must finish.
    log("faults over; letting every build finish");
    const settleUntil = Date.now() + options.settleSeconds * 1000;
    // Restarts in flight finish on their own; a stopped agent is continued.
    while ((natsDown || !all.every((p) => p.up)) && Date.now() < settleUntil) {
      for (const p of all) p.resume();
      await sleep(500);
    }
    for (const p of all) p.resume();
    const unfinished = async () => {
      const { builds: listed } = await depgraphClient.listBuilds({ platform: PLATFORM }, { timeoutMs: 5000 });
      return listed.filter((b) => b.state !== BuildState.FINISHED && b.state !== BuildState.CANCELLED);
    };
    let left = await unfinished().catch(() => undefined);
    while (left === undefined || left.length > 0) {
      if (Date.now() > settleUntil) break;
      await sleep(1000);
      left = await unfinished().catch(() => undefined);
    }
    const buildSeconds = (performance.now() - started) / 1000;
    log(`builds settled after ${buildSeconds.toFixed(1)} s (${left?.length ?? "?"} unfinished)`);

    // Change events: wait until the durable consumer has nothing left.
    const unapplied = async () => {
      const info = await jsm.consumers.info(META_STREAM, META_CONSUMER);
      return info.num_pending + info.num_ack_pending;
    };
    let pending = await unapplied().catch(() => -1);
    for (const until = Date.now() + 30_000; pending !== 0 && Date.now() < until; pending = await unapplied().catch(() => -1)) await sleep(500);
    // The agents' jobs: the dispatcher hands results on in batches; give it a moment to empty.
    const agentJobs = async () => {
      const { agents: listed } = await dispatcherClient.listAgents({}, { timeoutMs: 5000 });
      return listed.flatMap((a) => a.running.map((j) => `${a.hello?.agentId}: ${j.buildId}/${j.pkgname}`));
    };
    let held = await agentJobs().catch(() => ["ListAgents failed"]);
    for (const until = Date.now() + 15_000; held.length > 0 && Date.now() < until; held = await agentJobs().catch(() => ["ListAgents failed"])) await sleep(500);

    // The facts.
    const checked: CheckedBuild[] = [];
    for (const id of builds) {
      const { build } = await depgraphClient.getBuild({ buildId: id });
      const jobs: Job[] = [];
      let pageToken = "";
      do {
        const page = await depgraphClient.listJobs({ buildId: id, pageSize: 1000, pageToken });
        jobs.push(...page.jobs);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      checked.push({
        id, state: BuildState[build!.state] === undefined ? String(build!.state) : `BUILD_STATE_${BuildState[build!.state]}`,
        totalJobs: build!.totalJobs, jobCounts: build!.jobCounts,
        jobs: jobs.map((j) => ({
          pkgname: j.pkgname, state: `JOB_STATE_${JobState[j.state]}`, reason: j.reason,
          binaryPackage: j.binaryPackage === undefined ? undefined : { fileName: j.binaryPackage.fileName, sha256: j.binaryPackage.sha256, sizeBytes: Number(j.binaryPackage.sizeBytes) },
        })),
      });
    }
    const events = await readJobEvents(nc);
    const allDir = join(dataDir, "packages", PLATFORM, "All");
    const packageFiles = new Map<string, { sha256: string; sizeBytes: number }>();
    for (const name of readdirSync(allDir)) {
      if (!name.endsWith(".tgz")) continue;
      const bytes = readFileSync(join(allDir, name));
      packageFiles.set(name, { sha256: createHash("sha256").update(bytes).digest("hex"), sizeBytes: bytes.length });
    }
    const treeAt = new Map<string, Map<string, readonly string[]>>();
    for (const location of expected.keys()) {
      const { packages } = await depgraphClient.listPackages({ location });
      treeAt.set(location, new Map(packages.map((p) => [p.pkgname, p.dependencyPatterns])));
    }
    const verdict = checkChaos({ builds: checked, events, packageFiles, agentJobs: held, failing: tree.failing, expectedChanges: [...expected.values()], treeAt, unappliedEvents: pending });

    const states: Record<string, number> = {};
    for (const b of checked) for (const j of b.jobs) states[j.state] = (states[j.state] ?? 0) + 1;
    const failedReasons: Record<string, number> = {};
    for (const b of checked) {
      for (const j of b.jobs) {
        if (j.state !== "JOB_STATE_FAILED" || tree.failing.has(j.pkgname)) continue;
        const reason = j.reason.replace(/chaos\d+-[\w.]+/g, "PKG").slice(0, 120);
        failedReasons[reason] = (failedReasons[reason] ?? 0) + 1;
      }
    }
    const built = (states["JOB_STATE_SUCCEEDED"] ?? 0) + (states["JOB_STATE_FAILED"] ?? 0);
    const terminal = Object.entries(states).filter(([s]) => TERMINAL_STATES.has(s)).reduce((s, [, n]) => s + n, 0);
    const shown: Record<string, string[]> = {};
    for (const v of verdict.violations) if ((shown[v.kind] ??= []).length < 10) shown[v.kind]!.push(v.detail);
    const out = {
      command: `node dist/bench/chaos.bench.js ${process.argv.slice(2).join(" ")}`.trim(),
      seed: options.seed,
      minutesOfFaults: options.minutes,
      tree: { packages: tree.records.length, failingOnPurpose: tree.failing.size, prefailed: tree.prefailed.size, inCycles: tree.inCycles.size },
      processes: { agents: options.agents, slotsPerAgent: options.slots, buildMs: [options.minMs, options.maxMs] },
      faults,
      unexpectedExits: crashes,
      cpuSeconds: Object.fromEntries([...all.map((p) => [p.name, Number(p.cpuSeconds().toFixed(1))])]),
      builds: checked.map((b) => ({ id: b.id, state: b.state, jobs: b.totalJobs })),
      jobs: { total: checked.reduce((s, b) => s + b.jobs.length, 0), byState: states, failedNotOnPurpose: failedReasons },
      changes: { events: faults.changeEvents, locations: expected.size, unappliedEvents: pending },
      jobEventsSeen: events.length,
      violations: verdict.violations.length,
      violationsByKind: verdict.violationsByKind,
      violationExamples: shown,
      seconds: Number(buildSeconds.toFixed(1)),
      builtJobsPerSecond: Number((built / buildSeconds).toFixed(1)),
      terminalJobsPerSecond: Number((terminal / buildSeconds).toFixed(1)),
      workDir: options.keep ? work : undefined,
    };
    process.stdout.write(JSON.stringify(out, null, 1) + "\n");
  } finally {
    ending = true;
    for (const p of all) p.resume();
    await Promise.all(agents.map((a) => a.terminate(3000)));
    await dispatcher.terminate(5000);
    await depgraph.terminate(5000);
    await nc?.close().catch(() => {});
    await nats.stop();
    if (!options.keep) rmSync(work, { recursive: true, force: true });
  }
}

/** readJobEvents reads every job transition the capture stream holds. */
async function readJobEvents(nc: NatsConnection): Promise<JobEvent[]> {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(EVENTS_STREAM);
  const total = info.state.messages;
  const events: JobEvent[] = [];
  if (total === 0) return events;
  const consumer = await nc.jetstream().consumers.get(EVENTS_STREAM);
  const messages = await consumer.consume();
  const deadline = setTimeout(() => messages.stop(), 60_000);
  for await (const m of messages) {
    const e = m.json<Partial<JobEvent>>();
    events.push({ buildId: e.buildId ?? "", pkgname: e.pkgname ?? "", fromState: e.fromState ?? "", toState: e.toState ?? "", agentId: e.agentId ?? "", time: e.time ?? "" });
    if (m.info.pending === 0) break;
  }
  clearTimeout(deadline);
  await messages.close();
  if (events.length < total) log(`read ${events.length} of ${total} job events`);
  return events;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log(`${signal}: killing every service and stopping`);
    killAllNow();
    process.exit(130);
  });
}
await main();
process.exit(0);
