import { setTimeout as sleep } from "node:timers/promises";
import { ScanScope, ScanState, StartScanResponseSchema, type Scan } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { EXIT_OK, PROCESS_IO, runVerb, UsageError, type CommandIo, type Verb } from "./command.js";
import { readLimitedList } from "./limited-list.js";
import { writeJson } from "./output.js";

/** `pkgfarm scan`: StartScan, then GetScan until it ends, printing progress. */
export const scanVerb: Verb = {
  name: "scan",
  synopsis: "[--platform P] [--reuse] [--per-job N] [--no-wait] (--all | --limit FILE | [--closure] LOCATION...)",
  help: `Scans a platform's tree on its agents (pbulk's scan clients) and waits for it:
  --all          every location of the tree (agents enumerate it); the tree becomes what they find
  --limit FILE   a limited list and everything it needs (pbulk's limited_list), round after round
  LOCATION...    just these locations (with --closure: and everything they need)
  --reuse        skip locations none of whose SCAN_DEPENDS files changed since their last scan
  --per-job N    locations per scan job (default 8)
  --platform P   the agents' platform (default: the only one depgraph has)
  --no-wait      print the scan's id and return
Exits 1 when the scan failed.`,
  options: {
    platform: { type: "string", default: "" },
    all: { type: "boolean", default: false },
    limit: { type: "string" },
    closure: { type: "boolean", default: false },
    reuse: { type: "boolean", default: false },
    "per-job": { type: "string", default: "0" },
    "no-wait": { type: "boolean", default: false },
  },
  positionals: { min: 0, max: Infinity },
  needs: { depgraph: true },
  async run({ values, positionals, farm, io, json }) {
    const ways = [values["all"] === true, values["limit"] !== undefined, positionals.length > 0].filter(Boolean).length;
    const perJob = Number(values["per-job"]);
    if (ways !== 1 || !Number.isInteger(perJob) || perJob < 0) throw new UsageError("give exactly one of --all, --limit FILE or locations; --per-job is a whole number");
    const locations = values["limit"] !== undefined ? await readLimitedList(values["limit"] as string) : [...positionals];
    const scope = values["all"] === true ? ScanScope.TREE : values["limit"] !== undefined || values["closure"] === true ? ScanScope.CLOSURE : ScanScope.LOCATIONS;
    const answer = await farm.depgraph.startScan({ platform: values["platform"] as string, scope, locations, reuse: values["reuse"] === true, locationsPerJob: perJob });
    let scan = answer.scan!;
    if (json) writeJson(io.out, StartScanResponseSchema, answer);
    else io.out.write(`pkgfarm scan: scan ${scan.id} on ${scan.platform}: ${ScanScope[scan.scope].toLowerCase()}, ${scan.locationsTotal} location(s) queued\n`);
    if (values["no-wait"] === true) return EXIT_OK;
    let said = "";
    while (scan.state === ScanState.RUNNING) {
      await sleep(1000);
      scan = (await farm.depgraph.getScan({ scanId: scan.id })).scan!;
      const line = progress(scan);
      if (line !== said && !json) io.out.write(`pkgfarm scan: ${line}\n`);
      said = line;
    }
    if (!json) {
      for (const p of scan.problems.slice(0, 20)) io.out.write(`  ${p.location || "-"}: ${p.message.split("\n").slice(-3).join(" / ")}\n`);
      if (scan.problems.length > 20) io.out.write(`  ... and more (${scan.locationsFailed} location(s) failed)\n`);
      io.out.write(`pkgfarm scan: ${scan.state === ScanState.FINISHED ? "finished" : "FAILED"}: ${progress(scan)}\n`);
    }
    return scan.state === ScanState.FINISHED ? EXIT_OK : 1;
  },
};

export function runScan(argv: readonly string[], io: CommandIo = PROCESS_IO, signal?: AbortSignal): Promise<number> {
  return runVerb(scanVerb, argv, io, signal);
}

function progress(s: Scan): string {
  return `round ${s.rounds}, ${s.locationsScanned}/${s.locationsTotal} locations scanned (${s.locationsReused} reused, ${s.locationsFailed} failed), ` +
    `${s.records} records, jobs ${s.jobsDone}/${s.jobsTotal}`;
}
