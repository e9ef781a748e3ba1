import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { BuildMode, BuildState, DepGraphService, ImportMode, JobState, type Build, type Job } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { createBuilderAgent, type BuilderAgent } from "../builder-agent/agent.js";
import { hostPlatform } from "../builder-agent/config.js";
import { scanHelperEnv } from "../depgraph/scan-helper.js";
import { loadDepGraphConfig } from "../depgraph/config.js";
import { startDepGraphServer } from "../depgraph/server.js";
import { startDispatcherServer } from "../dispatcher/server.js";
import { createPkgfarmTransport, LOG_LEVELS, readConfig } from "../shared/index.js";

const PACKAGE_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLES = join(PACKAGE_ROOT, "examples");

interface UpConfig {
  readonly treeDir: string;
  readonly scanHelper: readonly string[];
  readonly buildCommand: readonly string[];
  readonly dataDir: string;
  readonly agents: number;
  readonly slots: number;
  readonly incremental: boolean;
  /** Exit 1 when any package failed to build, as CI wants; otherwise a finished build exits 0. */
  readonly strict: boolean;
  readonly platform: string;
  readonly logLevel: string;
}

function loadUpConfig(argv: readonly string[], env: NodeJS.ProcessEnv): UpConfig | { errors: string[] } {
  const incremental = argv.includes("--incremental");
  const strict = argv.includes("--strict");
  const read = readConfig(argv.filter((a) => a !== "--incremental" && a !== "--strict"), env,
    ["tree", "scan-helper", "build-command", "data-dir", "agents", "slots", "platform", "log-level"]);
  const host = hostPlatform();
  const config: UpConfig = {
    treeDir: resolve(read.string("tree", "PKGFARM_TREE", join(EXAMPLES, "tree"))),
    scanHelper: read.argv("scan-helper", "PKGFARM_SCAN_HELPER", [process.execPath, join(EXAMPLES, "bin", "scan-one.mjs")]),
    buildCommand: read.argv("build-command", "PKGFARM_BUILD_COMMAND", [process.execPath, join(EXAMPLES, "bin", "build-one.mjs")]),
    dataDir: resolve(read.string("data-dir", "PKGFARM_DATA_DIR", "var/up")),
    agents: read.int("agents", "PKGFARM_AGENTS", 3, 1, 64),
    slots: read.int("slots", "PKGFARM_SLOTS", 1, 1, 64),
    incremental,
    strict,
    platform: read.string("platform", "PKGFARM_PLATFORM", `${host.os}-${host.osRelease}-${host.arch}`),
    logLevel: read.oneOf("log-level", "PKGFARM_LOG_LEVEL", "info", LOG_LEVELS),
  };
  return read.errors.length > 0 ? { errors: read.errors } : config;
}

/**
 * runUp is `pkgfarm up`, the embedded default: depgraph, the dispatcher and a
 * few agents in one process (real gRPC between them on loopback), a full scan
 * of the tree, one bulk build, progress while it runs, and a report of what
 * failed and what each failure blocked. Service logs go to a file so the
 * terminal shows progress.
 */
export async function runUp(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const config = loadUpConfig(argv, process.env);
  if ("errors" in config) {
    for (const line of config.errors) process.stderr.write(`pkgfarm up: ${line}\n`);
    return 2;
  }
  await mkdir(config.dataDir, { recursive: true });
  const logFile = join(config.dataDir, "pkgfarm.log");
  const logger: Logger = pino({ level: config.logLevel }, pino.destination({ dest: logFile, append: true, sync: false }));
  const say = (line: string) => out.write(`${line}\n`);

  // Fresh tokens for this run: the services check them exactly as in a real
  // farm, and nothing else on the host can drive them meanwhile.
  const operatorToken = randomBytes(32).toString("hex");
  const agentToken = randomBytes(32).toString("hex");
  const depgraphConfig = loadDepGraphConfig(["--port", "0", "--tree", config.treeDir, "--scan-helper", JSON.stringify(config.scanHelper)],
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
  }, logger.child({ service: "dispatcher" }));
  const agents: BuilderAgent[] = [];
  const agentRuns: Promise<void>[] = [];
  try {
    const depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url, { token: operatorToken }));
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
        platform: config.platform,
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

    const packagesDir = dispatcher.packages.platformDir(config.platform);
    const { build } = await depgraph.createBuild({
      platform: config.platform,
      mode: config.incremental ? BuildMode.INCREMENTAL : BuildMode.FULL,
      packagesDir,
    });
    say(`pkgfarm up: build ${build!.id}: ${build!.totalJobs} jobs on ${config.agents} agent(s) × ${config.slots} slot(s), ${config.incremental ? "incremental" : "full"}; packages in ${packagesDir}`);
    const started = Date.now();
    const finished = await followBuild(depgraph, build!.id, started, say);
    const jobs = await listAllJobs(depgraph, build!.id);
    say(formatReport(finished, jobs, config.dataDir, (Date.now() - started) / 1000));
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

const TERMINAL: readonly JobState[] = [
  JobState.SUCCEEDED, JobState.FAILED, JobState.PREFAILED, JobState.INDIRECT_FAILED, JobState.CYCLE, JobState.UP_TO_DATE, JobState.CANCELLED,
];

function count(build: Build, state: JobState): number {
  return build.jobCounts[`JOB_STATE_${JobState[state]}`] ?? 0;
}

/** Polls the build once a second and prints a progress line until it ends. */
async function followBuild(depgraph: ReturnType<typeof createClient<typeof DepGraphService>>, buildId: string, started: number, say: (line: string) => void): Promise<Build> {
  let last = "";
  for (;;) {
    const { build } = await depgraph.getBuild({ buildId });
    const done = TERMINAL.reduce((sum, s) => sum + count(build!, s), 0);
    const total = build!.totalJobs;
    const elapsed = (Date.now() - started) / 1000;
    const built = count(build!, JobState.SUCCEEDED) + count(build!, JobState.FAILED);
    const eta = done > 0 && done < total ? `, ETA ${formatSeconds((elapsed / done) * (total - done))}` : "";
    const line = `  [${done}/${total}] ${count(build!, JobState.LEASED)} running, ${built} built or tried, ${count(build!, JobState.FAILED)} failed, ` +
      `${count(build!, JobState.PREFAILED) + count(build!, JobState.INDIRECT_FAILED) + count(build!, JobState.CYCLE)} not buildable, ` +
      `${count(build!, JobState.UP_TO_DATE)} up to date — ${formatSeconds(elapsed)}${eta}`;
    if (build!.state !== BuildState.RUNNING) {
      say(line);
      return build!;
    }
    if (line !== last) say(line);
    last = line;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function listAllJobs(depgraph: ReturnType<typeof createClient<typeof DepGraphService>>, buildId: string): Promise<Job[]> {
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
    const kind = job.state === JobState.FAILED ? "failed" : job.state === JobState.PREFAILED ? "prefailed" : `cycle (${job.cycle.join(" → ")}${job.cycleSize > job.cycle.length ? ` → ... ${job.cycleSize} in all` : ""})`;
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
