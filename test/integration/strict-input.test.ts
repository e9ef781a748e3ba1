// Strict input on real servers on loopback: JSON and protobuf refused with
// INVALID_ARGUMENT, bounded error messages, ImportScan's guards, ListPackages'
// page bounds, reads behind a token, and `pkgfarm import`'s exit codes.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { DepGraphService, GetBuildRequestSchema, ImportMode, ImportScanRequestSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { runImport } from "../../services/cli/import.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";

const run = promisify(execFile);
const BUF = new URL("../../../node_modules/.bin/buf", import.meta.url).pathname;
const GET_BUILD = "/pkgfarm.v1.DepGraphService/GetBuild";

/** A record as pbulk's scan prints it. */
function rec(pkgname: string, location: string, options: { deps?: string; scanDepends?: string } = {}): string {
  return `PKGNAME=${pkgname}
PKG_LOCATION=${location}
ALL_DEPENDS=${options.deps ?? ""}
PKG_SKIP_REASON=
PKG_FAIL_REASON=
NO_BIN_ON_FTP=
RESTRICTED=
CATEGORIES=${location.split("/")[0]}
MAINTAINER=pkgsrc-users@NetBSD.org
USE_DESTDIR=user-destdir
BOOTSTRAP_PKG=
USERGROUP_PHASE=
SCAN_DEPENDS=${options.scanDepends ?? "../../mk/bsd.pkg.mk"}
`;
}

function tree(n: number, prefix = "p"): string {
  let s = "";
  for (let i = 0; i < n; i++) s += rec(`${prefix}${i}-1.0`, `misc/${prefix}${i}`);
  return s;
}

async function* chunks(text: string, share = 0, mode = ImportMode.REPLACE_TREE) {
  yield create(ImportScanRequestSchema, { pbulkIndex: text, mode, maxRemovedShare: share });
}

async function expectCode(promise: Promise<unknown>, code: Code, message?: RegExp): Promise<ConnectError> {
  let caught: ConnectError | undefined;
  await assert.rejects(promise, (e: unknown) => {
    if (!(e instanceof ConnectError)) assert.fail(`expected ConnectError, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${Code[code]}, got ${Code[e.code]}: ${e.message}`);
    if (message) assert.match(e.rawMessage, message);
    caught = e;
    return true;
  });
  return caught!;
}

/** One raw HTTP/2 POST, for bodies no real client would send. */
async function rawPost(url: string, path: string, contentType: string, body: Uint8Array): Promise<{ status: number; headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }> {
  const session = http2.connect(url);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path, "content-type": contentType, te: "trailers" });
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const parts: Buffer[] = [];
      req.on("response", (h) => (headers = h));
      req.on("trailers", (t) => (trailers = t));
      req.on("data", (d: Buffer) => parts.push(d));
      req.on("end", () => resolve({ status: Number(headers[":status"]), headers, trailers, body: Buffer.concat(parts) }));
      req.on("error", reject);
      req.end(body);
    });
  } finally {
    session.close();
  }
}

