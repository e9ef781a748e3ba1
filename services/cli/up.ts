import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { createClient, type Client } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { BuildMode, BuildState, DepGraphService, ImportMode, JobState, ScanScope, ScanState, type Build, type Job, type Scan } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createBuilderAgent, type AgentExecutors, type BuilderAgent } from "../builder-agent/agent.js";
import { hostPlatform, loadAgentConfig, type AgentConfig } from "../builder-agent/config.js";
import { BMAKE } from "../builder-agent/executor/pkgsrc-executor.js";
import { executorsFromConfig } from "../builder-agent/executor/from-config.js";
import { readPlatform } from "../builder-agent/pkgsrc/scan.js";
import { scanHelperEnv } from "../depgraph/scan-helper.js";
import { loadDepGraphConfig } from "../depgraph/config.js";
import { startDepGraphServer } from "../depgraph/server.js";
import { startDispatcherServer } from "../dispatcher/server.js";
import { createPkgfarmTransport } from "../shared/index.js";
import { loadUpConfig, upHelp, wantsUpHelp, type UpConfig } from "./up-config.js";

type DepGraphClient = Client<typeof DepGraphService>;

/** The dispatcher URL is known only once it listens; agent configurations are checked before, with this in its place. */
const DISPATCHER_PLACEHOLDER = "http://127.0.0.1:1";

/**
 * pkgsrcAgentConfigs checks the agents' configuration for --executor pkgsrc
 * exactly as `pkgfarm agent` would (the same reader, the same messages), so
 * a bad value stops `up` before anything starts. Agent N gets its own
 * sandbox root, work and cache directories.
 */
function pkgsrcAgentConfigs(config: UpConfig, agentToken: string): AgentConfig[] | { errors: string[] } {
  const configs: AgentConfig[] = [];
  // The agents share this host: each would measure, and hand out as
  // MAKE_JOBS, all of its CPUs.
  const cpusEach = Math.max(1, Math.floor(availableParallelism() / config.agents));
  for (let i = 1; i <= config.agents; i++) {
    const agentId = `local-${i}`;
    const loaded = loadAgentConfig([
      "--dispatcher", DISPATCHER_PLACEHOLDER, "--id", agentId, "--slots", String(config.slots), "--executor", "pkgsrc", "--tree", config.treeDir,
      "--bootstrap-kit", config.bootstrapKit, "--sandbox", "namespace", "--sandbox-root", join(config.sandboxRoot, agentId),
      "--work-dir", join(config.dataDir, "agents", agentId, "work"), "--cache-dir", join(config.dataDir, "agents", agentId, "cache"),
      "--labels", "local=true", "--log-level", config.logLevel, "--cpus", String(cpusEach),
      ...(config.mkConf === "" ? [] : ["--mk-conf", config.mkConf]),
      ...(config.platform === "" ? [] : ["--platform", config.platform]),
    ], { PKGFARM_AGENT_TOKEN: agentToken });
    if ("errors" in loaded) return loaded;
    configs.push(loaded);
  }
  return configs;
}

/**
 * runUp is `pkgfarm up`, the embedded default: depgraph, the dispatcher and a
 * few agents in one process (real gRPC between them on loopback), a scan of
 * the tree, one bulk build, progress while it runs, and a report of what
 * failed and what each failure blocked. Service logs go to a file so the
 * terminal shows progress.
 *
 * Two ways to scan and build: the command executor (the default: depgraph's
 * scan helper over the whole tree, then a build command per package), and
 * pkgsrc (no scan helper: the agents scan with bmake, a limited list's
 * closure round after round as pbulk does, and build as pbulk's pkg-build in
 * a sandbox per slot).
 */
