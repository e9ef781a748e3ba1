import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { CLIENT_TLS_FLAGS, createPkgfarmTransport, readClientTls, readConfig } from "../shared/index.js";
import { create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { DepGraphService, ImportMode, ImportScanRequestSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { readScanChunks } from "../depgraph/scan-file.js";

// Messages stay well under the server's 16 MiB limit; a record may span two.
const CHUNK_BYTES = 1 << 20;

/** Re-cuts byte chunks at line ends, so no message splits a UTF-8 character. */
async function* wholeLines(chunks: AsyncIterable<Buffer>): AsyncGenerator<string> {
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of chunks) {
    carry = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
    if (carry.length < CHUNK_BYTES) continue;
    const cut = carry.lastIndexOf(0x0a) + 1;
    if (cut === 0) continue;
    yield carry.toString("utf8", 0, cut);
    carry = carry.subarray(cut);
  }
  if (carry.length > 0) yield carry.toString("utf8");
}

const USAGE = "usage: pkgfarm import [--server URL] [--tls-ca PEM] [--tls-client-cert PEM --tls-client-key PEM] [--locations] FILE\n";

/**
 * runImport is `pkgfarm import FILE`: streams a pbulk-index file (gzip or
 * plain) to depgraph, with the operator token (PKGFARM_OPERATOR_TOKEN or
 * PKGFARM_OPERATOR_TOKEN_FILE) when one is set.
 */
export async function runImport(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: {
      server: { type: "string", default: process.env["PKGFARM_DEPGRAPH_URL"] ?? "http://127.0.0.1:7401" },
      locations: { type: "boolean", default: false },
      ...Object.fromEntries(CLIENT_TLS_FLAGS.map((flag) => [flag, { type: "string" as const }])),
    },
    allowPositionals: true,
  });
  const path = positionals[0];
  if (path === undefined || positionals.length > 1) {
    process.stderr.write(USAGE);
    return 2;
  }
  const server = values.server as string;
  const given = values as Record<string, unknown>;
  const tlsArgs = CLIENT_TLS_FLAGS.flatMap((flag) => typeof given[flag] === "string" ? [`--${flag}`, given[flag] as string] : []);
  const read = readConfig(tlsArgs, process.env, CLIENT_TLS_FLAGS);
  const tls = readClientTls(read, server, "--server (PKGFARM_DEPGRAPH_URL)");
  const token = read.secret("PKGFARM_OPERATOR_TOKEN");
  if (read.errors.length > 0) {
    for (const line of read.errors) process.stderr.write(`pkgfarm import: ${line}\n`);
    return 2;
  }
  const client = createClient(DepGraphService, createPkgfarmTransport(server, { tls, token }));
  const mode = values.locations ? ImportMode.REPLACE_LOCATIONS : ImportMode.REPLACE_TREE;
  async function* requests() {
    let first = true;
    for await (const text of wholeLines(readScanChunks(path!))) {
      yield create(ImportScanRequestSchema, { pbulkIndex: text, mode: first ? mode : ImportMode.UNSPECIFIED });
      first = false;
    }
  }
  const response = await client.importScan(requests());
  out.write(`imported ${response.recordsImported} records in ${((response.elapsed ? durationMs(response.elapsed) : 0) / 1000).toFixed(2)} s\n`);
  const t = response.tree;
  if (t) {
    out.write(`tree: ${t.packages} packages at ${t.locations} locations, ${t.dependencyEdges} dependencies, ${t.prefailed} prefailed, ${t.cycles.length} cycles\n`);
    for (const c of t.cycles) out.write(`  cycle: ${c.pkgnames.join(" -> ")}\n`);
  }
  for (const p of response.problems) {
    out.write(`  ${p.line ? `line ${p.line}: ` : ""}${p.location ? `${p.location}: ` : ""}${p.message}\n`);
  }
  return 0;
}
