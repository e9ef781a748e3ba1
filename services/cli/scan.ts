import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { ConnectError } from "@connectrpc/connect";
import { ScanScope, ScanState, type Scan } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DEPGRAPH_CLIENT_OPTIONS, DEPGRAPH_CLIENT_USAGE, depgraphClient } from "./depgraph-client.js";
import { readLimitedList } from "./limited-list.js";

const USAGE = `usage: pkgfarm scan ${DEPGRAPH_CLIENT_USAGE} [--platform P] [--reuse] [--per-job N] [--no-wait]
                    (--all | --limit FILE | [--closure] LOCATION...)

Scans a platform's tree on its agents (pbulk's scan clients) and waits for it:
  --all          every location of the tree (agents enumerate it); the tree becomes what they find
  --limit FILE   a limited list and everything it needs (pbulk's limited_list), round after round
  LOCATION...    just these locations (with --closure: and everything they need)
  --reuse        skip locations none of whose SCAN_DEPENDS files changed since their last scan
  --per-job N    locations per scan job (default 8)
  --platform P   the agents' platform (default: the only one depgraph has)
  --no-wait      print the scan's id and return
`;

/** runScan is `pkgfarm scan`: StartScan, then GetScan until it ends, printing progress. */
export async function runScan(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        ...DEPGRAPH_CLIENT_OPTIONS,
        platform: { type: "string", default: "" },
        all: { type: "boolean", default: false },
        limit: { type: "string" },
        closure: { type: "boolean", default: false },
        reuse: { type: "boolean", default: false },
        "per-job": { type: "string", default: "0" },
        "no-wait": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: true,
    });
  } catch (e) {
    process.stderr.write(`pkgfarm scan: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  const ways = [values.all, values.limit !== undefined, positionals.length > 0].filter(Boolean).length;
  const perJob = Number(values["per-job"]);
  if (ways !== 1 || !Number.isInteger(perJob) || perJob < 0) {
    process.stderr.write(`pkgfarm scan: give exactly one of --all, --limit FILE or locations; --per-job is a whole number\n${USAGE}`);
    return 2;
  }
  const made = depgraphClient(values);
  if ("errors" in made) {
    for (const line of made.errors) process.stderr.write(`pkgfarm scan: ${line}\n`);
    return 2;
  }
  const { client } = made;
  const locations = values.limit !== undefined ? await readLimitedList(values.limit) : positionals;
  const scope = values.all ? ScanScope.TREE : values.limit !== undefined || values.closure ? ScanScope.CLOSURE : ScanScope.LOCATIONS;
  try {
    let scan = (await client.startScan({ platform: values.platform, scope, locations, reuse: values.reuse, locationsPerJob: perJob })).scan!;
    out.write(`pkgfarm scan: scan ${scan.id} on ${scan.platform}: ${ScanScope[scan.scope].toLowerCase()}, ${scan.locationsTotal} location(s) queued\n`);
    if (values["no-wait"]) return 0;
    let said = "";
    while (scan.state === ScanState.RUNNING) {
      await sleep(1000);
      scan = (await client.getScan({ scanId: scan.id })).scan!;
      const line = progress(scan);
      if (line !== said) out.write(`pkgfarm scan: ${line}\n`);
      said = line;
    }
    for (const p of scan.problems.slice(0, 20)) out.write(`  ${p.location || "-"}: ${p.message.split("\n").slice(-3).join(" / ")}\n`);
    if (scan.problems.length > 20) out.write(`  ... and more (${scan.locationsFailed} location(s) failed)\n`);
    out.write(`pkgfarm scan: ${scan.state === ScanState.FINISHED ? "finished" : "FAILED"}: ${progress(scan)}\n`);
    return scan.state === ScanState.FINISHED ? 0 : 1;
  } catch (e) {
    process.stderr.write(`pkgfarm scan: ${ConnectError.from(e).message}\n`);
    return 1;
  }
}

function progress(s: Scan): string {
  return `round ${s.rounds}, ${s.locationsScanned}/${s.locationsTotal} locations scanned (${s.locationsReused} reused, ${s.locationsFailed} failed), ` +
    `${s.records} records, jobs ${s.jobsDone}/${s.jobsTotal}`;
}
