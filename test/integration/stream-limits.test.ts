// Bounded server streams on real servers: a WatchJobs or ReadLog reader that
// stops reading is cut off with RESOURCE_EXHAUSTED, and a watcher that falls
// too far behind ends with a status instead of being buffered for.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { pino, type Logger } from "pino";
import { DepGraphService, ImportMode, ImportScanRequestSchema, WatchJobsRequestSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService, ReadLogRequestSchema } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { startDepGraphServer, type RunningDepGraph } from "../../services/depgraph/server.js";
import { startDispatcherServer, type RunningDispatcher } from "../../services/dispatcher/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";

const PLATFORM = "NetBSD-10.0-x86_64";

/** A logger whose lines a test can wait for. */
function watchedLogger(): { logger: Logger; mark(): number; waitFor(message: RegExp, since: number, timeoutMs?: number): Promise<void> } {
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      for (const wake of [...waiters]) wake();
      done();
    },
  });
  return {
    logger: pino({ level: "warn" }, sink),
    mark: () => lines.length,
    waitFor(message, since, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!lines.slice(since).some((l) => message.test(l))) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no log line matching ${message} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

function envelope(payload: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/**
 * Opens a gRPC server stream and reads nothing: the HTTP/2 window fills and
 * the server's writes block. Resolves with the RST_STREAM code it ends with.
 */
function stalledCall(url: string, path: string, request: Uint8Array, timeoutMs = 20_000): Promise<number> {
  const session = http2.connect(url, { settings: { initialWindowSize: 16 * 1024 } });
  return new Promise<number>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
    stream.pause();
    const timer = setTimeout(() => reject(new Error(`the stalled ${path} stream was not cut off within ${timeoutMs} ms`)), timeoutMs);
    stream.on("close", () => {
      clearTimeout(timer);
      resolve(stream.rstCode ?? -1);
    });
    stream.on("error", () => {});
    stream.end(envelope(request));
  }).finally(() => session.destroy());
}

function records(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += `PKGNAME=p${i}-1.0\nPKG_LOCATION=misc/p${i}\nALL_DEPENDS=\n`;
  return s;
}

async function watchServer(logger: Logger, overrides: { streamStallMs?: number; maxWatchBacklogBytes?: number }): Promise<RunningDepGraph> {
  const server = await startDepGraphServer({
    host: "127.0.0.1", port: 0, packagesDir: "", scanHelper: [], scanBatch: 1, treeDir: ".", historyFile: "", importFile: "",
    defaultPolicy: "critical-path", defaultLeaseMs: 60_000, maxLeaseMs: 3_600_000, maxLosses: 3, keepFinishedBuilds: 20,
    logLevel: "warn", natsUrl: "", state: "memory", stateBucket: "pkgfarm-depgraph", ...overrides,
  }, logger);
  const client = createClient(DepGraphService, createPkgfarmTransport(server.url));
  await client.importScan((async function* () {
    yield create(ImportScanRequestSchema, { pbulkIndex: records(3000), mode: ImportMode.REPLACE_TREE });
  })());
  return server;
}

describe("WatchJobs", () => {
  test("a reader that takes nothing is cut off with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED to gRPC clients)", async () => {
    const log = watchedLogger();
    const server = await watchServer(log.logger, { streamStallMs: 500 });
    try {
      const client = createClient(DepGraphService, createPkgfarmTransport(server.url));
      let code: number | undefined;
      const cut = stalledCall(server.url, "/pkgfarm.v1.DepGraphService/WatchJobs", toBinary(WatchJobsRequestSchema, create(WatchJobsRequestSchema, {}))).then((c) => (code = c));
      // Builds of 3,000 jobs, created and cancelled, until the watcher (whose
      // subscription the client cannot see) has been sent more than it reads.
      for (let round = 0; code === undefined; round++) {
        assert.ok(round < 20, "the stalled watcher was cut off");
        const { build } = await client.createBuild({ platform: PLATFORM });
        await client.cancelBuild({ buildId: build!.id });
        await Promise.race([cut, new Promise((resolve) => setTimeout(resolve, 1000))]);
      }
      assert.equal(code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      await log.waitFor(/WatchJobs reader took nothing for too long/, 0);
    } finally {
      await server.close();
    }
  });

  test("a reader that falls more than the backlog behind ends with RESOURCE_EXHAUSTED, and the backlog is let go", async () => {
    const log = watchedLogger();
    const server = await watchServer(log.logger, { maxWatchBacklogBytes: 64 * 1024 });
    try {
      const client = createClient(DepGraphService, createPkgfarmTransport(server.url));
      const { build } = await client.createBuild({ platform: PLATFORM });
      const abort = new AbortController();
      let taken = 0;
      const ended = (async () => {
        for await (const _ of client.watchJobs({ buildId: build!.id }, { signal: abort.signal })) taken++;
      })();
      ended.catch(() => {});
      // The 3,000 transitions of a cancel are emitted during the call, faster than any reader takes them.
      for (let round = 0; ; round++) {
        assert.ok(round < 20, "the watcher overflowed");
        await client.cancelBuild({ buildId: build!.id }).catch(() => {});
        const settled = await Promise.race([ended.then(() => "ended", () => "failed"), new Promise((resolve) => setTimeout(() => resolve("open"), 500))]);
        if (settled !== "open") break;
        const next = await client.createBuild({ platform: PLATFORM });
        await client.cancelBuild({ buildId: next.build!.id });
      }
      await assert.rejects(ended, (e: unknown) => {
        assert.ok(e instanceof ConnectError, String(e));
        assert.equal(e.code, Code.ResourceExhausted, e.message);
        assert.match(e.rawMessage, /fell more than 100000 transitions or 65536 bytes behind; reconnect and re-read the build/);
        return true;
      });
      assert.ok(taken < 3000, `the reader got ${taken} of 3000 transitions before the status`);
      abort.abort();
    } finally {
      await server.close();
    }
  });
});

describe("ReadLog", () => {
  let dir: string;
  let depgraph: RunningDepGraph;
  let dispatcher: RunningDispatcher;
  const log = watchedLogger();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pkgfarm-readlog-"));
    await mkdir(join(dir, "logs", "b1"), { recursive: true });
    await writeFile(join(dir, "logs", "b1", "big-1.0.log"), Buffer.alloc(8 * 1024 * 1024, "log line\n"));
    depgraph = await startTestDepGraph();
    dispatcher = await startDispatcherServer({
      host: "127.0.0.1", port: 0, depgraphUrl: depgraph.url, packagesRoot: join(dir, "packages"), logsRoot: dir,
      heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 5000, leaseMs: 30_000, logLevel: "warn", streamStallMs: 500,
    }, log.logger);
  });
  after(async () => {
    await dispatcher.close();
    await depgraph.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("a reader that takes nothing is cut off; one that reads gets the whole log", async () => {
    const request = toBinary(ReadLogRequestSchema, create(ReadLogRequestSchema, { buildId: "b1", pkgname: "big-1.0" }));
    const mark = log.mark();
    assert.equal(await stalledCall(dispatcher.url, "/pkgfarm.v1.DispatcherService/ReadLog", request), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    await log.waitFor(/ReadLog reader took nothing for too long/, mark);
    const client = createClient(DispatcherService, createPkgfarmTransport(dispatcher.url));
    let bytes = 0;
    for await (const piece of client.readLog({ buildId: "b1", pkgname: "big-1.0" })) bytes += piece.data.length;
    assert.equal(bytes, 8 * 1024 * 1024);
  });
});