function envelope(flags: number, payload: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Field 1 (build_id), length-delimited, claiming 50 bytes and giving 2: no protobuf parser takes it. */
const MALFORMED = Buffer.from([0x0a, 0x32, 0x61, 0x62]);

describe("strict input over real servers", () => {
  let server: RunningDepGraph;
  let client: Client<typeof DepGraphService>;

  before(async () => {
    server = await startTestDepGraph({ maxImportBytes: 1024 * 1024 });
    client = createClient(DepGraphService, createPkgfarmTransport(server.url));
  });
  after(async () => {
    await server.close();
  });

  test("JSON with an unknown field or enum name is INVALID_ARGUMENT (Connect and gRPC JSON), and no build starts", async () => {
    await client.importScan(chunks(tree(3)));
    for (const body of [
      { platform: "NetBSD-10.0-x86_64", limitto: ["misc/p1"] },
      { platform: "NetBSD-10.0-x86_64", mode: "BUILD_MODE_INCREMENTL" },
    ]) {
      // buf curl refuses both on its own side (it knows the schema), so the
      // JSON goes straight over HTTP/2 as a client without the schema sends it.
      const connect = await rawPost(server.url, "/pkgfarm.v1.DepGraphService/CreateBuild", "application/json", Buffer.from(JSON.stringify(body)));
      assert.equal(connect.status, 400, JSON.stringify(body));
      const error = JSON.parse(connect.body.toString()) as { code: string; message: string };
      assert.equal(error.code, "invalid_argument");
      assert.match(error.message, /limitto|BUILD_MODE_INCREMENTL/);
      const viaGrpc = await rawPost(server.url, "/pkgfarm.v1.DepGraphService/CreateBuild", "application/grpc+json", envelope(0, Buffer.from(JSON.stringify(body))));
      assert.equal(viaGrpc.trailers["grpc-status"] ?? viaGrpc.headers["grpc-status"], "3");
    }
    assert.equal((await client.listBuilds({})).builds.length, 0, "no build was started by any of them");
    // The same request spelled right is taken (buf curl, JSON through the schema).
    const ok = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--schema", "proto", "-d", JSON.stringify({ platform: "NetBSD-10.0-x86_64", limitTo: ["misc/p1"], mode: "BUILD_MODE_FULL" }),
      `${server.url}/pkgfarm.v1.DepGraphService/CreateBuild`]);
    assert.match(ok.stdout, /"totalJobs": 1/);
  });

  test("malformed protobuf is INVALID_ARGUMENT over gRPC (grpc-js), gRPC-Web and Connect", async () => {
    const address = server.url.replace("http://", "");
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const status = await new Promise<grpc.ServiceError>((resolve, reject) => {
        raw.makeUnaryRequest(GET_BUILD, (b: Buffer) => b, (b: Buffer) => b, MALFORMED, (error) => (error ? resolve(error) : reject(new Error("accepted"))));
      });
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT, status.details);
      assert.match(status.details, /parse binary/);
      // A well-formed request for a build that is not there is NOT_FOUND, and a
      // 100 KB id is not echoed back whole.
      const huge = Buffer.from(toBinary(GetBuildRequestSchema, create(GetBuildRequestSchema, { buildId: "b".repeat(100_000) })));
      const notFound = await new Promise<grpc.ServiceError>((resolve, reject) => {
        raw.makeUnaryRequest(GET_BUILD, (b: Buffer) => b, (b: Buffer) => b, huge, (error) => (error ? resolve(error) : reject(new Error("accepted"))));
      });
      assert.equal(notFound.code, grpc.status.NOT_FOUND, notFound.details);
      assert.ok(notFound.details.length < 400, `message of ${notFound.details.length} characters`);
    } finally {
      raw.close();
    }
    const web = await rawPost(server.url, GET_BUILD, "application/grpc-web+proto", envelope(0, MALFORMED));
    const trailerFrame = web.body.subarray(web.body.indexOf(0x80));
    assert.match(trailerFrame.toString("latin1"), /grpc-status: ?3\r\n/);
    const connect = await rawPost(server.url, GET_BUILD, "application/proto", MALFORMED);
    assert.equal(connect.status, 400);
    assert.equal(JSON.parse(connect.body.toString()).code, "invalid_argument");
    // A streaming call parses as it goes: the same status.
    const stream = await rawPost(server.url, "/pkgfarm.v1.DepGraphService/ImportScan", "application/grpc", envelope(0, MALFORMED));
    assert.equal(stream.trailers["grpc-status"] ?? stream.headers["grpc-status"], "3");
  });

  test("an unknown JSON field of 100 KB is refused with a message of bounded length", async () => {
    const body = JSON.stringify({ ["x".repeat(100_000)]: 1 });
    const res = await rawPost(server.url, GET_BUILD, "application/json", Buffer.from(body));
    assert.equal(res.status, 400);
    const error = JSON.parse(res.body.toString()) as { code: string; message: string };
    assert.equal(error.code, "invalid_argument");
    assert.ok(error.message.length <= 1024, `message of ${error.message.length} characters`);
  });

  test("a whole-tree import that would remove more than max_removed_share is refused, saying how many would go", async () => {
    await client.importScan(chunks(tree(10)));
    const refused = await expectCode(client.importScan(chunks(tree(4))), Code.FailedPrecondition, /would remove 6 of the tree's 10 packages \(60%/);
    assert.match(refused.rawMessage, /max_removed_share 1/);
    assert.equal((await client.listPackages({})).packages.length, 10, "the tree was left as it was");
    // A share that allows it, and 1 (any), take it; an updated version at the same location is no removal.
    await client.importScan(chunks(tree(4), 0.7));
    assert.equal((await client.listPackages({})).packages.length, 4);
    await client.importScan(chunks(tree(4).replaceAll("-1.0\n", "-2.0\n")));
    assert.deepEqual((await client.listPackages({})).packages.map((p) => p.pkgname), ["p0-2.0", "p1-2.0", "p2-2.0", "p3-2.0"]);
    await client.importScan(chunks(tree(1, "q"), 1));
    assert.equal((await client.listPackages({})).packages.length, 1);
    await expectCode(client.importScan(chunks(tree(1), 1.5)), Code.InvalidArgument, /max_removed_share must be from 0 to 1/);
    // Replacing locations removes only what it names: no share applies.
    await client.importScan(chunks(tree(3, "r"), 0, ImportMode.REPLACE_LOCATIONS));
    assert.equal((await client.listPackages({})).packages.length, 4);
  });

  test("an ImportScan stream over the total limit is RESOURCE_EXHAUSTED and imports nothing", async () => {
    await client.importScan(chunks(tree(2, "s"), 1));
    async function* big() {
      for (let i = 0; i < 40; i++) yield create(ImportScanRequestSchema, { pbulkIndex: tree(100, `big${i}x`), mode: i === 0 ? ImportMode.REPLACE_TREE : ImportMode.UNSPECIFIED, maxRemovedShare: 1 });
    }
    await expectCode(client.importScan(big()), Code.ResourceExhausted, /longer than this server takes \(1048576 bytes/);
    assert.deepEqual((await client.listPackages({})).packages.map((p) => p.pkgname), ["s0-1.0", "s1-1.0"]);
  });

  test("ListPackages leaves scan_depends out unless asked, carries scan_vars, refuses page_size over the maximum and stays under 4 MiB", async () => {
    // 1,500 packages with 6 KB of SCAN_DEPENDS each: 9 MB if a page held them all.
    let text = "";
    const depends = Array.from({ length: 200 }, (_, i) => `../../mk/some/file-${i}.mk`).join(" ");
    for (let i = 0; i < 1500; i++) text += rec(`w${String(i).padStart(4, "0")}-1.0`, `misc/w${i}`, { scanDepends: depends });
    const bigServer = await startTestDepGraph();
    try {
      const big = createClient(DepGraphService, createPkgfarmTransport(bigServer.url));
      await big.importScan(chunks(text));
      const page = await big.listPackages({});
      assert.equal(page.packages.length, 1000);
      assert.deepEqual(page.packages[0]!.scanDepends, []);
      assert.deepEqual(page.packages[0]!.scanVars, { NO_BIN_ON_FTP: "", RESTRICTED: "", USE_DESTDIR: "user-destdir", BOOTSTRAP_PKG: "", USERGROUP_PHASE: "" });
      const full = await big.getPackage({ pkgname: "w0000-1.0" });
      assert.equal(full.package!.scanDepends.length, 200, "GetPackage keeps SCAN_DEPENDS");
      // The keys reach the build: an assignment's package carries them.
      await big.createBuild({ platform: "NetBSD-10.0-x86_64", limitTo: ["misc/w0"] });
      const [assignment] = (await big.nextReadyJob({ platform: "NetBSD-10.0-x86_64", agentId: "a", maxJobs: 1 })).assignments;
      assert.equal(assignment!.package!.scanVars["USE_DESTDIR"], "user-destdir");
      // With SCAN_DEPENDS a page ends early, under 4 MiB, and the pages together hold everything once.
      const seen: string[] = [];
      let token = "";
      let pages = 0;
      do {
        const res = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--schema", "proto",
          "-d", JSON.stringify({ includeScanDepends: true, pageToken: token }), `${bigServer.url}/pkgfarm.v1.DepGraphService/ListPackages`], { maxBuffer: 64 << 20 });
        const answer = JSON.parse(res.stdout) as { packages: { pkgname: string; scanDepends: string[] }[]; nextPageToken?: string };
        assert.ok(answer.packages.length < 1000, `page of ${answer.packages.length}`);
        assert.equal(answer.packages[0]!.scanDepends.length, 200);
        seen.push(...answer.packages.map((p) => p.pkgname));
        token = answer.nextPageToken ?? "";
        pages++;
        assert.ok(pages < 20, "pages end");
      } while (token !== "");
      assert.equal(seen.length, 1500);
      assert.equal(new Set(seen).size, 1500);
      await expectCode(big.listPackages({ pageSize: 10_001 }), Code.InvalidArgument, /page_size 10001 is over the maximum of 10000/);
      await expectCode(big.listJobs({ buildId: "none", pageSize: 10_001 }), Code.NotFound);
    } finally {
      await bigServer.close();
    }
  });
});

