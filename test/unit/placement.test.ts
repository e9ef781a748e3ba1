import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { loadDepGraphConfig } from "../../services/depgraph/config.js";
import { parseConstraints, matchingRules } from "../../services/depgraph/core/constraints.js";
import { DepGraph } from "../../services/depgraph/core/depgraph.js";
import { createDurationHistory } from "../../services/depgraph/core/history.js";
import { createResourceBook } from "../../services/depgraph/core/resource-needs.js";
import { persistState, restoreState } from "../../services/depgraph/state-persister.js";
import { createMemoryStateStore } from "../../services/depgraph/state-store.js";
import { pino } from "pino";
import {
  chooseHost, fitsNow, HostPlan, makeJobsFor, NO_NEEDS, resourceWaitOf, takeOn, type Host, type Needs,
} from "../../services/shared/placement.js";
import { AgentRegistry } from "../../services/dispatcher/core/registry.js";
import { agentHelp, loadAgentConfig, type AgentConfig } from "../../services/builder-agent/config.js";
import { createProcessSampler, diskUse, groupsRss, startUsageMeter } from "../../services/builder-agent/usage.js";
import { runBuildCommand } from "../../services/builder-agent/runner.js";
import { formatBytes, parseSize } from "../../services/shared/sizes.js";
import { fakeClock, record, testDepGraphOptions } from "../support/records.js";

const GiB = 2 ** 30;

function host(id: string, over: Partial<Host> = {}): Host {
  const memoryBytes = over.memoryBytes ?? 8 * GiB;
  const diskBytes = over.diskBytes ?? 100 * GiB;
  return {
    id, freeSlots: 2, cpus: 8, memoryBytes, diskBytes, memoryFreeBytes: over.memoryFreeBytes ?? memoryBytes,
    diskFreeBytes: over.diskFreeBytes ?? diskBytes, labels: {}, exclusiveRunning: [], ...over,
  };
}

function needs(over: Partial<Needs>): Needs {
  return { ...NO_NEEDS, ...over };
}

describe("placement: where a job fits", () => {
  test("a job fits only a host with the memory, disk, CPUs and labels it needs; a host that says nothing of a resource fits any need of it", () => {
    const small = host("small", { memoryBytes: 4 * GiB, labels: { cpu: "slow" } });
    assert.equal(fitsNow(needs({ memoryBytes: 2 * GiB }), small), true);
    assert.equal(fitsNow(needs({ memoryBytes: 16 * GiB }), small), false);
    assert.equal(fitsNow(needs({ diskBytes: 200 * GiB }), small), false);
    assert.equal(fitsNow(needs({ cpus: 16 }), small), false);
    assert.equal(fitsNow(needs({ labels: { cpu: "fast" } }), small), false);
    assert.equal(fitsNow(needs({ labels: { cpu: "slow" } }), small), true);
    assert.equal(fitsNow(needs({ memoryBytes: 64 * GiB }), host("unknown", { memoryBytes: 0 })), true);
  });

  test("memory taken by running jobs is not free: a second 16 GiB job does not fit a 24 GiB host running one", () => {
    const big = host("big", { memoryBytes: 24 * GiB });
    const job = needs({ memoryBytes: 16 * GiB });
    const after = takeOn(big, job);
    assert.equal(after.memoryFreeBytes, 8 * GiB);
    assert.equal(after.freeSlots, 1);
    assert.equal(fitsNow(job, after), false);
    assert.equal(fitsNow(needs({ memoryBytes: 4 * GiB }), after), true);
  });

  test("the exclusion rule: a host running a job of a class takes no second one of it, but takes other jobs", () => {
    const h = takeOn(host("h"), needs({ exclusive: "heavy" }));
    assert.deepEqual(h.exclusiveRunning, ["heavy"]);
    assert.equal(fitsNow(needs({ exclusive: "heavy" }), h), false);
    assert.equal(fitsNow(needs({ exclusive: "io" }), h), true);
    assert.equal(fitsNow(NO_NEEDS, h), true);
    assert.equal(fitsNow(needs({ exclusive: "heavy" }), host("other")), true, "the rule is per host");
  });

  test("chooseHost spreads by free slots, and among equals keeps the big host for the jobs only it can take", () => {
    const small = host("small", { memoryBytes: 4 * GiB });
    const big = host("big", { memoryBytes: 32 * GiB });
    assert.equal(chooseHost(needs({ memoryBytes: GiB }), [big, small])?.id, "small");
    assert.equal(chooseHost(needs({ memoryBytes: 16 * GiB }), [big, small])?.id, "big");
    assert.equal(chooseHost(NO_NEEDS, [host("busy", { freeSlots: 0 })]), undefined);
    assert.equal(chooseHost(needs({ memoryBytes: GiB }), [big, { ...small, freeSlots: 1 }])?.id, "big", "more free slots first");
  });

  test("a HostPlan hands out no more than the hosts hold: two heavy jobs on one host go one at a time", () => {
    const plan = new HostPlan([host("only", { freeSlots: 4 })]);
    assert.ok(plan.take(needs({ exclusive: "heavy" })));
    assert.equal(plan.take(needs({ exclusive: "heavy" })), undefined);
    assert.ok(plan.take(NO_NEEDS));
    assert.ok(plan.take(NO_NEEDS));
    assert.ok(plan.take(NO_NEEDS));
    assert.equal(plan.open, false);
    assert.equal(plan.take(NO_NEEDS), undefined);
  });
});

