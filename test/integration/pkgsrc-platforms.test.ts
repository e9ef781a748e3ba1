// Issue 9 on the real pkgsrc tree: agents of two platforms on one host (two
// agent groups whose mk.conf differ) scan the limited list with its closure
// as scan jobs; each platform's tree resolves to what pbulk's own scan of
// that list resolved to, the two trees differ exactly where the mk.conf
// says, and an agent SIGKILLed in the middle of a scan job loses nothing:
// its locations are scanned again by another agent.

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import { DepGraphService, ScanScope, ScanState, type Scan } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";
import { BOOTSTRAP_KIT, EXPECTED_DIR, limitedList, pkgsrcTree, pkgsrcUnavailable } from "../support/pkgsrc.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const ALT_REASON = "digest is not wanted on the alt platform";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Expected {
  readonly pkgname: string;
  readonly location: string;
  readonly depends: string[];
  readonly failReason: string;
}

function expectedClosure(): Expected[] {
  const [, ...rows] = readFileSync(join(EXPECTED_DIR, "closure-resolved.tsv"), "utf8").trimEnd().split("\n");
  return rows.map((row) => {
    const [pkgname, location, depends, , failReason] = row.split("\t");
    return { pkgname: pkgname!, location: location!, depends: (depends ?? "").split(" ").filter((d) => d !== "").sort(), failReason: failReason ?? "" };
  });
}

async function waitForScan(depgraph: Client<typeof DepGraphService>, scanId: string, timeoutMs: number): Promise<Scan> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { scan } = await depgraph.getScan({ scanId });
    if (scan!.state !== ScanState.RUNNING) return scan!;
    assert.ok(Date.now() < deadline, `scan ${scanId} still running after ${timeoutMs} ms: ${scan!.locationsScanned}/${scan!.locationsTotal}`);
    await sleep(250);
  }
}

const skip = pkgsrcUnavailable();

describe("scans on the build hosts, one tree per platform (real pkgsrc tree, real bmake)", { skip }, () => {
  let dir: string;
  let tree: string;
  let depgraphServer: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  let depgraph: Client<typeof DepGraphService>;
  let agents: Client<typeof DispatcherService>;
  const children: ChildProcess[] = [];

  const startAgent = (id: string, extra: string[]): ChildProcess => {
    const child = spawn(process.execPath, [CLI, "agent", "--dispatcher", dispatcher.url, "--id", id, "--slots", "1", "--executor", "pkgsrc",
      "--tree", tree, "--bootstrap-kit", BOOTSTRAP_KIT, "--sandbox-root", join(dir, id, "sandbox"), "--work-dir", join(dir, id, "work"),
      "--log-level", "warn", ...extra], { stdio: ["ignore", "ignore", "inherit"] });
    children.push(child);
    return child;
  };

  before(async () => {
    tree = pkgsrcTree();
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-platforms-"));
    depgraphServer = await startTestDepGraph();
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 500, heartbeatTimeoutMs: 5000, leaseMs: 600_000, logLevel: "silent",
    }, pino({ level: "silent" }));
    depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url));
    agents = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url));
  });
  after(async () => {
    for (const child of children) child.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once("exit", r))));
    await dispatcher.close();
    await depgraphServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("two platforms scan the limited list's closure; each tree resolves as pbulk did, they differ where mk.conf does, and a killed agent loses nothing", { timeout: 900_000 }, async () => {
    // Group one takes its platform from bmake; group two's mk.conf fails a package.
    startAgent("native-1", []);
    startAgent("native-2", []);
    const altConf = join(dir, "alt-mk.conf");
    writeFileSync(altConf, `.if "\${PKGPATH}" == "pkgtools/digest"\nPKG_FAIL_REASON+= "${ALT_REASON}"\n.endif\n`);
    const deadline = Date.now() + 120_000;
    let native = "";
    while (native === "") {
      assert.ok(Date.now() < deadline, "the native agents did not connect");
      const listed = (await agents.listAgents({})).agents;
      if (listed.length === 2) native = listed[0]!.platform;
      else await sleep(200);
    }
    assert.match(native, /^Linux-[0-9].*-x86_64$/, "the platform comes from bmake: OPSYS-OS_VERSION-MACHINE_ARCH");
    const alt = `${native}-alt`;
    startAgent("alt-1", ["--mk-conf", altConf, "--platform", alt]);

    const list = limitedList();
    const nativeScan = (await depgraph.startScan({ platform: native, scope: ScanScope.CLOSURE, locations: list, locationsPerJob: 4 })).scan!;
    const altScan = (await depgraph.startScan({ platform: alt, scope: ScanScope.CLOSURE, locations: list, locationsPerJob: 4 })).scan!;

    // SIGKILL a native agent while it holds a scan job: its locations must be scanned again elsewhere.
    let killed = "";
    while (killed === "") {
      assert.ok(Date.now() < deadline + 120_000, "no native agent ever held a scan job");
      const busy = (await agents.listAgents({})).agents.find((a) => a.platform === native && a.running.length > 0);
      if (busy !== undefined) {
        killed = busy.hello!.agentId;
        children[killed === "native-1" ? 0 : 1]!.kill("SIGKILL");
      } else await sleep(100);
    }

    const [nativeDone, altDone] = await Promise.all([waitForScan(depgraph, nativeScan.id, 600_000), waitForScan(depgraph, altScan.id, 600_000)]);
    for (const scan of [nativeDone, altDone]) {
      assert.equal(scan.state, ScanState.FINISHED);
      assert.equal(scan.locationsFailed, 0, `no location failed: ${scan.problems.map((p) => `${p.location}: ${p.message}`).join("; ")}`);
      assert.ok(scan.rounds >= 3, `the closure took rounds (pbulk: 4), not ${scan.rounds}`);
    }
    const expected = expectedClosure();
    for (const platform of [native, alt]) {
      const packages = new Map<string, { dependencies: string[]; failReason: string; location: string }>();
      let pageToken = "";
      do {
        const page = await depgraph.listPackages({ platform, pageToken, pageSize: 1000 });
        for (const p of page.packages) packages.set(p.pkgname, { dependencies: [...p.dependencies].sort(), failReason: p.failReason, location: p.location });
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      assert.deepEqual([...packages.keys()].sort(), expected.map((e) => e.pkgname).sort(), `${platform}: the closure's packages are pbulk's`);
      for (const e of expected) {
        const got = packages.get(e.pkgname)!;
        assert.equal(got.location, e.location);
        assert.deepEqual(got.dependencies, e.depends, `${platform}: ${e.pkgname} resolves as pbulk's DEPENDS`);
        if (platform === alt && e.location === "pkgtools/digest") assert.match(got.failReason, new RegExp(ALT_REASON));
        else assert.equal(got.failReason !== "", e.failReason !== "", `${platform}: ${e.pkgname} is prefailed exactly when pbulk's scan says so`);
      }
    }
  });
});