describe("reads behind a token (--read-auth token)", () => {
  const operatorToken = "o".repeat(32);
  const readToken = "r".repeat(32);
  let server: RunningDepGraph;
  before(async () => {
    server = await startTestDepGraph({ operatorToken, readToken, readAuth: "token" });
  });
  after(async () => {
    await server.close();
  });

  test("a read without a token is UNAUTHENTICATED; the read token reads but cannot write; health stays open", async () => {
    const anonymous = createClient(DepGraphService, createPkgfarmTransport(server.url));
    await expectCode(anonymous.listBuilds({}), Code.Unauthenticated, /ListBuilds needs a token/);
    const reader = createClient(DepGraphService, createPkgfarmTransport(server.url, { token: readToken }));
    assert.deepEqual((await reader.listBuilds({})).builds, []);
    await expectCode(reader.importScan(chunks(tree(1))), Code.Unauthenticated, /needs the operator token/);
    const operator = createClient(DepGraphService, createPkgfarmTransport(server.url, { token: operatorToken }));
    await operator.importScan(chunks(tree(1)));
    assert.equal((await operator.listPackages({})).packages.length, 1);
    const health = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", "{}", `${server.url}/grpc.health.v1.Health/Check`]);
    assert.match(health.stdout, /SERVING/);
  });
});

