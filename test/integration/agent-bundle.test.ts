import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { pino } from "pino";
import { BuildState, DepGraphService, JobState } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { loadDispatcherConfig } from "../../services/dispatcher/config.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "pkgfarm-agent-bundle-"));
// The bundle alone in a directory with no node_modules anywhere above it.
const lone = join(dir, "host");
let depgraphServer: RunningDepGraph;
let dispatcher: RunningDispatcher;
let agent: ChildProcess | undefined;

before(async () => {
  assert.ok(!existsSync(join(tmpdir(), "node_modules")) && !existsSync("/node_modules"), "no node_modules above the temporary directory");
  await run(process.execPath, [join(ROOT, "packages", "builder-agent", "bundle.mjs")]);
  mkdirSync(lone);
  copyFileSync(join(ROOT, "dist", "pkgfarm-agent.mjs"), join(lone, "pkgfarm-agent.mjs"));
  const scan = execFileSync(process.execPath, [join(ROOT, "examples", "bin", "scan-one.mjs"), "--all"], { encoding: "utf8" });
  writeFileSync(join(dir, "scan.txt"), scan);
  depgraphServer = await startTestDepGraph({ importFile: join(dir, "scan.txt") });
  const config = loadDispatcherConfig(["--port", "0", "--depgraph", depgraphServer.url, "--data-dir", join(dir, "dispatcher"), "--log-level", "silent"], {});
  if ("errors" in config) throw new Error(config.errors.join("; "));
  dispatcher = await startDispatcherServer(config, pino({ level: "silent" }));
});
after(async () => {
  agent?.kill("SIGKILL");
  await dispatcher?.close();
  await depgraphServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("the single-file agent, alone in an empty directory, builds jobs from a real dispatcher and drains on SIGTERM", { timeout: 120_000 }, async () => {
  assert.deepEqual(readdirSync(lone), ["pkgfarm-agent.mjs"]);
  const platform = "Bundle-1.0-x86_64";
  const depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
  const { build } = await depgraph.createBuild({ platform, limitTo: ["archivers/xz"] });
  assert.ok(build!.totalJobs >= 3, `xz needs a few packages, got ${build!.totalJobs}`);

  agent = spawn(process.execPath, [
    "pkgfarm-agent.mjs", "--dispatcher", dispatcher.url, "--id", "lone", "--platform", platform, "--slots", "2",
    "--tree", join(ROOT, "examples", "tree"), "--build-command", JSON.stringify([process.execPath, join(ROOT, "examples", "bin", "build-one.mjs")]),
    "--work-dir", join(dir, "work"), "--cache-dir", join(dir, "cache"),
  ], { cwd: lone, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  agent.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  agent.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => agent!.once("exit", (code) => resolve(code)));

  let finished = build!;
  const deadline = Date.now() + 90_000;
  while (finished.state === BuildState.RUNNING && Date.now() < deadline && agent.exitCode === null) {
    await new Promise((r) => setTimeout(r, 100));
    finished = (await depgraph.getBuild({ buildId: build!.id })).build!;
  }
  assert.equal(finished.state, BuildState.FINISHED, `build ${BuildState[finished.state]}; agent output:\n${output}`);
  assert.equal(finished.jobCounts[`JOB_STATE_${JobState[JobState.SUCCEEDED]}`], finished.totalJobs, JSON.stringify(finished.jobCounts));
  const packages = readdirSync(join(dispatcher.packages.platformDir(platform), "All")).filter((f) => f.endsWith(".tgz"));
  assert.equal(packages.length, finished.totalJobs);
  assert.ok(packages.some((p) => p.startsWith("xz-")), packages.join(", "));

  agent.kill("SIGTERM");
  assert.equal(await exited, 0, output);
  assert.deepEqual(readdirSync(lone), ["pkgfarm-agent.mjs"], "the agent wrote nothing beside itself");
});

test("npm pack gives an installable package whose pkgfarm-agent command is the bundle", { timeout: 60_000 }, async () => {
  const packDir = join(dir, "pack");
  mkdirSync(packDir);
  const { stdout } = await run("npm", ["pack", join(ROOT, "packages", "builder-agent"), "--pack-destination", packDir, "--json"]);
  const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  assert.deepEqual(packed!.files.map((f) => f.path).sort(), ["package.json", "pkgfarm-agent.mjs"]);

  const prefix = join(dir, "prefix");
  await run("npm", ["install", "--global", "--prefix", prefix, "--offline", "--no-audit", "--no-fund", join(packDir, packed!.filename)]);
  const bin = join(prefix, "bin", "pkgfarm-agent");
  const env = { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` };
  const help = await run(bin, ["--help"], { env });
  assert.match(help.stdout, /^usage: pkgfarm-agent --dispatcher URL --build-command CMD/);
  await assert.rejects(run(bin, ["--dispatcher", "ftp://x"], { env }), (e: { code: number; stderr: string }) =>
    e.code === 2 && /--dispatcher \(PKGFARM_DISPATCHER_URL\) must be a URL/.test(e.stderr) && /--build-command \(PKGFARM_BUILD_COMMAND\) is required/.test(e.stderr));
});