export async function runUp(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  if (wantsUpHelp(argv)) {
    out.write(upHelp());
    return 0;
  }
  const config = loadUpConfig(argv, process.env);
  if ("errors" in config) {
    for (const line of config.errors) process.stderr.write(`pkgfarm up: ${line}\n`);
    return 2;
  }
  // Fresh tokens for this run: the services check them exactly as in a real
  // farm, and nothing else on the host can drive them meanwhile.
  const operatorToken = randomBytes(32).toString("hex");
  const agentToken = randomBytes(32).toString("hex");
  const pkgsrc = config.executor === "pkgsrc";
  const agentConfigs = pkgsrc ? pkgsrcAgentConfigs(config, agentToken) : [];
  if ("errors" in agentConfigs) {
    for (const line of agentConfigs.errors) process.stderr.write(`pkgfarm up: ${line}\n`);
    return 2;
  }

  await mkdir(config.dataDir, { recursive: true });
  const logFile = join(config.dataDir, "pkgfarm.log");
  const logger: Logger = pino({ level: config.logLevel }, pino.destination({ dest: logFile, append: true, sync: false }));
  const say = (line: string) => out.write(`${line}\n`);

  // With pkgsrc depgraph gets no scan helper: scans are jobs for the agents.
  const depgraphConfig = loadDepGraphConfig(["--port", "0", "--tree", config.treeDir, ...(pkgsrc ? [] : ["--scan-helper", JSON.stringify(config.scanHelper)])],
    { PKGFARM_OPERATOR_TOKEN: operatorToken });
  if ("errors" in depgraphConfig) throw new Error(depgraphConfig.errors.join("; "));
  const depgraphServer = await startDepGraphServer(depgraphConfig, logger.child({ service: "depgraph" }));
  const dispatcher = await startDispatcherServer({
    host: "127.0.0.1",
    port: 0,
    depgraphUrl: depgraphServer.url,
    packagesRoot: join(config.dataDir, "packages"),
    logsRoot: config.dataDir,
    heartbeatIntervalMs: 2000,
    heartbeatTimeoutMs: 10_000,
    leaseMs: 120_000,
    logLevel: config.logLevel,
    operatorToken,
    agentToken,
    // Reports and the pkgin repository are written as soon as the build ends.
    publishIntervalMs: 500,
  }, logger.child({ service: "dispatcher" }));
  const agents: BuilderAgent[] = [];
  const agentRuns: Promise<void>[] = [];
  try {
    const depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url, { token: operatorToken }));
    let platform = config.platform;
    if (!pkgsrc) {
      say(`pkgfarm up: scanning ${config.treeDir}`);
      const scan = await promisify(execFile)(config.scanHelper[0]!, [...config.scanHelper.slice(1), "--all"], { cwd: config.treeDir, env: scanHelperEnv(process.env, config.treeDir, []), maxBuffer: 256 * 1024 * 1024 });
      const imported = await depgraph.importScan((async function* () {
        yield { pbulkIndex: scan.stdout, mode: ImportMode.REPLACE_TREE };
      })());
      for (const p of imported.problems) say(`  scan problem: ${p.location || p.pkgname} line ${p.line}: ${p.message}`);
      say(`pkgfarm up: ${imported.tree?.packages ?? 0} packages at ${imported.tree?.locations ?? 0} locations; ${imported.tree?.cycles.length ?? 0} dependency cycle(s)`);
      for (let i = 1; i <= config.agents; i++) {
        const agentId = `local-${i}`;
        const agent = createBuilderAgent({
          dispatcherUrl: dispatcher.url,
          agentId,
          slots: config.slots,
          ...hostPlatform(),
          platform,
          labels: { local: "true" },
          treeDir: config.treeDir,
          buildCommand: config.buildCommand,
          workDir: join(config.dataDir, "agents", agentId, "work"),
          cacheDir: join(config.dataDir, "agents", agentId, "cache"),
          jobTimeoutMs: 3600_000,
          logLevel: config.logLevel,
          token: agentToken,
        }, logger.child({ service: "builder-agent", agentId }));
        agents.push(agent);
        agentRuns.push(agent.run());
      }
    } else {
      const started = await startPkgsrcAgents(agentConfigs, dispatcher.url, logger, say);
      if ("error" in started) {
        process.stderr.write(`pkgfarm up: ${started.error}\n`);
        return 2;
      }
      platform = started.platform;
      for (const agent of started.agents) {
        agents.push(agent);
        agentRuns.push(agent.run());
      }
    }
    const dispatcherClient = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url, { token: operatorToken }));
    await waitForAgents(dispatcherClient, config.agents, 60_000);

    const packagesDir = dispatcher.packages.platformDir(platform);
    const mode = config.incremental ? BuildMode.INCREMENTAL : BuildMode.FULL;
    const started = Date.now();
    if (pkgsrc && config.limitTo.length === 0) {
      // A whole-tree build of a tree depgraph has never seen: the agents
      // enumerate and scan it first.
      say(`pkgfarm up: scanning the whole tree ${config.treeDir} on ${platform}`);
      const { scan } = await depgraph.startScan({ platform, scope: ScanScope.TREE });
      const done = await followScan(depgraph, scan!.id, say);
      if (done.state !== ScanState.FINISHED) {
        say(`pkgfarm up: the scan failed: ${scanProgress(done)}`);
        return 1;
      }
    }
    let { build } = await depgraph.createBuild({ platform, mode, packagesDir, limitTo: [...config.limitTo] });
    const limited = config.limitTo.length > 0 ? `limited to ${config.limitTo.length} entr${config.limitTo.length === 1 ? "y" : "ies"} of ${config.limitFile}, ` : "";
    if (build!.state === BuildState.SCANNING) {
      say(`pkgfarm up: build ${build!.id} on ${platform}: ${limited}scanning the list's closure first (scan ${build!.scanId})`);
      build = await followScanningBuild(depgraph, build!, say);
      if (build.state !== BuildState.RUNNING && build.state !== BuildState.FINISHED) {
        say(`pkgfarm up: build ${build.id} ${BuildState[build.state].toLowerCase()}${build.problem ? `: ${build.problem}` : ""}`);
        return 1;
      }
    }
    say(`pkgfarm up: build ${build!.id}: ${limited}${build!.totalJobs} jobs on ${config.agents} agent(s) × ${config.slots} slot(s), ${config.incremental ? "incremental" : "full"}; packages in ${packagesDir}`);
    const finished = await followBuild(depgraph, build!.id, started, say);
    const jobs = await listAllJobs(depgraph, build!.id);
    say(formatReport(finished, jobs, config.dataDir, (Date.now() - started) / 1000));
    const jobsFile = join(config.dataDir, "builds", finished.id, "jobs.tsv");
    await mkdir(join(config.dataDir, "builds", finished.id), { recursive: true });
    await writeFile(jobsFile, formatJobsTsv(jobs));
    say(`jobs: ${jobsFile}`);
    for (const line of await publishedPaths(config.dataDir, finished.id, platform, pkgsrc ? 10_000 : 0)) say(line);
    say(`service logs: ${logFile}`);
    const failed = jobs.filter((j) => j.state === JobState.FAILED).length;
    if (finished.state !== BuildState.FINISHED) return 1;
    return config.strict && failed > 0 ? 1 : 0;
  } finally {
    for (const agent of agents) agent.stopNow();
    await Promise.all(agentRuns);
    await dispatcher.close();
    await depgraphServer.close();
    await new Promise<void>((done) => logger.flush(() => done()));
  }
}

