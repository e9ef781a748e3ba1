// The pkgfarm farm commands against a real depgraph and dispatcher on
// loopback, with real builder agents building a limited list of the example
// tree: what a person reads, what --json gives a script, and the exit
// statuses. Plaintext and no tokens here; cli-secure.test.ts has TLS and tokens.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { eventually } from "../support/eventually.js";
import { startCliFarm, type CliFarm } from "../support/cli-farm.js";

const PLATFORM = "Cli-1.0-x86_64";
// ruby-rake needs ruby33, which needs bison (which fails for real); omelette
// needs egg, in a cycle with chicken; apache-ant needs openjdk8 (prefailed).
const LIST = ["devel/ruby-rake", "misc/omelette", "devel/apache-ant"];
const JOBS = 15;

describe("pkgfarm farm commands on a plaintext farm", () => {
  let farm: CliFarm;
  let first: string;

  before(async () => {
    farm = await startCliFarm();
    farm.startAgent("cli-a1", PLATFORM, 2);
    farm.startAgent("cli-a2", PLATFORM, 2);
  });
  after(async () => {
    await farm?.close();
  });

  test("build start --json answers the new build; build watch follows it to its end and exits 3 (some package not built)", async () => {
    const listFile = join(farm.dir, "list.txt");
    writeFileSync(listFile, `# the CLI test's list\n${LIST.join("\n")}\n`);
    const started = await farm.child(["build", "start", "--platform", PLATFORM, "--limit", listFile, "--json"]);
    assert.equal(started.code, 0, started.stderr);
    const build = (JSON.parse(started.stdout) as { build: { id: string; platform: string; totalJobs: number; state: string } }).build;
    assert.equal(build.platform, PLATFORM);
    assert.equal(build.totalJobs, JOBS);
    first = build.id;

    const watched = await farm.child(["build", "watch", first]);
    assert.equal(watched.code, 3, `exit status 3: some package not built\n${watched.stdout}${watched.stderr}`);
    const lines = watched.stdout.trim().split("\n");
    assert.match(lines[0]!, new RegExp(`^build ${first} on ${PLATFORM}: \\d+/${JOBS} jobs ended`));
    // One line per job that ends, counted; the failure names the host that ran it.
    assert.match(watched.stdout, new RegExp(`^\\[\\d+/${JOBS}\\] failed +bison-3\\.8\\.2 on host ${hostname()}: `, "m"));
    assert.match(watched.stdout, new RegExp(`^\\[\\d+/${JOBS}\\] succeeded +zlib-1\\.3\\.1 on host ${hostname()}$`, "m"));
    assert.match(watched.stdout, new RegExp(`^\\[\\d+/${JOBS}\\] indirect-failed +ruby33-3\\.3\\.6: needs bison-3\\.8\\.2, which is failed$`, "m"));
    assert.match(watched.stdout, new RegExp(`^build ${first} finished in \\d+\\w*: 7 succeeded, 1 failed, 1 prefailed, 4 indirect-failed, 2 cycle$`, "m"));
    assert.match(watched.stdout, /^ {2}failed: bison-3\.8\.2 \(devel\/bison\) on host \S+ after \d+s: /m);

    // Watching an ended build answers at once, with the same end and status.
    const again = await farm.run(["build", "watch", first]);
    assert.equal(again.code, 3);
    assert.match(again.stdout, /1 failed, 1 prefailed, 4 indirect-failed, 2 cycle/);
  });

  test("build status, build list and jobs show the ended build; --json carries the same", async () => {
    const status = await farm.run(["build", "status", first]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^build ${first} on ${PLATFORM}: finished\\n`));
    assert.match(status.stdout, /^started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, ended .* after \d+s$/m);
    assert.match(status.stdout, new RegExp(`^${JOBS}/${JOBS} jobs ended: 7 succeeded`, "m"));
    assert.doesNotMatch(status.stdout, /ETA|running \(/, "an ended build has no ETA and runs nothing");
    const statusJson = JSON.parse((await farm.run(["build", "status", first, "--json"])).stdout) as { build: { id: string }; running?: unknown[]; estimate?: unknown };
    assert.equal(statusJson.build.id, first);
    assert.equal(statusJson.running, undefined);
    assert.equal(statusJson.estimate, undefined);

    const list = await farm.run(["build", "list"]);
    assert.equal(list.code, 0, list.stderr);
    const [header, ...rows] = list.stdout.trim().split("\n");
    assert.match(header!, /^BUILD +STATE +PLATFORM +MODE +ENDED +FAILED +STARTED +ELAPSED$/);
    const row = rows.find((r) => r.startsWith(first));
    assert.ok(row !== undefined, list.stdout);
    assert.match(row, new RegExp(`^${first} +finished +${PLATFORM} +full +${JOBS}/${JOBS} +1 +\\d{4}-`));
    // Columns line up: every row's STATE starts where the header's does.
    assert.equal(row.indexOf("finished"), header!.indexOf("STATE"));

    const failed = await farm.run(["jobs", first, "--state", "failed,prefailed"]);
    assert.equal(failed.code, 0, failed.stderr);
    const failedRows = failed.stdout.trim().split("\n");
    assert.match(failedRows[0]!, /^PKGNAME +STATE +LOCATION +HOST +TOOK +WHY$/);
    assert.equal(failedRows.length, 3, failed.stdout);
    assert.match(failed.stdout, new RegExp(`^bison-3\\.8\\.2 +failed +devel/bison +${hostname()} +\\d+s +`, "m"));
    assert.match(failed.stdout, /^openjdk8-1\.8\.432 +prefailed +lang\/openjdk8 +- +- +/m);
    const jobsJson = JSON.parse((await farm.run(["jobs", first, "--json"])).stdout) as { jobs: Array<{ pkgname: string; state: string; host?: string }> };
    assert.equal(jobsJson.jobs.length, JOBS);
    const zlib = jobsJson.jobs.find((j) => j.pkgname === "zlib-1.3.1");
    assert.equal(zlib?.state, "JOB_STATE_SUCCEEDED");
    assert.equal(zlib?.host, hostname(), "jobs name the host that built them");

    const badState = await farm.run(["jobs", first, "--state", "broken"]);
    assert.equal(badState.code, 2);
    assert.match(badState.stderr, /^pkgfarm jobs: unknown state "broken": say one of pending, ready, leased, succeeded, failed/);
  });

  test("why explains a failure, and an indirect failure with the chain to its root cause; a location names its job", async () => {
    const failed = await farm.run(["why", first, "bison-3.8.2"]);
    assert.equal(failed.code, 0, failed.stderr);
    assert.match(failed.stdout, /^bison-3\.8\.2 failed: /);
    assert.match(failed.stdout, new RegExp(`^ {2}state: failed on host ${hostname()}$`, "m"));

    const rake = await farm.run(["why", first, "devel/ruby-rake"]);
    assert.equal(rake.code, 0, rake.stderr);
    assert.match(rake.stdout, /^ruby33-rake-13\.2\.1 was not built: it needs bison-3\.8\.2 \(through ruby33-3\.3\.6\), which failed/);
    assert.match(rake.stdout, /chain to the root cause:\n {4}-> ruby33-3\.3\.6 \(lang\/ruby33\) indirect-failed: needs bison-3\.8\.2, which is failed\n {4}-> bison-3\.8\.2 \(devel\/bison\) failed: /);
    const json = JSON.parse((await farm.run(["why", first, "ruby33-rake-13.2.1", "--json"])).stdout) as { chain: Array<{ pkgname: string }>; wait: { kind: string }; summary: string };
    assert.deepEqual(json.chain.map((j) => j.pkgname), ["ruby33-3.3.6", "bison-3.8.2"]);
    assert.equal(json.wait.kind, "WAIT_KIND_NONE");

    const cycle = await farm.run(["why", first, "egg-1.0"]);
    assert.match(cycle.stdout, /^egg-1\.0 is in a dependency cycle with chicken-5\.4\.0/);
    const unknown = await farm.run(["why", first, "nothing-1.0"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, new RegExp(`^pkgfarm why: NOT_FOUND: build "${first}" has no job "nothing-1\\.0"`));
  });

  test("log prints a job's log as plain text, whole or one phase", async () => {
    const log = await farm.child(["log", first, "bison-3.8.2"]);
    assert.equal(log.code, 0, log.stderr);
    assert.match(log.stdout, /cannot find -lfl/, "the build's own output, not base64");
    const missing = await farm.run(["log", first, "bison-3.8.2", "--phase", "configure"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^pkgfarm log: NOT_FOUND: build \S+ has no configure log for bison-3\.8\.2/);
  });

  test("build report prints report.txt, writes report.html, and --json gives report.json; build diff compares two builds", async () => {
    const report = await eventually("the report of the first build", async () => {
      const r = await farm.run(["build", "report", first]);
      return r.code === 0 ? r : undefined;
    }, 20_000);
    assert.match(report.stdout, /^pkgsrc bulk build report\n/);
    assert.match(report.stdout, new RegExp(`Build: ${first}`));
    assert.match(report.stdout, /devel\/bison/);
    const html = join(farm.dir, "first.html");
    const wrote = await farm.child(["build", "report", first, "--html", html]);
    assert.equal(wrote.code, 0, wrote.stderr);
    assert.match(wrote.stdout, new RegExp(`^wrote ${html.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(\\d+ bytes\\)\\n$`));
    assert.match(readFileSync(html, "utf8"), /^<!DOCTYPE html>/);
    const reportJson = JSON.parse((await farm.run(["build", "report", first, "--json"])).stdout) as { buildId: string; packages: unknown[] };
    assert.equal(reportJson.buildId, first);
    assert.equal(reportJson.packages.length, JOBS);

    const noDiff = await farm.run(["build", "diff", first]);
    assert.equal(noDiff.code, 1);
    assert.match(noDiff.stderr, /^pkgfarm build diff: NOT_FOUND: build "\S+" had no earlier ended build of platform Cli-1\.0-x86_64 to compare with/);

    // A second build of the failing package alone: still failing, compared with the first.
    // Followed with --json: WatchJobs' messages, one a line, the build's end among them.
    const second = await farm.run(["build", "start", "--platform", PLATFORM, "--watch", "--json", "devel/bison"]);
    assert.equal(second.code, 3, second.stderr);
    const messages = second.stdout.trim().split("\n").map((l) => JSON.parse(l) as { buildId?: string; toState?: string; host?: string; buildEvent?: { kind: string; build: { state: string } } });
    const secondId = messages[0]!.buildId!;
    assert.ok(messages.some((m) => m.toState === "JOB_STATE_FAILED" && m.host === hostname()), "the failure, with its host");
    const end = messages.find((m) => m.buildEvent !== undefined);
    assert.deepEqual([end?.buildEvent?.kind, end?.buildEvent?.build.state], ["BUILD_EVENT_KIND_ENDED", "BUILD_STATE_FINISHED"]);
    const diff = await eventually("the report of the second build", async () => {
      const r = await farm.run(["build", "diff", secondId]);
      return r.code === 0 ? r : undefined;
    }, 20_000);
    assert.match(diff.stdout, new RegExp(`^Changes in build ${secondId} since build ${first} `));
    assert.match(diff.stdout, /^ {2}Still failing: +1$/m);
    assert.match(diff.stdout, /^ {2}devel\/bison +bison-3\.8\.2: failed, was failed$/m);
    const against = JSON.parse((await farm.run(["build", "diff", secondId, first, "--json"])).stdout) as { previousBuildId: string; stillFailing: Array<{ pkgname: string }>; fixed: unknown[] };
    assert.equal(against.previousBuildId, first);
    assert.deepEqual(against.stillFailing.map((e) => e.pkgname), ["bison-3.8.2"]);
    assert.deepEqual(against.fixed, []);
    const none = join(farm.dir, "none.html");
    const refused = await farm.run(["build", "report", "no-such-build", "--html", none]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^pkgfarm build report: NOT_FOUND: no report for build "no-such-build" yet/);
    assert.equal(existsSync(none), false, "a refusal leaves no empty file");
    const badId = await farm.run(["build", "report", "../../etc"]);
    assert.equal(badId.code, 1);
    assert.match(badId.stderr, /INVALID_ARGUMENT: build_id "\.\.\/\.\.\/etc" is not a build id/);
  });

  test("agents lists the agents with host, platform and slots; agents drain takes one out; a cancelled build's watch exits 4", async () => {
    const agents = await farm.child(["agents"]);
    assert.equal(agents.code, 0, agents.stderr);
    const rows = agents.stdout.trim().split("\n");
    assert.match(rows[0]!, /^AGENT +HOST +PLATFORM +STATE +SLOTS +LAST SEEN +DONE +RUNNING$/);
    assert.match(agents.stdout, new RegExp(`^cli-a1 +${hostname()} +${PLATFORM} +active +0/2 +\\d+s ago +\\d+ +-$`, "m"));
    const json = JSON.parse((await farm.run(["agents", "--json"])).stdout) as { agents: Array<{ hello: { agentId: string } }> };
    assert.deepEqual(json.agents.map((a) => a.hello.agentId), ["cli-a1", "cli-a2"]);

    const drained = await farm.run(["agents", "drain", "cli-a2"]);
    assert.equal(drained.code, 0, drained.stderr);
    assert.match(drained.stdout, /^agent cli-a2 is draining: it runs nothing\n$/);
    // A real agent told to drain with nothing to finish leaves; until then it is listed draining.
    await eventually("cli-a2 to stop taking work", async () => {
      const listed = (await farm.run(["agents"])).stdout;
      return /^cli-a2 /m.test(listed) && !/^cli-a2 +\S+ +\S+ +draining /m.test(listed) ? undefined : true;
    });
    const nobody = await farm.run(["agents", "drain", "nobody"]);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /^pkgfarm agents drain: NOT_FOUND: no agent with id "nobody" is connected/);

    // A build for a platform no agent serves stays ready; cancelling it ends the watch with 4.
    const started = await farm.run(["build", "start", "--platform", "Nobody-1.0-x86_64", "devel/zlib"]);
    assert.equal(started.code, 0, started.stderr);
    const id = /^build (\S+) on Nobody-1\.0-x86_64: 3 jobs$/m.exec(started.stdout)![1]!;
    const watching = farm.child(["build", "watch", id]);
    const cancelled = await farm.run(["build", "cancel", id]);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.match(cancelled.stdout, new RegExp(`^build ${id} cancelled: 3 cancelled\\n$`));
    const watched = await watching;
    assert.equal(watched.code, 4, watched.stdout + watched.stderr);
    assert.match(watched.stdout, new RegExp(`^build ${id} cancelled in \\d+\\w*: 3 cancelled$`, "m"));
  });

  test("scan scans on the platform's agents; a build all of whose packages build exits 0; the older pkgfarm build form and --server still work", async () => {
    const platform = "Scan-1.0-x86_64";
    farm.startAgent("cli-s1", platform, 2, true);
    const scanned = await farm.child(["scan", "--platform", platform, "--closure", "devel/zlib"]);
    assert.equal(scanned.code, 0, scanned.stdout + scanned.stderr);
    assert.match(scanned.stdout, new RegExp(`^pkgfarm scan: scan \\S+ on ${platform}: closure, 1 location\\(s\\) queued$`, "m"));
    assert.match(scanned.stdout, /^pkgfarm scan: finished: round \d+, 3\/3 locations scanned \(0 reused, 0 failed\), 3 records/m);

    const built = await farm.run(["build", "start", "--platform", platform, "--watch", "devel/zlib"]);
    assert.equal(built.code, 0, `exit status 0: every package built\n${built.stdout}${built.stderr}`);
    assert.match(built.stdout, /^build \S+ finished in \d+\w*: 3 succeeded$/m);

    const legacy = await farm.run(["build", "--platform", platform, "--no-wait", "devel/zlib"]);
    assert.equal(legacy.code, 0, legacy.stderr);
    assert.match(legacy.stdout, new RegExp(`^build \\S+ on ${platform}: 3 jobs\\n$`));
    const viaServer = await farm.run(["build", "list", "--platform", platform, "--server", farm.depgraph.url], {}, false);
    assert.equal(viaServer.code, 0, viaServer.stderr);
    assert.equal(viaServer.stdout.trim().split("\n").length, 3, "a header and the two builds");
    const id = /^build (\S+) on /.exec(legacy.stdout)![1]!;
    assert.equal((await farm.run(["build", "watch", id])).code, 0);
  });

  test("usage: --help on each verb exits 0; bad arguments exit 2 with the usage; an unreachable server exits 1 with UNAVAILABLE", async () => {
    for (const verb of [["build", "start"], ["build", "list"], ["build", "status"], ["build", "watch"], ["build", "cancel"], ["build", "report"], ["build", "diff"], ["jobs"], ["why"], ["log"], ["agents"], ["agents", "drain"], ["scan"]]) {
      const help = await farm.run([...verb, "--help"]);
      assert.equal(help.code, 0, verb.join(" "));
      assert.match(help.stdout, new RegExp(`^usage: pkgfarm ${verb.join(" ")} `), verb.join(" "));
      assert.match(help.stdout, /--depgraph URL/, `${verb.join(" ")} --help tells how to reach the farm`);
    }
    const group = await farm.child(["build", "--help"]);
    assert.equal(group.code, 0);
    assert.match(group.stdout, /^usage: pkgfarm build COMMAND/);
    assert.match(group.stdout, /pkgfarm build watch +BUILD/);

    const noBuild = await farm.run(["build", "status"]);
    assert.equal(noBuild.code, 2);
    assert.match(noBuild.stderr, /^pkgfarm build status: takes 1 argument, not 0\nusage: pkgfarm build status BUILD/);
    const unknownFlag = await farm.run(["why", "b", "p", "--bogus"]);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /^pkgfarm why: Unknown option '--bogus'/);
    const unknownVerb = await farm.run(["build", "frobnicate"]);
    assert.equal(unknownVerb.code, 2);
    assert.match(unknownVerb.stderr, /^pkgfarm build: unknown command "frobnicate"/);
    const tlsOnHttp = await farm.run(["build", "list", "--tls-ca", join(farm.dir, "none.pem")]);
    assert.equal(tlsOnHttp.code, 2);
    assert.match(tlsOnHttp.stderr, /--tls-ca \(PKGFARM_TLS_CA\): cannot read/);
    const noList = await farm.run(["build", "start", "--limit", join(farm.dir, "no-such-list")]);
    assert.equal(noList.code, 2);
    assert.match(noList.stderr, /^pkgfarm build start: --limit \S+no-such-list: cannot read it: ENOENT\n/);
    const unknownBuild = await farm.run(["build", "status", "no-such-build"]);
    assert.equal(unknownBuild.code, 1);
    assert.match(unknownBuild.stderr, /^pkgfarm build status: NOT_FOUND: no build has id "no-such-build"\n$/);

    // A port nobody listens on.
    const down = await farm.run(["build", "list", "--depgraph", "http://127.0.0.1:9"], {}, false);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^pkgfarm build list: UNAVAILABLE: /);
    assert.ok(existsSync(farm.dir));
  });
});