describe("placement: the per-host CPU budget (MAKE_JOBS)", () => {
  test("a lone slot gets every CPU; two slots share them; a job arriving beside a running one gets what is left", () => {
    assert.equal(makeJobsFor(NO_NEEDS, { cpus: 8, slots: 1, running: 0, committed: 0 }), 8);
    assert.equal(makeJobsFor(NO_NEEDS, { cpus: 8, slots: 2, running: 0, committed: 0 }), 4);
    assert.equal(makeJobsFor(NO_NEEDS, { cpus: 8, slots: 2, running: 1, committed: 4 }), 4);
    assert.equal(makeJobsFor(NO_NEEDS, { cpus: 8, slots: 4, running: 1, committed: 6 }), 1, "never 0: two CPUs left for three slots");
    assert.equal(makeJobsFor(NO_NEEDS, { cpus: 16, slots: 3, running: 1, committed: 2 }), 7);
  });

  test("cpus=N is given within what is left; MAKE_JOBS_SAFE=no and an agent that did not say its CPUs get 1", () => {
    assert.equal(makeJobsFor(needs({ cpus: 6 }), { cpus: 8, slots: 2, running: 0, committed: 0 }), 6);
    assert.equal(makeJobsFor(needs({ cpus: 6 }), { cpus: 8, slots: 2, running: 1, committed: 4 }), 4);
    assert.equal(makeJobsFor(NO_NEEDS, { cpus: 8, slots: 1, running: 0, committed: 0 }, false), 1);
    assert.equal(makeJobsFor(NO_NEEDS, { cpus: 0, slots: 2, running: 0, committed: 0 }), 1);
  });

  test("the registry keeps what each held job was given and reserves its needs", () => {
    const registry = new AgentRegistry({ heartbeatTimeoutMs: 1000 });
    const a = registry.register({ id: "a", platform: "P", slots: 2, resources: { cpus: 8, memoryBytes: 16 * GiB, diskBytes: 50 * GiB, labels: {} } }, 0);
    registry.hold(a, { buildId: "b", pkgname: "rust-1.80", leaseId: "l" }, 0, "build", { needs: needs({ memoryBytes: 12 * GiB, exclusive: "heavy" }), makeJobs: 4 });
    assert.equal(registry.cpusCommitted(a), 4);
    const seen = registry.hostOf(a);
    assert.equal(seen.memoryFreeBytes, 4 * GiB);
    assert.deepEqual(seen.exclusiveRunning, ["heavy"]);
    assert.equal(registry.pickAgent("P", "build", needs({ memoryBytes: 8 * GiB })), undefined, "12 of 16 GiB are taken");
    assert.equal(registry.pickAgent("P", "build", needs({ memoryBytes: 2 * GiB })), a);
  });
});