/**
 * startPkgsrcAgents makes the pkgsrc agents as `pkgfarm agent` does
 * (runAgent): executors from the configuration, then the platform from
 * bmake in the first agent's slot 0 (OPSYS-OS_VERSION-MACHINE_ARCH of the
 * kit), unless --platform named it. Every agent gets that platform.
 */
async function startPkgsrcAgents(configs: readonly AgentConfig[], dispatcherUrl: string, logger: Logger, say: (line: string) => void): Promise<{ agents: BuilderAgent[]; platform: string } | { error: string }> {
  const made: Array<{ config: AgentConfig; executors: AgentExecutors }> = [];
  let platform = configs[0]!.platform;
  let platformFields: Pick<AgentConfig, "os" | "osRelease" | "arch"> | undefined;
  try {
    for (const config of configs) {
      const agentLogger = logger.child({ service: "builder-agent", agentId: config.agentId });
      const executors = await executorsFromConfig(config, agentLogger);
      if (platform === "") {
        const sandbox = executors.sandbox!;
        await sandbox.reset(0, config.bootstrapKit!, config.mkConfLines ?? []);
        const chrootDir = sandbox.chrootDir(0);
        const p = await readPlatform({ treeDir: config.treeDir, bmake: BMAKE, sandbox: sandbox.kind, binds: sandbox.binds(0), timeoutMs: 60_000, ...(chrootDir === undefined ? {} : { chrootDir }) });
        platform = p.platform;
        platformFields = { os: p.opsys, osRelease: p.osVersion, arch: p.machineArch };
        say(`pkgfarm up: platform ${platform} (from bmake)`);
      }
      made.push({ config, executors });
    }
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
  const agents = made.map(({ config, executors }) =>
    createBuilderAgent({ ...config, ...platformFields, platform, dispatcherUrl }, logger.child({ service: "builder-agent", agentId: config.agentId }), executors));
  return { agents, platform };
}

/** Waits until the dispatcher lists every agent (they connect in the background), so the first jobs and scans have somewhere to go. */
async function waitForAgents(dispatcher: Client<typeof DispatcherService>, want: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { agents } = await dispatcher.listAgents({});
    if (agents.length >= want) return;
    if (Date.now() > deadline) throw new Error(`only ${agents.length} of ${want} agent(s) connected to the dispatcher after ${timeoutMs / 1000} s; see the service log`);
    await sleep(100);
  }
}

