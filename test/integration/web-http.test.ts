import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { loadDispatcherConfig } from "../../services/dispatcher/config.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createTestPki, type TestPki } from "../support/certs.js";
import { SMALL_SCAN, startTestDepGraph } from "../support/depgraph-server.js";
import { eventually } from "../support/eventually.js";

// What a browser and `curl --http1.1` get from the ports: Connect with JSON
// over HTTP/1.1 (cleartext and TLS), the status page's files, CORS for the
// allowed origins only, and the dispatcher's forwarded depgraph calls with
// their token check.

const OPERATOR = "operator-token-for-web-http-0123456789";
const ALLOWED = "http://status.example.org";

interface CurlAnswer {
  readonly status: number;
  readonly version: string;
  readonly headers: Map<string, string>;
  readonly body: string;
}

/** curl with the given arguments; the answer's HTTP version, status, headers (lower-case names) and body. */
async function curl(...args: string[]): Promise<CurlAnswer> {
  const marker = "\n--pkgfarm-curl--";
  const { stdout } = await promisify(execFile)("curl", ["-sS", "-D", "-", "-w", `${marker}%{http_version} %{http_code}`, "--max-time", "10", ...args]);
  const [answer, trailer] = stdout.split(marker) as [string, string];
  const [version, status] = trailer.trim().split(" ");
  const split = answer.indexOf("\r\n\r\n");
  const headers = new Map<string, string>();
  for (const line of answer.slice(0, split).split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(status), version: version!, headers, body: answer.slice(split + 4) };
}

const connectJson = (url: string, body: unknown, ...extra: string[]) =>
  curl("--http1.1", "-H", "content-type: application/json", "--data", JSON.stringify(body), ...extra, url);