describe("pkgfarm import", () => {
  let server: RunningDepGraph;
  let dir: string;
  before(async () => {
    server = await startTestDepGraph({ maxImportBytes: 2 * 1024 * 1024 });
    dir = await mkdtemp(join(tmpdir(), "pkgfarm-import-"));
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = "";
    let err = "";
    const sink = (append: (s: string) => void) => ({ write: (s: string) => (append(s), true) }) as unknown as NodeJS.WritableStream;
    const code = await runImport(["--server", server.url, ...args], sink((s) => (out += s)), sink((s) => (err += s)));
    return { code, out, err };
  }

  test("a good file exits 0; raw pbulk-index without PKG_LOCATION exits 1 and says why", async () => {
    await writeFile(join(dir, "good.txt"), tree(3));
    assert.deepEqual((await cli([join(dir, "good.txt")])).code, 0);
    await writeFile(join(dir, "raw.txt"), "PKGNAME=digest-20121220\nALL_DEPENDS=\nPKG_SKIP_REASON=\n");
    const raw = await cli(["--locations", join(dir, "raw.txt")]);
    assert.equal(raw.code, 1);
    assert.match(raw.out, /record for digest-20121220 has no PKG_LOCATION/);
    assert.match(raw.err, /imported no record \(1 refused/);
    const empty = await cli([join(dir, "missing.txt")]);
    assert.equal(empty.code, 1);
    assert.match(empty.err, /cannot read .*missing\.txt: ENOENT/);
  });

  test("a refused record exits 1 even though the others were imported, with control bytes escaped", async () => {
    await writeFile(join(dir, "bad.txt"), tree(3) + "PKGNAME=evil-1.0\nPKG_LOCATION=misc/evil\x1b[2J\nALL_DEPENDS=\n" + tree(1, "z"));
    const bad = await cli([join(dir, "bad.txt")]);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /imported 4 records/);
    assert.ok(!bad.out.includes("\x1b"), "no raw ESC reaches the terminal");
    assert.match(bad.out, /\\x1b\[2J/);
    assert.match(bad.err, /1 record was refused/);
  });

  test("a server refusal is printed with its code and exits 1 at once (over the stream limit; a cut tree)", async () => {
    await writeFile(join(dir, "big.txt"), tree(12_000, "b"));
    const started = performance.now();
    const big = await cli([join(dir, "big.txt")]);
    assert.equal(big.code, 1);
    assert.match(big.err, /refused the import: RESOURCE_EXHAUSTED: the import is longer than this server takes/);
    assert.ok(performance.now() - started < 20_000, "no hang");
    // A file cut half way: its tail record is reported, and the whole-tree import removing most of the tree refused.
    await writeFile(join(dir, "tree.txt"), tree(20, "t"));
    assert.equal((await cli(["--max-removed-share", "1", join(dir, "tree.txt")])).code, 0);
    const text = tree(20, "t");
    await writeFile(join(dir, "cut.txt"), text.slice(0, Math.floor(text.length * 0.3)));
    const cut = await cli([join(dir, "cut.txt")]);
    assert.equal(cut.code, 1);
    assert.match(cut.err, /FAILED_PRECONDITION: the import ends inside a record \(line \d+, misc\/t\d+\): it was cut off/);
    // Cut at 85%, it would remove little, and is refused all the same: a cut file is not the tree.
    await writeFile(join(dir, "cut85.txt"), text.slice(0, Math.floor(text.length * 0.85)));
    assert.match((await cli([join(dir, "cut85.txt")])).err, /FAILED_PRECONDITION: the import ends inside a record/);
    // Cut at a record boundary nothing shows it was cut; the share guard still holds.
    const lines = text.split("\n");
    await writeFile(join(dir, "boundary.txt"), lines.slice(0, 13 * 5).join("\n") + "\n");
    assert.match((await cli([join(dir, "boundary.txt")])).err, /FAILED_PRECONDITION: this import would remove 15 of the tree's 20 packages \(75%/);
    const allowed = await cli(["--max-removed-share", "1", join(dir, "cut.txt")]);
    assert.equal(allowed.code, 1, "a cut-off record is still a refused record");
    assert.match(allowed.out, /ends in the middle of line|cut off/);
    assert.equal((await cli(["--max-removed-share", "2", join(dir, "cut.txt")])).code, 2);
  });
});

describe("the scan helper's environment", () => {
  test("holds PATH, HOME, LC_ALL, TMPDIR and PKGFARM_TREE/LOCATION, never the operator token", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pkgfarm-scanenv-"));
    const helper = join(dir, "scan.sh");
    await writeFile(helper, `#!/bin/sh
loc="$1"
printf 'PKGNAME=envtest-1.0\\nPKG_LOCATION=%s\\nALL_DEPENDS=\\nENV_KEYS=%s\\n' "$loc" "$(env | cut -d= -f1 | grep -v '^_$' | grep -v '^PWD$' | grep -v '^SHLVL$' | sort | tr '\\n' ' ')"
`);
    await chmod(helper, 0o755);
    const saved = process.env["PKGFARM_OPERATOR_TOKEN"];
    process.env["PKGFARM_OPERATOR_TOKEN"] = "secret-secret-secret-secret";
    const server = await startTestDepGraph({ scanHelper: [helper], treeDir: dir });
    try {
      const client = createClient(DepGraphService, createPkgfarmTransport(server.url));
      const res = await client.scanLocations({ locations: ["misc/envtest"] });
      assert.deepEqual(res.problems, []);
      const pkg = (await client.getPackage({ pkgname: "envtest-1.0" })).package!;
      assert.deepEqual(pkg.scanVars["ENV_KEYS"]!.trim().split(" "), ["HOME", "LC_ALL", "PATH", "PKGFARM_LOCATION", "PKGFARM_TREE", "TMPDIR"].filter((k) => k !== "HOME" || process.env["HOME"]));
    } finally {
      if (saved === undefined) delete process.env["PKGFARM_OPERATOR_TOKEN"];
      else process.env["PKGFARM_OPERATOR_TOKEN"] = saved;
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