function scanProgress(s: Scan): string {
  return `round ${s.rounds}, ${s.locationsScanned}/${s.locationsTotal} locations scanned (${s.locationsReused} reused, ${s.locationsFailed} failed), ` +
    `${s.records} records, ${s.problems.length} problem(s)`;
}

function printScanProblems(scan: Scan, say: (line: string) => void): void {
  for (const p of scan.problems.slice(0, 20)) say(`  scan problem: ${p.location || "-"}: ${p.message.split("\n").slice(-3).join(" / ")}`);
  if (scan.problems.length > 20) say(`  ... and ${scan.problems.length - 20} more`);
}

/** Polls a scan once a second, printing its progress when it changes, until it ends. */
async function followScan(depgraph: DepGraphClient, scanId: string, say: (line: string) => void): Promise<Scan> {
  const started = Date.now();
  let said = "";
  for (;;) {
    const scan = (await depgraph.getScan({ scanId })).scan!;
    const line = `  scan ${scan.id}: ${scanProgress(scan)}`;
    if (line !== said) say(`${line} — ${formatSeconds((Date.now() - started) / 1000)}`);
    said = line;
    if (scan.state !== ScanState.RUNNING) {
      printScanProblems(scan, say);
      return scan;
    }
    await sleep(1000);
  }
}

/**
 * followScanningBuild prints the closure scan's progress while the build is
 * SCANNING, and returns the build once it has left that state (running, or
 * ended with a problem when the scan failed).
 */
async function followScanningBuild(depgraph: DepGraphClient, build: Build, say: (line: string) => void): Promise<Build> {
  let said = "";
  let scan: Scan | undefined;
  // Kept: the build's scan_id is cleared once it has resolved.
  const scanId = build.scanId;
  const started = Date.now();
  for (;;) {
    scan = (await depgraph.getScan({ scanId })).scan!;
    const line = `  scan ${scan.id}: ${scanProgress(scan)}`;
    if (line !== said) say(`${line} — ${formatSeconds((Date.now() - started) / 1000)}`);
    said = line;
    build = (await depgraph.getBuild({ buildId: build.id })).build!;
    if (build.state !== BuildState.SCANNING) break;
    await sleep(1000);
  }
  scan = (await depgraph.getScan({ scanId })).scan!;
  say(`  scan ${scan.id}: ${ScanState[scan.state].toLowerCase()}: ${scanProgress(scan)} — ${formatSeconds((Date.now() - started) / 1000)}`);
  printScanProblems(scan, say);
  return build;
}

/**
 * publishedPaths names what the dispatcher published for the build (the
 * reports and the pkgin repository), when it did. The reports are written
 * as the build ends, so with waitMs they are waited for that long.
 */
async function publishedPaths(dataDir: string, buildId: string, platform: string, waitMs: number): Promise<string[]> {
  const reports = join(dataDir, "reports", buildId);
  const deadline = Date.now() + waitMs;
  while (!existsSync(join(reports, "report.txt")) && Date.now() < deadline) await sleep(200);
  const lines: string[] = [];
  if (existsSync(reports)) {
    const names = ["report.txt", "report.html", "report.json"].filter((n) => existsSync(join(reports, n)));
    lines.push(`reports: ${reports}${names.length > 0 ? ` (${names.join(", ")})` : ""}`);
  }
  const repository = join(dataDir, "repository", platform);
  if (existsSync(repository)) lines.push(`repository: ${repository}${existsSync(join(repository, "pkg_summary.gz")) ? " (pkg_summary.gz)" : ""}`);
  return lines;
}

/** One line per job, tab-separated, for scripts: pkgname, location, state, failed_phase, blocked_by, reason. */
export function formatJobsTsv(jobs: readonly Job[]): string {
  const clean = (s: string) => s.replace(/[\t\n]+/g, " ");
  const rows = [...jobs].sort((a, b) => a.pkgname.localeCompare(b.pkgname))
    .map((j) => [j.pkgname, j.location, stateName(j.state), j.failedPhase, j.blockedBy, j.reason].map(clean).join("\t"));
  return ["pkgname\tlocation\tstate\tfailed_phase\tblocked_by\treason", ...rows, ""].join("\n");
}

/** "indirect-failed" for JOB_STATE_INDIRECT_FAILED, as pkgfarm prints states. */
function stateName(state: JobState): string {
  return JobState[state].toLowerCase().replace(/_/g, "-");
}

