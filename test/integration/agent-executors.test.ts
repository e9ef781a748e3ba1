// A real agent (createBuilderAgent) with two slots against a real dispatcher
// and depgraph: every build command learns its slot, no slot runs two jobs
// at once, and the agent's hello names its executor. With the real pkgsrc
// tree, the pkgsrc executor builds a small closure through the dispatcher:
// dependencies fetched and pkg_added, packages uploaded, scan variables from
// a real bmake scan.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import { BuildState, DepGraphService, ImportMode, JobState } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createBuilderAgent, type BuilderAgent } from "../../services/builder-agent/agent.js";
import { hostPlatform, type AgentConfig } from "../../services/builder-agent/config.js";
import { executorsFromConfig } from "../../services/builder-agent/executor/from-config.js";
import { createPkgsrcScanner } from "../../services/builder-agent/executor/pkgsrc-scanner.js";
import { createSlotSandbox } from "../../services/builder-agent/executor/slot-sandbox.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { BOOTSTRAP_KIT, EXPECTED_DIR, pkgsrcTree, pkgsrcUnavailable } from "../support/pkgsrc.js";
import { waitForBuild } from "../support/builds.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const TREE = join(ROOT, "examples", "tree");
const BUILD_ONE = join(ROOT, "examples", "bin", "build-one.mjs");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function agentConfig(dir: string, dispatcherUrl: string, id: string, platform: string, extra: Partial<AgentConfig>): AgentConfig {
  return {
    dispatcherUrl, agentId: id, slots: 2, ...hostPlatform(), platform, labels: {}, treeDir: TREE, buildCommand: [],
    workDir: join(dir, id, "work"), cacheDir: join(dir, id, "cache"), jobTimeoutMs: 600_000, logLevel: "silent", ...extra,
  };
}

