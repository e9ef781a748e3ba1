import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { connect } from "nats";
import { createScanRecordParser, formatScanRecord, type ScanRecord } from "../depgraph/core/scan-record.js";
import { ensureMetaStream, FILES_SUBJECT, publishMetaEvent, RECORDS_SUBJECT } from "../depgraph/meta-events.js";
import { readScanChunks } from "../depgraph/scan-file.js";

const USAGE = `usage: pkgfarm publish [--nats URL] [--platform P] --records FILE   one change event per location in a pbulk-index file (gzip or plain), for platform P's tree (default: the shared tree)
       pkgfarm publish [--nats URL] --changed-files FILE|-   one event naming changed tree files (git diff --name-only output)
`;

/**
 * runPublish is `pkgfarm publish`: it puts package-metadata changes on the
 * PKGFARM_META stream for depgraph to apply. Event ids are content hashes, so
 * running the same publish twice stores each change once.
 */
export async function runPublish(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  let values: { nats?: string; records?: string; "changed-files"?: string; platform?: string; help?: boolean };
  try {
    values = parseArgs({ args: [...argv], options: { nats: { type: "string" }, records: { type: "string" }, "changed-files": { type: "string" }, platform: { type: "string" }, help: { type: "boolean", short: "h" } }, strict: true }).values;
  } catch (e) {
    process.stderr.write(`pkgfarm publish: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    out.write(USAGE);
    return 0;
  }
  if ((values.records === undefined) === (values["changed-files"] === undefined)) {
    process.stderr.write(`pkgfarm publish: give exactly one of --records and --changed-files\n${USAGE}`);
    return 2;
  }
  const nc = await connect({ servers: values.nats ?? process.env["PKGFARM_NATS_URL"] ?? "nats://127.0.0.1:4222", name: "pkgfarm-publish" });
  try {
    await ensureMetaStream(nc);
    let published = 0;
    let duplicates = 0;
    const count = (ack: { duplicate: boolean }) => (ack.duplicate ? duplicates++ : published++);
    if (values.records !== undefined) {
      const byLocation = new Map<string, ScanRecord[]>();
      const parser = createScanRecordParser((r) => byLocation.set(r.location, [...(byLocation.get(r.location) ?? []), r]), (p) => {
        process.stderr.write(`pkgfarm publish: line ${p.line} (${p.location || "?"}): ${p.problem}\n`);
      });
      for await (const chunk of readScanChunks(values.records)) parser.push(chunk);
      parser.end();
      for (const [location, records] of byLocation) {
        count(await publishMetaEvent(nc, RECORDS_SUBJECT, { locations: [location], pbulkIndex: records.map(formatScanRecord).join(""), ...(values.platform ? { platform: values.platform } : {}) }));
      }
    } else {
      const path = values["changed-files"]!;
      const text = path === "-" ? await readStdin() : await readFile(path, "utf8");
      const files = [...new Set(text.split("\n").map((l) => l.trim()).filter((l) => l !== ""))].sort();
      count(await publishMetaEvent(nc, FILES_SUBJECT, { files }));
    }
    out.write(`published ${published} event(s); ${duplicates} already in the stream\n`);
    return 0;
  } finally {
    await nc.drain();
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