describe("placement: why a ready job waits", () => {
  test("no host big enough: says how much is needed and the most there is", () => {
    const wait = resourceWaitOf(needs({ memoryBytes: 16 * GiB }), [host("a", { memoryBytes: 8 * GiB }), host("b", { memoryBytes: 4 * GiB })]);
    assert.equal(wait?.kind, "no-agent-with-resources");
    assert.equal(wait?.detail, "no agent with ≥ 16 GiB memory (the most an agent has is 8 GiB)");
    const label = resourceWaitOf(needs({ labels: { gpu: "yes" } }), [host("a")]);
    assert.equal(label?.detail, "no agent with label gpu=yes");
    const both = resourceWaitOf(needs({ memoryBytes: 16 * GiB, labels: { cpu: "fast" } }), [host("a", { memoryBytes: 32 * GiB }), host("b", { labels: { cpu: "fast" } })]);
    assert.match(both?.detail ?? "", /^no agent has everything the job needs \(a lacks label cpu=fast; b lacks memory: needs 16 GiB, has 8 GiB\)$/);
  });

  test("hosts big enough but busy, or held by the exclusion rule; nothing to say when a host can take it", () => {
    const busy = resourceWaitOf(needs({ memoryBytes: 6 * GiB }), [host("a", { freeSlots: 0 }), host("b", { memoryFreeBytes: 2 * GiB }), host("tiny", { memoryBytes: GiB })]);
    assert.equal(busy?.kind, "all-fitting-busy");
    assert.equal(busy?.detail, "all 2 agents that fit are busy (a: no free slot; b: memory taken by its running jobs)");
    const held = resourceWaitOf(needs({ exclusive: "heavy" }), [host("a", { exclusiveRunning: ["heavy"] }), host("b", { exclusiveRunning: ["heavy"] })]);
    assert.equal(held?.kind, "exclusion");
    assert.equal(held?.detail, "held: at most one job of class heavy per agent, and every agent that fits runs one (a, b)");
    const heldAndFull = resourceWaitOf(needs({ exclusive: "heavy" }), [host("a", { exclusiveRunning: ["heavy"], freeSlots: 0 }), host("b", { exclusiveRunning: ["heavy"] })]);
    assert.equal(heldAndFull?.kind, "exclusion", "a full host running a heavy job holds the job off by the rule too");
    assert.equal(resourceWaitOf(needs({ memoryBytes: GiB }), [host("a")]), undefined);
    assert.equal(resourceWaitOf(needs({ memoryBytes: GiB }), [host("a", { freeSlots: 0 })]), undefined, "every agent could take it: busy, not its needs");
    assert.equal(resourceWaitOf(NO_NEEDS, []), undefined);
  });
});