describe("HTTP/1.1, CORS and the page on a cleartext dispatcher", () => {
  let dir: string;
  let depgraph: RunningDepGraph;
  let dispatcher: RunningDispatcher;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-web-http-"));
    writeFileSync(join(dir, "scan.txt"), SMALL_SCAN);
    depgraph = await startTestDepGraph({ importFile: join(dir, "scan.txt"), operatorToken: OPERATOR });
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraph.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, leaseMs: 60_000, logLevel: "silent",
      operatorToken: OPERATOR, corsOrigins: [ALLOWED],
    }, pino({ level: "silent" }));
  });
  after(async () => {
    await dispatcher.close(1000);
    await depgraph.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("curl --http1.1 with the Connect JSON protocol gets answers from depgraph and the dispatcher", async () => {
    const builds = await connectJson(`${depgraph.url}/pkgfarm.v1.DepGraphService/ListBuilds`, {});
    assert.equal(builds.version, "1.1");
    assert.equal(builds.status, 200);
    assert.equal(builds.headers.get("content-type"), "application/json");
    assert.deepEqual(JSON.parse(builds.body), {});
    const agents = await connectJson(`${dispatcher.url}/pkgfarm.v1.DispatcherService/ListAgents`, {});
    assert.equal(agents.version, "1.1");
    assert.equal(agents.status, 200);
    assert.deepEqual(JSON.parse(agents.body), {});
    // An error is a Connect error body with its HTTP status.
    const unknown = await connectJson(`${depgraph.url}/pkgfarm.v1.DepGraphService/GetBuild`, { buildId: "no-such-build" });
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.body).code, "not_found");
    // HTTP/2 with prior knowledge still goes to the HTTP/2 server on the same port.
    const h2 = await curl("--http2-prior-knowledge", "-H", "content-type: application/json", "--data", "{}", `${dispatcher.url}/pkgfarm.v1.DispatcherService/ListAgents`);
    assert.equal(h2.version, "2");
    assert.equal(h2.status, 200);
  });

  test("the dispatcher forwards the page's depgraph calls; CancelBuild needs the operator token there too", async () => {
    const platforms = await connectJson(`${dispatcher.url}/pkgfarm.v1.DepGraphService/ListPlatforms`, {});
    assert.equal(platforms.status, 200, platforms.body);
    const created = await connectJson(`${depgraph.url}/pkgfarm.v1.DepGraphService/CreateBuild`, { platform: "Web-1.0-x86_64", limitTo: ["devel/gmake"] }, "-H", `authorization: Bearer ${OPERATOR}`);
    assert.equal(created.status, 200, created.body);
    const id = JSON.parse(created.body).build.id as string;
    const status = await connectJson(`${dispatcher.url}/pkgfarm.v1.DepGraphService/GetBuildStatus`, { buildId: id });
    assert.equal(status.status, 200, status.body);
    assert.equal(JSON.parse(status.body).build.id, id);

    const refused = await connectJson(`${dispatcher.url}/pkgfarm.v1.DepGraphService/CancelBuild`, { buildId: id });
    assert.equal(refused.status, 401);
    assert.equal(JSON.parse(refused.body).code, "unauthenticated");
    const wrong = await connectJson(`${dispatcher.url}/pkgfarm.v1.DepGraphService/CancelBuild`, { buildId: id }, "-H", "authorization: Bearer not-the-operator-token");
    assert.equal(wrong.status, 401);
    const still = await connectJson(`${depgraph.url}/pkgfarm.v1.DepGraphService/GetBuild`, { buildId: id });
    assert.notEqual(JSON.parse(still.body).build.state, "BUILD_STATE_CANCELLED");

    const cancelled = await connectJson(`${dispatcher.url}/pkgfarm.v1.DepGraphService/CancelBuild`, { buildId: id }, "-H", `authorization: Bearer ${OPERATOR}`);
    assert.equal(cancelled.status, 200, cancelled.body);
    assert.equal(JSON.parse(cancelled.body).build.state, "BUILD_STATE_CANCELLED");
    // Only the page's calls are forwarded.
    const other = await connectJson(`${dispatcher.url}/pkgfarm.v1.DepGraphService/NextReadyJob`, { platform: "x" }, "-H", `authorization: Bearer ${OPERATOR}`);
    assert.equal(JSON.parse(other.body).code, "unimplemented");
  });

  test("GET / is the status page; its files are served by name only, with a content security policy", async () => {
    const index = await curl("--http1.1", `${dispatcher.url}/`);
    assert.equal(index.status, 200);
    assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
    assert.match(index.body, /<script type="module" src="\/app\.js"><\/script>/);
    assert.match(index.headers.get("content-security-policy") ?? "", /script-src 'self'.*connect-src 'self'/);
    for (const file of ["app.js", "rpc.js", "format.js", "timeline.js", "graph.js"]) {
      const js = await curl("--http1.1", `${dispatcher.url}/${file}`);
      assert.equal(js.status, 200, file);
      assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8", file);
    }
    const again = await curl("--http1.1", "-H", `if-none-match: ${index.headers.get("etag")}`, `${dispatcher.url}/`);
    assert.equal(again.status, 304);
    assert.equal((await curl("--http1.1", "--path-as-is", `${dispatcher.url}/../package.json`)).status, 404);
    assert.equal((await curl("--http1.1", `${dispatcher.url}/static-files.js`)).status, 404);
    assert.equal((await curl("--http1.1", "-X", "DELETE", `${dispatcher.url}/app.js`)).status, 405);
    // The page over HTTP/2 too (what a TLS browser connection gets).
    assert.equal((await curl("--http2-prior-knowledge", `${dispatcher.url}/`)).status, 200);
  });

  test("CORS: an allowed origin's preflight is answered with Connect's headers; any other origin is refused", async () => {
    const url = `${dispatcher.url}/pkgfarm.v1.DispatcherService/ListAgents`;
    const preflight = (origin: string) => curl("--http1.1", "-X", "OPTIONS", "-H", `origin: ${origin}`, "-H", "access-control-request-method: POST",
      "-H", "access-control-request-headers: content-type,connect-protocol-version,authorization", url);
    const allowed = await preflight(ALLOWED);
    assert.equal(allowed.status, 204);
    assert.equal(allowed.headers.get("access-control-allow-origin"), ALLOWED);
    assert.match(allowed.headers.get("access-control-allow-methods") ?? "", /POST/);
    for (const header of ["Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms", "Authorization", "X-Grpc-Web"]) {
      assert.ok((allowed.headers.get("access-control-allow-headers") ?? "").split(", ").includes(header), header);
    }
    const refused = await preflight("http://evil.example");
    assert.equal(refused.status, 403);
    assert.match(refused.body, /origin http:\/\/evil\.example may not call this server; start it with --cors-origins/);
    assert.equal(refused.headers.get("access-control-allow-origin"), undefined);

    const call = await connectJson(url, {}, "-H", `origin: ${ALLOWED}`);
    assert.equal(call.status, 200);
    assert.equal(call.headers.get("access-control-allow-origin"), ALLOWED);
    assert.match(call.headers.get("access-control-expose-headers") ?? "", /Grpc-Status/);
    const foreign = await connectJson(url, {}, "-H", "origin: http://evil.example");
    assert.equal(foreign.headers.get("access-control-allow-origin"), undefined, "the browser keeps the answer from a foreign page");
    // depgraph allows no other origin by default.
    const depgraphPreflight = await curl("--http1.1", "-X", "OPTIONS", "-H", `origin: ${ALLOWED}`, "-H", "access-control-request-method: POST", `${depgraph.url}/pkgfarm.v1.DepGraphService/ListBuilds`);
    assert.equal(depgraphPreflight.status, 403);
  });

  test("a connection reset before its first bytes say which HTTP it speaks costs only that connection", async () => {
    const { port } = new URL(depgraph.url);
    for (const opening of ["", "PR", "POS"]) {
      const socket = net.connect(Number(port), "127.0.0.1");
      await once(socket, "connect");
      if (opening !== "") socket.write(opening);
      socket.resetAndDestroy();
      await once(socket, "close");
    }
    const after = await connectJson(`${depgraph.url}/pkgfarm.v1.DepGraphService/ListBuilds`, {});
    assert.equal(after.status, 200);
  });

  test("--cors-origins takes origins or *, and refuses anything else with one line", () => {
    const ok = loadDispatcherConfig(["--cors-origins", `${ALLOWED}, https://b.example:8443`], {});
    assert.ok(!("errors" in ok));
    assert.deepEqual(ok.corsOrigins, [ALLOWED, "https://b.example:8443"]);
    const any = loadDispatcherConfig([], { PKGFARM_CORS_ORIGINS: "*" });
    assert.ok(!("errors" in any));
    assert.deepEqual(any.corsOrigins, ["*"]);
    const bad = loadDispatcherConfig(["--cors-origins", "status.example.org/page"], {});
    assert.ok("errors" in bad);
    assert.deepEqual(bad.errors, ['--cors-origins (PKGFARM_CORS_ORIGINS) takes origins like https://status.example.org or "*", not "status.example.org/page"']);
  });
});

