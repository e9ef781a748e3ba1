import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { pino } from "pino";
import type { Page } from "playwright-core";
import { BuildState, DepGraphService, ImportMode } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createBuilderAgent, type BuilderAgent } from "../../services/builder-agent/agent.js";
import { hostPlatform } from "../../services/builder-agent/config.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { chromiumMissing, launchChromium, type HeadlessChromium } from "../support/browser.js";
import { createTestPki } from "../support/certs.js";
import { SMALL_SCAN, startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";

// The status page in headless chromium, on a real farm on loopback:
// depgraph, a dispatcher that serves the page, one agent with two slots
// building the example tree (examples/, about a second per package), and
// operator and agent tokens set, as on a farm on a network.

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLES = join(ROOT, "examples");
const ARTIFACTS = join(ROOT, "dist", "test-artifacts");
const PLATFORM = "Web-1.0-x86_64";
const OPERATOR_TOKEN = "operator-token-for-the-web-test-0123456789";
const AGENT_TOKEN = "agent-token-for-the-web-test-0123456789ab";
const skip = chromiumMissing();

let dataDir = "";
let depgraphServer: RunningDepGraph | undefined;
let dispatcher: RunningDispatcher | undefined;
let agent: BuilderAgent | undefined;
let agentRun: Promise<void> | undefined;
let browser: HeadlessChromium | undefined;
let depgraph: Client<typeof DepGraphService>;

before(async () => {
  if (skip !== undefined) return;
  dataDir = mkdtempSync(join(tmpdir(), "pkgfarm-web-"));
  const logger = pino({ level: "silent" });
  depgraphServer = await startTestDepGraph({ operatorToken: OPERATOR_TOKEN, treeDir: join(EXAMPLES, "tree") });
  depgraph = createClient(DepGraphService, createPkgfarmTransport(depgraphServer.url, { token: OPERATOR_TOKEN }));
  const scan = await promisify(execFile)(process.execPath, [join(EXAMPLES, "bin", "scan-one.mjs"), "--all"], { maxBuffer: 64 * 1024 * 1024 });
  await depgraph.importScan((async function* () {
    yield { pbulkIndex: scan.stdout, mode: ImportMode.REPLACE_TREE };
  })());
  dispatcher = await startDispatcherServer({
    host: "127.0.0.1", port: 0, depgraphUrl: depgraphServer.url,
    packagesRoot: join(dataDir, "packages"), logsRoot: dataDir,
    heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 10_000, leaseMs: 60_000, logLevel: "silent",
    operatorToken: OPERATOR_TOKEN, agentToken: AGENT_TOKEN, publishIntervalMs: 300,
  }, logger);
  agent = createBuilderAgent({
    dispatcherUrl: dispatcher.url, agentId: "web-agent-1", slots: 2, ...hostPlatform(), platform: PLATFORM, labels: {},
    treeDir: join(EXAMPLES, "tree"), buildCommand: [process.execPath, join(EXAMPLES, "bin", "build-one.mjs")],
    workDir: join(dataDir, "agent", "work"), cacheDir: join(dataDir, "agent", "cache"), jobTimeoutMs: 120_000, logLevel: "silent", token: AGENT_TOKEN,
  }, logger);
  agentRun = agent.run();
  const agents = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url, { token: OPERATOR_TOKEN }));
  await eventually("the agent to connect", async () => ((await agents.listAgents({})).agents.length === 1 ? true : undefined), 20_000);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  agent?.stopNow();
  await agentRun;
  await dispatcher?.close(1000);
  await depgraphServer?.close();
  if (dataDir !== "") rmSync(dataDir, { recursive: true, force: true });
});

/** The page's "N/M jobs done" as [N, M]. */
async function progress(page: Page): Promise<[number, number]> {
  const text = (await page.locator("#build-progress").textContent({ timeout: 20_000 })) ?? "";
  const [done, total] = text.split("/").map(Number);
  return [done ?? NaN, total ?? NaN];
}