const TERMINAL: readonly JobState[] = [
  JobState.SUCCEEDED, JobState.FAILED, JobState.PREFAILED, JobState.INDIRECT_FAILED, JobState.CYCLE, JobState.UP_TO_DATE, JobState.CANCELLED,
];

function count(build: Build, state: JobState): number {
  return build.jobCounts[`JOB_STATE_${JobState[state]}`] ?? 0;
}

const QUIET_PROGRESS_MS = 30_000;

/** Polls the build once a second and prints a progress line until it ends. */
async function followBuild(depgraph: DepGraphClient, buildId: string, started: number, say: (line: string) => void): Promise<Build> {
  // A line when the counts change, else one every QUIET_PROGRESS_MS: a
  // long pkgsrc build would otherwise print a line a second.
  let lastCounts = "";
  let lastSaid = 0;
  for (;;) {
    const { build } = await depgraph.getBuild({ buildId });
    const done = TERMINAL.reduce((sum, s) => sum + count(build!, s), 0);
    const total = build!.totalJobs;
    const elapsed = (Date.now() - started) / 1000;
    const built = count(build!, JobState.SUCCEEDED) + count(build!, JobState.FAILED);
    const eta = done > 0 && done < total ? `, ETA ${formatSeconds((elapsed / done) * (total - done))}` : "";
    const counts = `  [${done}/${total}] ${count(build!, JobState.LEASED)} running, ${built} built or tried, ${count(build!, JobState.FAILED)} failed, ` +
      `${count(build!, JobState.PREFAILED) + count(build!, JobState.INDIRECT_FAILED) + count(build!, JobState.CYCLE)} not buildable, ` +
      `${count(build!, JobState.UP_TO_DATE)} up to date`;
    const line = `${counts} — ${formatSeconds(elapsed)}${eta}`;
    if (build!.state !== BuildState.RUNNING) {
      say(line);
      return build!;
    }
    if (counts !== lastCounts || Date.now() - lastSaid >= QUIET_PROGRESS_MS) {
      say(line);
      lastCounts = counts;
      lastSaid = Date.now();
    }
    await sleep(1000);
  }
}

async function listAllJobs(depgraph: DepGraphClient, buildId: string): Promise<Job[]> {
  const jobs: Job[] = [];
  let pageToken = "";
  do {
    const page = await depgraph.listJobs({ buildId, pageToken, pageSize: 1000 });
    jobs.push(...page.jobs);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return jobs;
}

/** The end-of-build report: counts per state, then each root failure with what it blocked, most-blocking first. */
export function formatReport(build: Build, jobs: readonly Job[], dataDir: string, seconds: number): string {
  const lines: string[] = [];
  lines.push(`build ${build.id} ${BuildState[build.state].toLowerCase()} in ${formatSeconds(seconds)}: ${build.totalJobs} jobs`);
  const states = TERMINAL.map((s) => [JobState[s].toLowerCase().replace(/_/g, "-"), jobs.filter((j) => j.state === s).length] as const).filter(([, n]) => n > 0);
  lines.push(`  ${states.map(([name, n]) => `${n} ${name}`).join(", ")}`);
  const blocked = new Map<string, string[]>();
  for (const job of jobs) {
    if (job.state !== JobState.INDIRECT_FAILED) continue;
    blocked.set(job.blockedBy, [...(blocked.get(job.blockedBy) ?? []), job.pkgname]);
  }
  const roots = jobs.filter((j) => j.state === JobState.FAILED || j.state === JobState.PREFAILED || j.state === JobState.CYCLE);
  roots.sort((a, b) => (blocked.get(b.pkgname)?.length ?? 0) - (blocked.get(a.pkgname)?.length ?? 0) || a.pkgname.localeCompare(b.pkgname));
  if (roots.length > 0) lines.push("failures, most-blocking first:");
  for (const job of roots) {
    const kind = job.state === JobState.FAILED ? `failed${job.failedPhase ? ` in ${job.failedPhase}` : ""}` : job.state === JobState.PREFAILED ? "prefailed" : `cycle (${job.cycle.join(" → ")}${job.cycleSize > job.cycle.length ? ` → ... ${job.cycleSize} in all` : ""})`;
    const what = blocked.get(job.pkgname) ?? [];
    lines.push(`  ${job.pkgname} (${job.location}): ${kind}${job.reason ? `: ${job.reason}` : ""}`);
    lines.push(`    blocks ${what.length}${what.length > 0 ? `: ${what.sort().join(", ")}` : ""}`);
    if (job.logRef !== "") lines.push(`    log: ${join(dataDir, job.logRef)}`);
  }
  return lines.join("\n");
}

function formatSeconds(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}
