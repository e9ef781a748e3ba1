import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { ConnectError } from "@connectrpc/connect";
import { BuildMode, BuildState, JobState, type Build } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DEPGRAPH_CLIENT_OPTIONS, DEPGRAPH_CLIENT_USAGE, depgraphClient } from "./depgraph-client.js";
import { readLimitedList } from "./limited-list.js";

const USAGE = `usage: pkgfarm build ${DEPGRAPH_CLIENT_USAGE} [--platform P] [--incremental] [--no-wait]
                     [--limit FILE | LOCATION...]

Starts a build on the farm and waits for it to end, printing progress:
  --limit FILE    a limited list (one location or PKGNAME per line) plus everything it needs;
                  locations the tree lacks are scanned first (pbulk's limited_list)
  LOCATION...     the same, on the command line; neither builds the whole tree
  --incremental   skip packages whose binary package is up to date
  --packages-dir D  the packages directory (PACKAGES) an incremental build checks (default: depgraph's)
  --platform P    the agents' platform (default: the only one depgraph has)
  --no-wait       print the build's id and return
`;

/** runBuild is `pkgfarm build`: CreateBuild, then GetBuild until it ends. */
export async function runBuild(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        ...DEPGRAPH_CLIENT_OPTIONS,
        platform: { type: "string", default: "" },
        limit: { type: "string" },
        incremental: { type: "boolean", default: false },
        "packages-dir": { type: "string", default: "" },
        "no-wait": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: true,
    });
  } catch (e) {
    process.stderr.write(`pkgfarm build: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.write(USAGE);
    return 0;
  }
  if (values.limit !== undefined && positionals.length > 0) {
    process.stderr.write(`pkgfarm build: give --limit FILE or locations, not both\n${USAGE}`);
    return 2;
  }
  const made = depgraphClient(values);
  if ("errors" in made) {
    for (const line of made.errors) process.stderr.write(`pkgfarm build: ${line}\n`);
    return 2;
  }
  const { client } = made;
  const limitTo = values.limit !== undefined ? await readLimitedList(values.limit) : positionals;
  try {
    let build = (await client.createBuild({ platform: values.platform, limitTo, mode: values.incremental ? BuildMode.INCREMENTAL : BuildMode.FULL, packagesDir: values["packages-dir"] })).build!;
    out.write(`pkgfarm build: build ${build.id} on ${build.platform}${build.state === BuildState.SCANNING ? `: scanning the list's closure first (scan ${build.scanId})` : `: ${build.totalJobs} jobs`}\n`);
    if (values["no-wait"]) return 0;
    let said = "";
    while (build.state === BuildState.RUNNING || build.state === BuildState.SCANNING) {
      await sleep(1000);
      build = (await client.getBuild({ buildId: build.id })).build!;
      const line = summary(build);
      if (line !== said) out.write(`pkgfarm build: ${line}\n`);
      said = line;
    }
    if (build.problem !== "") out.write(`pkgfarm build: ${build.problem}\n`);
    const failed = (await client.listJobs({ buildId: build.id, states: [JobState.FAILED] })).jobs;
    for (const job of failed.slice(0, 50)) out.write(`  failed: ${job.pkgname} (${job.location})${job.failedPhase ? ` in ${job.failedPhase}` : ""}: ${job.reason}\n`);
    out.write(`pkgfarm build: ${build.state === BuildState.FINISHED ? "finished" : "cancelled"}: ${summary(build)}\n`);
    return build.state === BuildState.FINISHED ? 0 : 1;
  } catch (e) {
    process.stderr.write(`pkgfarm build: ${ConnectError.from(e).message}\n`);
    return 1;
  }
}

/** "12 succeeded, 1 failed, ..." of the non-zero job counts. */
export function summary(build: Build): string {
  if (build.state === BuildState.SCANNING) return `scanning (scan ${build.scanId})`;
  const parts = Object.entries(build.jobCounts).filter(([, n]) => n > 0).map(([state, n]) => `${n} ${state.replace("JOB_STATE_", "").toLowerCase().replace("_", "-")}`);
  return `${build.totalJobs} jobs: ${parts.join(", ")}`;
}