test("the status page follows a build of the example tree: progress, a failure with its log, why, refusals without the token, reports", { skip, timeout: 120_000 }, async () => {
  const page = await browser!.context.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(dispatcher!.url);
  await page.locator("#builds-body").getByText("no builds yet").waitFor({ timeout: 10_000 });

  const { build } = await depgraph.createBuild({ platform: PLATFORM });
  const id = build!.id;
  await page.locator(`#builds-body tr[data-build="${id}"]`).waitFor({ timeout: 10_000 });

  // Progress moves: a count seen while the build runs, then a larger one.
  const first = await eventually("the page to show the build under way", async () => {
    const [done, total] = await progress(page);
    return total === 37 && done < total ? done : undefined;
  }, 20_000);
  const later = await eventually("the page's progress to move", async () => {
    const [done] = await progress(page);
    return done > first ? done : undefined;
  }, 30_000);
  assert.ok(later > first);
  assert.ok(await page.locator("#progress-graph polygon.area-done").count() === 1, "the graph is drawn");
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "web-status-running.png"), fullPage: true });

  // A running job's log, followed while it runs (ReadLog with follow).
  const running = page.locator("#running li[data-job]").first();
  await running.waitFor({ timeout: 20_000 });
  await running.getByRole("button", { name: "log" }).click();
  await page.locator("#log-title").getByText(/following|complete/).waitFor({ timeout: 5000 });
  await page.locator("#log-text").getByText(/===> /).first().waitFor({ timeout: 10_000 });

  // A cancel without the token is refused by the server, and the build runs on.
  if ((await depgraph.getBuild({ buildId: id })).build!.state === BuildState.RUNNING) {
    await page.locator("#cancel-build").click();
    await page.locator("#build-message").getByText(/refused/).waitFor({ timeout: 10_000 });
    assert.match((await page.locator("#build-message").textContent()) ?? "", /refused: cancelling the build needs the operator token \(unauthenticated: .*operator token/);
    assert.ok(await page.locator("#token-dialog").evaluate((d) => (d as unknown as { open: boolean }).open), "the page asks for the token");
    await page.keyboard.press("Escape");
    assert.notEqual((await depgraph.getBuild({ buildId: id })).build!.state, BuildState.CANCELLED);
  }

  // bison fails for real; its row appears with its log one click away.
  const bison = page.locator('#failures-body tr[data-job="bison-3.8.2"]');
  await bison.waitFor({ timeout: 40_000 });
  assert.match((await bison.textContent()) ?? "", /failed.*exited with status 1/);
  await bison.getByRole("button", { name: "log", exact: true }).click();
  await page.locator("#log-text").getByText(/cannot find -lfl/).waitFor({ timeout: 10_000 });

  await page.locator("#build-title").getByText(/finished/).waitFor({ timeout: 60_000 });
  // Most breakage first: bison blocks two packages, more than any other failure.
  await eventually("bison, blocking two packages, to head the failures", async () =>
    (await page.locator("#failures-body tr").first().getAttribute("data-job")) === "bison-3.8.2" &&
    (await page.locator('#failures-body tr[data-job="bison-3.8.2"] td').nth(4).textContent()) === "2" ? true : undefined, 10_000);

  // Why: a blocked job names the failure that blocks it.
  await page.locator('#jobs-body tr[data-job="ruby33-3.3.6"]').getByRole("button", { name: "why" }).click();
  await page.locator("#why-text").getByText(/bison-3\.8\.2/).waitFor({ timeout: 10_000 });

  // The text report, once the dispatcher has written it.
  await eventually("the text report", async () => {
    await page.locator('[data-report="REPORT_FORMAT_TEXT"]').click();
    const text = await page.locator("#report-text").textContent({ timeout: 1000 });
    return text !== null && /bison/.test(text) ? text : undefined;
  }, 20_000);

  // The finished build, kept as a test artifact.
  const shot = join(ARTIFACTS, "web-status.png");
  await page.locator("#log-close").click();
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(statSync(shot).size > 10_000, "the screenshot was written");

  // The HTML report, in a frame where no script runs.
  await page.locator('[data-report="REPORT_FORMAT_HTML"]').click();
  const frame = page.frameLocator("#report iframe.report-frame");
  await frame.getByText(/bison/).first().waitFor({ timeout: 10_000 });
  assert.equal(await page.locator("#report iframe").getAttribute("sandbox"), "");

  // Draining needs the token: refused without, done with it.
  const drain = page.locator('#agents-body tr[data-agent="web-agent-1"]').getByRole("button", { name: "drain" });
  await drain.click();
  await page.locator("#agents-message").getByText(/refused: draining web-agent-1 needs the operator token/).waitFor({ timeout: 10_000 });
  await page.locator("#token-input").fill(OPERATOR_TOKEN);
  await page.locator("#token-save").click();
  await page.locator("#token-state").getByText("operator token set").waitFor();
  await drain.click();
  await page.locator("#agents-message").getByText(/agent web-agent-1 drains/).waitFor({ timeout: 10_000 });

  assert.deepEqual(pageErrors, [], "no script error on the page");
});

test("over TLS the page speaks HTTP/2, and with no agent connected it says why nothing runs", { skip, timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "pkgfarm-web-tls-"));
  const pki = createTestPki(dir);
  writeFileSync(join(dir, "scan.txt"), SMALL_SCAN);
  const serverTls = { cert: pki.server.cert, key: pki.server.key };
  const tlsDepgraph = await startTestDepGraph({ importFile: join(dir, "scan.txt"), tls: serverTls });
  const tlsDispatcher = await startDispatcherServer({
    host: "127.0.0.1", port: 0, depgraphUrl: tlsDepgraph.url, depgraphTls: { ca: pki.ca }, tls: serverTls,
    packagesRoot: join(dir, "packages"), logsRoot: dir, heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, leaseMs: 60_000, logLevel: "silent",
  }, pino({ level: "silent" }));
  const tlsBrowser = await launchChromium({ ignoreHttpsErrors: true });
  try {
    const page = await tlsBrowser.context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(tlsDispatcher.url);
    const client = createClient(DepGraphService, createPkgfarmTransport(tlsDepgraph.url, { tls: { ca: pki.ca } }));
    const { build } = await client.createBuild({ platform: "Tls-1.0-x86_64", limitTo: ["devel/gmake"] });
    await page.locator(`#builds-body tr[data-build="${build!.id}"]`).waitFor({ timeout: 10_000 });
    await page.locator('#jobs-body tr[data-job="cwrappers-20220403"]').getByRole("button", { name: "why" }).click();
    await page.locator("#why-text").getByText(/no build host of platform Tls-1\.0-x86_64 asked for work/).waitFor({ timeout: 10_000 });
    await page.locator('#jobs-body tr[data-job="gmake-4.4.1"]').getByRole("button", { name: "why" }).click();
    await page.locator("#why-text").getByText(/gmake-4\.4\.1 waits for .*cwrappers-20220403/).waitFor({ timeout: 10_000 });
    const protocols = await page.evaluate(() => performance.getEntriesByType("resource").map((e) => (e as unknown as { nextHopProtocol: string }).nextHopProtocol));
    assert.ok(protocols.length > 0 && protocols.every((p) => p === "h2"), `protocols: ${protocols.join(", ")}`);
    assert.deepEqual(pageErrors, []);
  } finally {
    await tlsBrowser.close();
    await tlsDispatcher.close(1000);
    await tlsDepgraph.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