describe("a real agent with executors, through a real dispatcher", () => {
  let dir: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;
  const agents: BuilderAgent[] = [];
  const runs: Promise<void>[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-agent-exec-"));
    chmodSync(dir, 0o755);
    depgraphServer = await startTestDepGraph();
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 300, heartbeatTimeoutMs: 5000, leaseMs: 600_000, logLevel: "silent",
    }, pino({ level: "silent" }));
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
  });
  after(async () => {
    for (const a of agents) a.stopNow();
    await Promise.all(runs);
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("two slots: each build command gets PKGFARM_SLOT, no slot runs two jobs at once, the hello names the executor", async () => {
    const platform = "Slots-1.0-x86_64";
    const scan = execFileSync(process.execPath, [join(ROOT, "examples", "bin", "scan-one.mjs"), "--all"], { encoding: "utf8" });
    await depgraph.importScan((async function* () { yield { pbulkIndex: scan, mode: ImportMode.REPLACE_TREE }; })());
    const trace = join(dir, "slots.trace");
    writeFileSync(trace, "");
    // The build command notes its slot at start and end around the example build.
    const command = ["/bin/sh", "-c", 'echo "start $PKGFARM_SLOT $PKGFARM_PKGNAME" >> "$0"; "$1" "$2"; s=$?; echo "end $PKGFARM_SLOT $PKGFARM_PKGNAME" >> "$0"; exit $s',
      trace, process.execPath, BUILD_ONE];
    const agent = createBuilderAgent(agentConfig(dir, dispatcher.url, "slots-agent", platform, { buildCommand: command }), pino({ level: "silent" }));
    agents.push(agent);
    runs.push(agent.run());
    const { build } = await depgraph.createBuild({ platform });
    const client = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url));
    let hello;
    for (const deadline = Date.now() + 10_000; hello === undefined && Date.now() < deadline; await sleep(20)) {
      hello = (await client.listAgents({})).agents.find((a) => a.hello?.agentId === "slots-agent")?.hello;
    }
    assert.equal(hello?.executor, "command");
    assert.equal(hello?.scans, false);
    const finished = await waitForBuild(depgraph, build!.id, 120_000);
    assert.equal(finished.state, BuildState.FINISHED);
    assert.equal(finished.jobCounts["JOB_STATE_SUCCEEDED"], 29);
    const busy = new Map<string, string>();
    const used = new Set<string>();
    let overlapped = false;
    for (const line of readFileSync(trace, "utf8").split("\n").filter((l) => l !== "")) {
      const [what, slot, pkgname] = line.split(" ") as [string, string, string];
      assert.ok(slot === "0" || slot === "1", `slot ${slot} of ${pkgname}`);
      used.add(slot);
      if (what === "start") {
        assert.equal(busy.get(slot), undefined, `${pkgname} started in slot ${slot} while ${busy.get(slot)} ran there`);
        busy.set(slot, pkgname);
        if (busy.size === 2) overlapped = true;
      } else {
        assert.equal(busy.get(slot), pkgname);
        busy.delete(slot);
      }
    }
    assert.deepEqual([...used].sort(), ["0", "1"]);
    assert.ok(overlapped, "the two slots never ran at the same time");
  });

  test("the pkgsrc executor builds digest, nbpatch and rdigest (which needs both) through the dispatcher", { skip: pkgsrcUnavailable() }, async () => {
    const tree = pkgsrcTree();
    const platform = "Pkgsrc-test-x86_64";
    const locations = ["pkgtools/digest", "devel/nbpatch", "pkgtools/rdigest"];
    // Scanned with the agent's own pkgsrc scanner in a sandbox of its own.
    const scanner = createPkgsrcScanner({ treeDir: tree, bootstrapKit: BOOTSTRAP_KIT, sandbox: createSlotSandbox({ kind: "namespace", root: join(dir, "scan-sandbox") }), mkConfLines: [], timeoutMs: 120_000 });
    const scanned = await scanner.scan(locations, 0, new AbortController().signal);
    for (const s of scanned) assert.equal(s.error, "", s.location);
    const imported = await depgraph.importScan((async function* () { yield { pbulkIndex: scanned.map((s) => s.pbulkIndex).join(""), mode: ImportMode.REPLACE_TREE, maxRemovedShare: 1 }; })());
    assert.equal(imported.problems.length, 0, JSON.stringify(imported.problems));
    const config = agentConfig(dir, dispatcher.url, "pkgsrc-agent", platform, {
      treeDir: tree, executor: "pkgsrc", bootstrapKit: BOOTSTRAP_KIT, sandbox: "namespace", sandboxRoot: join(dir, "sandbox"), buildUser: "pkgfarm",
    });
    const logger = pino({ level: "silent" });
    const executors = await executorsFromConfig(config, logger);
    const agent = createBuilderAgent(config, logger, executors);
    agents.push(agent);
    runs.push(agent.run());
    const started = Date.now();
    const { build } = await depgraph.createBuild({ platform });
    const finished = await waitForBuild(depgraph, build!.id, 1_500_000);
    const jobs = (await depgraph.listJobs({ buildId: build!.id })).jobs;
    for (const j of jobs) assert.equal(j.state, JobState.SUCCEEDED, `${j.pkgname}: ${j.reason}\n${readFileSync(join(dir, j.logRef), "utf8").slice(-3000)}`);
    assert.equal(finished.state, BuildState.FINISHED);
    for (const pkgname of ["digest-20121220", "nbpatch-20100124", "rdigest-20121220"]) {
      const list = execFileSync("tar", ["-tzf", join(dir, "packages", platform, "All", `${pkgname}.tgz`)], { encoding: "utf8" }).split("\n").filter((l) => l !== "").sort();
      const expected = readFileSync(join(EXPECTED_DIR, "contents", `${pkgname}.txt`), "utf8").split("\n").filter((l) => l !== "").sort();
      assert.deepEqual(list, expected, pkgname);
    }
    const rdigest = jobs.find((j) => j.pkgname === "rdigest-20121220")!;
    const log = readFileSync(join(dir, rdigest.logRef), "utf8");
    assert.match(log, /pkg_add -K \/usr\/pkg\/pkgdb digest-20121220 nbpatch-20100124/);
    assert.match(log, /=== stage-install|stage-install/);
    appendFileSync(join(dir, "timing.txt"), `3 packages through the dispatcher with 2 slots: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    console.log(`3 packages (digest ∥ nbpatch, then rdigest) through the dispatcher with 2 slots: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
});