describe("constraints file", () => {
  test("rules match by location, PKGNAME or PKGBASE, and later lines override earlier ones key by key", () => {
    const { rules, errors } = parseConstraints([
      "# heavy ones",
      "lang/rust*   memory=12G exclusive=heavy",
      "www/firefox  memory=16G disk=40G cpus=8 exclusive=heavy  # the biggest",
      "firefox      label:cpu=fast",
      "*            disk=2G",
      "www/firefox  disk=50GiB",
    ].join("\n"));
    assert.deepEqual(errors, []);
    assert.deepEqual(matchingRules(rules, "rust-1.80.0", "lang/rust").map((r) => r.line), [2, 5]);
    const book = createResourceBook(rules);
    const firefox = book.needsOf("firefox-128.0", "www/firefox");
    assert.deepEqual(firefox.needs, { memoryBytes: 16 * GiB, diskBytes: 50 * GiB, cpus: 8, exclusive: "heavy", labels: { cpu: "fast" } });
    assert.match(firefox.origin, /memory: constraints line 3 \(www\/firefox\)/);
    assert.match(firefox.origin, /disk: constraints line 6/);
  });

  test("every bad line is reported with its number, and a file with any takes no rule", () => {
    const { rules, errors } = parseConstraints("lang/rust memory=lots\nwww/firefox\nx cpus=0 colour=red\nok memory=1G\n");
    assert.deepEqual(rules, []);
    assert.deepEqual(errors.map((e) => e.message), [
      "constraints line 1: memory=lots: memory must be a size such as 16G, 512M or 40GiB",
      "constraints line 2: \"www/firefox\" sets nothing: add needs such as memory=16G disk=40G cpus=8 exclusive=heavy",
      "constraints line 3: cpus=0: cpus must be a whole number from 1 to 4096",
      "constraints line 3: colour=red: unknown need \"colour\": use memory=, disk=, cpus=, exclusive= or label:KEY=",
    ]);
  });

  test("depgraph --constraints reads the file at start, and a bad line stops it with the line's number", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pkgfarm-constraints-"));
    try {
      await writeFile(join(dir, "good"), "www/firefox memory=16G exclusive=heavy\n");
      await writeFile(join(dir, "bad"), "# fine\nwww/firefox memory=16Q\n");
      const good = loadDepGraphConfig(["--constraints", join(dir, "good")], {});
      assert.ok(!("errors" in good));
      assert.deepEqual(good.constraints!.map((r) => [r.pattern, r.needs]), [["www/firefox", { memoryBytes: 16 * GiB, exclusive: "heavy" }]]);
      const bad = loadDepGraphConfig([], { PKGFARM_CONSTRAINTS: join(dir, "bad") });
      assert.ok("errors" in bad);
      assert.deepEqual(bad.errors, [`--constraints (PKGFARM_CONSTRAINTS) ${join(dir, "bad")}: constraints line 2: memory=16Q: memory must be a size such as 16G, 512M or 40GiB`]);
      const missing = loadDepGraphConfig(["--constraints", join(dir, "none")], {});
      assert.ok("errors" in missing && /cannot read .*none: ENOENT/.test(missing.errors[0]!));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("sizes read and print in binary units", () => {
    assert.equal(parseSize("16G"), 16 * GiB);
    assert.equal(parseSize("1.5T"), 1.5 * 2 ** 40);
    assert.equal(parseSize("512MiB"), 512 * 2 ** 20);
    assert.equal(parseSize("4096"), 4096);
    assert.equal(parseSize("16 gigs"), undefined);
    assert.equal(formatBytes(16 * GiB), "16 GiB");
    assert.equal(formatBytes(1.5 * GiB), "1.5 GiB");
  });
});

describe("learnt needs", () => {
  test("a build's measured peaks become the package's needs, a new version inherits them, and a constraint overrides them", () => {
    const book = createResourceBook(parseConstraints("devel/big disk=9G\n").rules);
    book.record("big-1.0", "devel/big", { memoryBytes: 3 * GiB, diskBytes: GiB }, true);
    assert.deepEqual(book.needsOf("big-1.0", "devel/big").needs, { memoryBytes: 3 * GiB, diskBytes: 9 * GiB, cpus: 0, exclusive: "", labels: {} });
    assert.match(book.needsOf("big-1.0", "devel/big").origin, /^memory: learnt from its last build; disk: constraints line 1/);
    assert.equal(book.needsOf("big-2.0", "devel/big").needs.memoryBytes, 3 * GiB, "a new version needs what the old one did");
    book.record("big-1.0", "devel/big", { memoryBytes: GiB, diskBytes: 0 }, false);
    assert.equal(book.needsOf("big-1.0", "devel/big").needs.memoryBytes, 3 * GiB, "a failed build only raises what was learnt");
    book.record("big-1.0", "devel/big", { memoryBytes: 2 * GiB, diskBytes: 0 }, true);
    assert.equal(book.needsOf("big-1.0", "devel/big").needs.memoryBytes, 2 * GiB, "a success replaces it");
    assert.deepEqual(book.needsOf("small-1.0", "devel/small"), { needs: NO_NEEDS, origin: "" });
  });

  test("depgraph leases past a job no free agent fits, keeps it ready in its place, and leases it once one does", () => {
    const clock = fakeClock();
    const book = createResourceBook(parseConstraints("www/firefox memory=16G\n").rules);
    const depgraph = new DepGraph(testDepGraphOptions({ now: clock.now, resources: book }));
    depgraph.tree.replace([
      record({ pkgname: "firefox-128.0", location: "www/firefox", weight: 10_000 }),
      record({ pkgname: "zip-3.0", location: "archivers/zip" }),
      record({ pkgname: "unzip-6.0", location: "archivers/unzip", weight: 200 }),
    ], "tree");
    const build = depgraph.createBuild({ platform: "P", mode: "full", policy: "pbulk-weight", limitTo: [], packagesDir: "", binaryPackages: new Map() });
    const small = host("small", { memoryBytes: 8 * GiB, freeSlots: 1 });
    const round = depgraph.placementRound([small]);
    const first = depgraph.nextReadyJobs("P", "d", 4, undefined, round);
    assert.deepEqual(first.map((a) => a.job.pkgname), ["unzip-6.0"], "one free slot, and firefox fits no agent");
    assert.equal(build.readyCount, 1, "during the round the passed-over job is out of the queue (zip is left), so it is looked at once");
    round.end();
    assert.equal(build.readyCount, 2, "the round's end puts it back");
    assert.equal(build.byPkgname.get("firefox-128.0")!.state, "ready");
    const big = host("big", { memoryBytes: 32 * GiB, freeSlots: 1 });
    const again = depgraph.placementRound([small, big]);
    const second = depgraph.nextReadyJobs("P", "d", 4, undefined, again);
    again.end();
    assert.deepEqual(second.map((a) => a.job.pkgname), ["firefox-128.0", "zip-3.0"], "the highest priority first once it fits, back in its place");
    assert.equal(build.readyCount, 0);
  });

  test("learnt needs survive a restart: the store keeps them, and a new depgraph restores them", async () => {
    const store = createMemoryStateStore();
    const first = new DepGraph(testDepGraphOptions({ now: fakeClock().now }));
    persistState(store, first);
    first.tree.replace([record({ pkgname: "rust-1.80", location: "lang/rust" })], "tree");
    first.createBuild({ platform: "P", mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
    const [a] = first.nextReadyJobs("P", "d", 1, undefined);
    first.markDone([{ buildId: a!.build.id, pkgname: "rust-1.80", leaseId: a!.lease.id, succeeded: false, durationMs: 1, logRef: "", failureReason: "killed: out of memory",
      binaryPackage: undefined, peakMemoryBytes: 7 * GiB, peakDiskBytes: 3 * GiB }]);
    const second = new DepGraph(testDepGraphOptions({ now: fakeClock().now }));
    await restoreState(store, second, createDurationHistory(), pino({ level: "silent" }));
    assert.deepEqual(second.resources.learnt("rust-1.80"), { memoryBytes: 7 * GiB, diskBytes: 3 * GiB });
    assert.equal(second.resources.needsOf("rust-1.81", "lang/rust").needs.memoryBytes, 7 * GiB);
  });

  test("MarkDone's measured peaks are learnt", () => {
    const book = createResourceBook();
    const depgraph = new DepGraph(testDepGraphOptions({ now: fakeClock().now, resources: book }));
    depgraph.tree.replace([record({ pkgname: "llvm-18.1", location: "lang/llvm" })], "tree");
    depgraph.createBuild({ platform: "P", mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
    const [a] = depgraph.nextReadyJobs("P", "d", 1, undefined);
    depgraph.markDone([{ buildId: a!.build.id, pkgname: "llvm-18.1", leaseId: a!.lease.id, succeeded: true, durationMs: 1, logRef: "", failureReason: "",
      binaryPackage: { fileName: "llvm-18.1.tgz", sha256: "0".repeat(64), sizeBytes: 1 }, peakMemoryBytes: 5 * GiB, peakDiskBytes: 20 * GiB }]);
    assert.deepEqual(book.learnt("llvm-18.1"), { memoryBytes: 5 * GiB, diskBytes: 20 * GiB });
  });

  test("a measure above what the agent that ran the build has is capped there, so the package still fits that agent", () => {
    const clock = fakeClock();
    const depgraph = new DepGraph(testDepGraphOptions({ now: clock.now }));
    depgraph.tree.replace([record({ pkgname: "webkit-2.44", location: "www/webkit" })], "tree");
    depgraph.createBuild({ platform: "P", mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() });
    depgraph.resources.noteAgents("P", [host("a1", { memoryBytes: 8 * GiB })], clock.now());
    const [a] = depgraph.nextReadyJobs("P", "d", 1, undefined);
    depgraph.markDone([{ buildId: a!.build.id, pkgname: "webkit-2.44", leaseId: a!.lease.id, agentId: "a1", succeeded: true, durationMs: 1, logRef: "", failureReason: "",
      binaryPackage: { fileName: "webkit-2.44.tgz", sha256: "0".repeat(64), sizeBytes: 1 }, peakMemoryBytes: 11 * GiB, peakDiskBytes: 30 * GiB }]);
    assert.deepEqual(depgraph.resources.learnt("webkit-2.44"), { memoryBytes: 8 * GiB, diskBytes: 30 * GiB });
  });
});

describe("agent resources", () => {
  const base = ["--build-command", "true", "--work-dir", join(tmpdir(), "pkgfarm-placement-no-such-dir", "work")];
  test("measured by default, overridden by --cpus, --memory and --disk, with --label repeatable beside --labels", () => {
    const measured = loadAgentConfig(base, {}) as AgentConfig;
    assert.ok(measured.resources!.cpus >= 1 && measured.resources!.memoryBytes > 0, "CPUs and memory measured");
    assert.ok(measured.resources!.diskBytes > 0, "disk measured on the nearest directory that exists");
    const set = loadAgentConfig([...base, "--cpus", "6", "--memory", "24G", "--disk", "1.5T", "--label", "cpu=fast", "--label=gpu=none", "--labels", "zone=a"], {}) as AgentConfig;
    assert.deepEqual(set.resources, { cpus: 6, memoryBytes: 24 * GiB, diskBytes: 1.5 * 2 ** 40 });
    assert.deepEqual(set.labels, { zone: "a", cpu: "fast", gpu: "none" });
    const fromEnv = loadAgentConfig(base, { PKGFARM_MEMORY: "8G", PKGFARM_CPUS: "2" }) as AgentConfig;
    assert.equal(fromEnv.resources!.memoryBytes, 8 * GiB);
    assert.equal(fromEnv.resources!.cpus, 2);
  });

  test("bad values are one line each", () => {
    const bad = loadAgentConfig([...base, "--memory", "lots", "--disk", "0", "--cpus", "0", "--label", "novalue"], {});
    assert.ok("errors" in bad);
    assert.deepEqual(bad.errors.filter((e) => /memory|disk|cpus|label/.test(e)), [
      "--label must be key=value, not \"novalue\"",
      "--cpus (PKGFARM_CPUS) must be a whole number from 1 to 65536, not \"0\"",
      "--memory (PKGFARM_MEMORY) must be a size such as 16G, 512M or 200GiB, not \"lots\"",
      "--disk (PKGFARM_DISK) must be a size such as 16G, 512M or 200GiB, not \"0\"",
    ]);
    for (const flag of ["--cpus", "--memory", "--disk", "--label"]) assert.ok(agentHelp().includes(flag), `--help names ${flag}`);
  });
});

describe("measuring a build", { skip: process.platform !== "linux" ? "reads /proc" : false }, () => {
  test("groupsRss sums the resident memory of a process group, children included", async () => {
    // A shell that holds ~64 MiB in a child of its own group, then waits.
    const child = spawn("sh", ["-c", "node -e 'const b=Buffer.alloc(64*1024*1024,1); setTimeout(()=>{}, 30000)' & wait"], { detached: true, stdio: "ignore" });
    try {
      const deadline = Date.now() + 10_000;
      let rss = 0;
      while (Date.now() < deadline && rss < 64 * 2 ** 20) {
        rss = await groupsRss("/proc", new Set([child.pid!]));
        if (rss < 64 * 2 ** 20) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(rss >= 64 * 2 ** 20, `the group's RSS (${rss} bytes) holds the child's 64 MiB buffer`);
      assert.equal(await groupsRss("/proc", new Set([2 ** 30])), 0, "a group with no process holds nothing");
    } finally {
      process.kill(-child.pid!, "SIGKILL");
    }
  });

  test("a usage meter follows a build's processes through the agent's sampler and its work directory, and says the peaks", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pkgfarm-meter-"));
    const sampler = createProcessSampler({ everyMs: 50 });
    try {
      const meter = startUsageMeter({ sampler, diskEveryMs: 50 });
      meter.watch(dir);
      const other = startUsageMeter({ sampler });
      const result = await runBuildCommand({
        command: [process.execPath, "-e", `const b = Buffer.alloc(48 * 1024 * 1024, 1); require("fs").writeFileSync(${JSON.stringify(join(dir, "out"))}, Buffer.alloc(2 * 1024 * 1024, 1)); setTimeout(() => {}, 600)`],
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, cwd: dir, timeoutMs: 10_000, onOutput: () => {},
        onSpawn: (pid) => meter.track(pid),
      });
      assert.equal(result.failureReason, "");
      await rm(join(dir, "out"));
      const peak = await meter.stop();
      assert.ok(peak.memoryBytes >= 48 * 2 ** 20, `peak memory ${peak.memoryBytes} holds the 48 MiB buffer`);
      assert.ok(peak.diskBytes >= 2 * 2 ** 20, `peak disk ${peak.diskBytes} saw the 2 MiB file that is gone now`);
      assert.deepEqual(await other.stop(), { memoryBytes: 0, diskBytes: 0 }, "another job's meter counts none of it");
    } finally {
      sampler.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("diskUse counts a directory tree's allocated blocks", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pkgfarm-usage-"));
    try {
      await writeFile(join(dir, "a"), Buffer.alloc(1024 * 1024, 1));
      const used = await diskUse(dir);
      assert.ok(used >= 1024 * 1024 && used < 2 * 1024 * 1024, `1 MiB file: ${used} bytes`);
      assert.equal(await diskUse(join(dir, "gone")), 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
