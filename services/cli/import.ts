import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { CLIENT_TLS_FLAGS, createPkgfarmTransport, escapeControls, readClientTls, readConfig } from "../shared/index.js";
import { create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { DepGraphService, ImportMode, ImportScanRequestSchema, type ImportScanResponse } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { readScanChunks } from "../depgraph/scan-file.js";

/**
 * Bytes per message. The server joins the chunks, so lines and records may
 * span messages; cutting by size, never waiting for a line end, is what
 * keeps a file with one huge line from becoming one message over the
 * server's 16 MiB limit (the server reports the line instead).
 */
const CHUNK_BYTES = 1 << 20;

/**
 * utf8Chunks re-cuts byte chunks into strings of about CHUNK_BYTES, each cut
 * at a character boundary so no message splits a UTF-8 character.
 */
export async function* utf8Chunks(chunks: AsyncIterable<Buffer>, size = CHUNK_BYTES): AsyncGenerator<string> {
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of chunks) {
    carry = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
    while (carry.length >= size) {
      const cut = characterBoundary(carry, size);
      yield carry.toString("utf8", 0, cut);
      carry = carry.subarray(cut);
    }
  }
  if (carry.length > 0) yield carry.toString("utf8");
}

/** The last offset at or before `at` where a UTF-8 character starts (continuation bytes are 10xxxxxx). */
function characterBoundary(buf: Buffer, at: number): number {
  let cut = at;
  while (cut > 0 && cut > at - 4 && (buf[cut]! & 0xc0) === 0x80) cut--;
  return cut === 0 ? at : cut;
}

const USAGE = "usage: pkgfarm import [--server URL] [--tls-ca PEM] [--tls-client-cert PEM --tls-client-key PEM] [--locations] [--max-removed-share 0..1] FILE\n";

/**
 * runImport is `pkgfarm import FILE`: streams a pbulk-index file (gzip or
 * plain) to depgraph, with the operator token (PKGFARM_OPERATOR_TOKEN or
 * PKGFARM_OPERATOR_TOKEN_FILE) when one is set. It exits 0 only when records
 * were imported and none was refused; a refusal by the server (an error
 * status) is printed and exits 1.
 */
export async function runImport(argv: readonly string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const fail = (code: number, message: string) => {
    err.write(`pkgfarm import: ${escapeControls(message)}\n`);
    return code;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        server: { type: "string", default: process.env["PKGFARM_DEPGRAPH_URL"] ?? "http://127.0.0.1:7401" },
        locations: { type: "boolean", default: false },
        "max-removed-share": { type: "string" },
        ...Object.fromEntries(CLIENT_TLS_FLAGS.map((flag) => [flag, { type: "string" as const }])),
      },
      allowPositionals: true,
    });
  } catch (e) {
    err.write(`pkgfarm import: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const path = positionals[0];
  if (path === undefined || positionals.length > 1) {
    err.write(USAGE);
    return 2;
  }
  let maxRemovedShare = 0;
  const shareFlag = values["max-removed-share"];
  if (shareFlag !== undefined) {
    maxRemovedShare = Number(shareFlag);
    if (shareFlag.trim() === "" || !Number.isFinite(maxRemovedShare) || maxRemovedShare < 0 || maxRemovedShare > 1) {
      return fail(2, `--max-removed-share must be a number from 0 to 1 (the share of the tree's packages a whole-tree import may remove; 1 allows any), not "${shareFlag}"`);
    }
    if (values.locations) return fail(2, "--max-removed-share is for whole-tree imports; --locations removes only packages of the locations in the file");
  }
  const server = values.server as string;
  const given = values as Record<string, unknown>;
  const tlsArgs = CLIENT_TLS_FLAGS.flatMap((flag) => typeof given[flag] === "string" ? [`--${flag}`, given[flag] as string] : []);
  const read = readConfig(tlsArgs, process.env, CLIENT_TLS_FLAGS);
  const tls = readClientTls(read, server, "--server (PKGFARM_DEPGRAPH_URL)");
  const token = read.secret("PKGFARM_OPERATOR_TOKEN");
  if (read.errors.length > 0) {
    for (const line of read.errors) err.write(`pkgfarm import: ${line}\n`);
    return 2;
  }
  const client = createClient(DepGraphService, createPkgfarmTransport(server, { tls, token }));
  const mode = values.locations ? ImportMode.REPLACE_LOCATIONS : ImportMode.REPLACE_TREE;
  // Aborted when the call ends either way, so a server that answers early
  // (a refusal) also stops the file being read and sent.
  const done = new AbortController();
  let readError: unknown;
  async function* requests() {
    let first = true;
    try {
      for await (const text of utf8Chunks(readScanChunks(path!))) {
        if (done.signal.aborted) return;
        yield create(ImportScanRequestSchema, first ? { pbulkIndex: text, mode, maxRemovedShare } : { pbulkIndex: text });
        first = false;
      }
    } catch (e) {
      readError = e;
      // Ends the call: nothing half-read may be imported.
      done.abort(e);
    }
  }
  let response: ImportScanResponse;
  try {
    response = await client.importScan(requests(), { signal: done.signal });
  } catch (e) {
    if (readError !== undefined) return fail(1, `cannot read ${path}: ${(readError as Error).message}`);
    const error = ConnectError.from(e);
    return fail(1, `${server} refused the import: ${codeName(error.code)}: ${error.rawMessage}`);
  } finally {
    done.abort();
  }
  out.write(`imported ${response.recordsImported} records in ${((response.elapsed ? durationMs(response.elapsed) : 0) / 1000).toFixed(2)} s\n`);
  const t = response.tree;
  if (t) {
    out.write(`tree: ${t.packages} packages at ${t.locations} locations, ${t.dependencyEdges} dependencies, ${t.prefailed} prefailed, ${t.cycles.length} cycles\n`);
    for (const c of t.cycles) out.write(`  cycle: ${escapeControls(c.pkgnames.join(" -> "))}\n`);
  }
  let refused = 0;
  for (const p of response.problems) {
    // Problems with a line are records of the file that were not taken;
    // those without one are about the tree (unresolved dependencies).
    if (p.line > 0) refused++;
    out.write(escapeControls(`  ${p.line ? `line ${p.line}: ` : ""}${p.location ? `${p.location}: ` : ""}${p.message}`) + "\n");
  }
  if (response.recordsImported === 0) return fail(1, `${path} imported no record${refused > 0 ? ` (${refused} refused, see above)` : ": it holds no pbulk-index record"}`);
  if (refused > 0) return fail(1, `${refused} record${refused === 1 ? " was" : "s were"} refused (see above); the others were imported`);
  return 0;
}

function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