describe("HTTP/1.1 over TLS", () => {
  let dir: string;
  let pki: TestPki;
  let depgraph: RunningDepGraph;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-web-tls-"));
    pki = createTestPki(dir);
    depgraph = await startTestDepGraph({ tls: { cert: pki.server.cert, key: pki.server.key } });
  });
  after(async () => {
    await depgraph.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("ALPN offers h2 and http/1.1: curl gets Connect JSON answers over either", async () => {
    const url = `${depgraph.url}/pkgfarm.v1.DepGraphService/ListBuilds`;
    const h1 = await connectJson(url, {}, "--cacert", pki.caPath);
    assert.equal(h1.version, "1.1");
    assert.equal(h1.status, 200);
    const h2 = await curl("--http2", "--cacert", pki.caPath, "-H", "content-type: application/json", "--data", "{}", url);
    assert.equal(h2.version, "2");
    assert.equal(h2.status, 200);
  });
});

describe("shutdown with browsers connected over HTTP/1.1", () => {
  test("an idle keep-alive connection and an open WatchJobs stream do not hold the port open until the grace ends", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pkgfarm-web-close-"));
    writeFileSync(join(dir, "scan.txt"), SMALL_SCAN);
    const depgraph = await startTestDepGraph({ importFile: join(dir, "scan.txt") });
    const dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraph.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, leaseMs: 60_000, logLevel: "silent",
    }, pino({ level: "silent" }));
    const agent = new http.Agent({ keepAlive: true });
    try {
      const post = (path: string, contentType: string, body: Buffer) => new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.request(`${dispatcher.url}${path}`, { method: "POST", agent, headers: { "content-type": contentType } }, resolve);
        req.once("error", reject);
        req.end(body);
      });
      // One call that ends, leaving its connection idle in the agent's pool.
      const idle = await post("/pkgfarm.v1.DispatcherService/ListAgents", "application/json", Buffer.from("{}"));
      idle.resume();
      await once(idle, "end");
      // One stream that stays open: WatchJobs of every build, forwarded to depgraph.
      const json = Buffer.from("{}");
      const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, json.length]), json]);
      // connect sends a stream's headers with its first message: a build's start.
      const watching = post("/pkgfarm.v1.DepGraphService/WatchJobs", "application/connect+json", envelope);
      await eventually("WatchJobs to be forwarded", async () => {
        const created = await connectJson(`${depgraph.url}/pkgfarm.v1.DepGraphService/CreateBuild`, { platform: "Web-1.0-x86_64", limitTo: ["devel/gmake"] });
        assert.equal(created.status, 200, created.body);
        return Promise.race([watching, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 200))]);
      });
      const watch = await watching;
      assert.equal(watch.statusCode, 200);
      const [first] = await once(watch, "data") as [Buffer];
      assert.ok(first.length > 5, "a message came");
      const started = Date.now();
      await dispatcher.close(10_000);
      assert.ok(Date.now() - started < 3000, `closed in ${Date.now() - started} ms, not at the end of the 10 s grace`);
    } finally {
      agent.destroy();
      await depgraph.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("--read-auth token covers the forwarded reads", () => {
  test("the page's depgraph reads on the dispatcher need the read token too; the page itself loads without one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pkgfarm-web-read-"));
    const read = "read-token-for-web-http-0123456789abcdef";
    writeFileSync(join(dir, "scan.txt"), SMALL_SCAN);
    const depgraph = await startTestDepGraph({ importFile: join(dir, "scan.txt"), operatorToken: OPERATOR });
    const dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraph.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, leaseMs: 60_000, logLevel: "silent",
      operatorToken: OPERATOR, readAuth: "token", readToken: read,
    }, pino({ level: "silent" }));
    try {
      const url = `${dispatcher.url}/pkgfarm.v1.DepGraphService/ListBuilds`;
      const refused = await connectJson(url, {});
      assert.equal(refused.status, 401);
      assert.match(JSON.parse(refused.body).message, /needs a token \(read, operator or agent\)/);
      assert.equal((await connectJson(url, {}, "-H", `authorization: Bearer ${read}`)).status, 200);
      // The read token does not cancel.
      const cancel = await connectJson(`${dispatcher.url}/pkgfarm.v1.DepGraphService/CancelBuild`, { buildId: "x" }, "-H", `authorization: Bearer ${read}`);
      assert.equal(cancel.status, 401);
      assert.equal((await curl("--http1.1", `${dispatcher.url}/`)).status, 200);
    } finally {
      await dispatcher.close(1000);
      await depgraph.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
