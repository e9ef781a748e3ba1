// `pkgfarm build start` (and the older `pkgfarm build [flags]`, which starts
// a build and follows it), and the `pkgfarm build ...` group.
import { BuildMode, BuildState, CreateBuildResponseSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { EXIT_OK, EXIT_USAGE, groupUsage, PROCESS_IO, runVerb, UsageError, type CommandIo, type Verb, type VerbContext } from "./command.js";
import { readLimitedList } from "./limited-list.js";
import { cancelVerb, listVerb, statusVerb } from "./build-view.js";
import { diffVerb, reportVerb } from "./build-report.js";
import { watchBuild, watchVerb, WATCH_EXIT_HELP } from "./build-watch.js";
import { writeJson } from "./output.js";

const START_OPTIONS = {
  platform: { type: "string" as const, default: "" },
  limit: { type: "string" as const },
  incremental: { type: "boolean" as const, default: false },
  "packages-dir": { type: "string" as const, default: "" },
  watch: { type: "boolean" as const, default: false },
};

const START_HELP = `Starts a build on the farm and prints its id:
  --limit FILE      a limited list (one location or PKGNAME per line) plus everything it needs;
                    locations the tree lacks are scanned first (pbulk's limited_list)
  LOCATION...       the same, on the command line; neither builds the whole tree
  --incremental     skip packages whose binary package is up to date
  --packages-dir D  the packages directory (PACKAGES) an incremental build checks (default: depgraph's)
  --platform P      the agents' platform (default: the only one depgraph has)
  --watch           then follow it as pkgfarm build watch does, with its exit status`;

/** startBuild is CreateBuild from the start flags; it prints the new build (or, with --json, the answer). */
async function startBuild(context: VerbContext, follow: boolean): Promise<number> {
  const { values, positionals, farm, io, json } = context;
  if (values["limit"] !== undefined && positionals.length > 0) throw new UsageError("give --limit FILE or locations, not both");
  const limitTo = values["limit"] !== undefined ? await readLimitedList(values["limit"] as string) : [...positionals];
  const answer = await farm.depgraph.createBuild({
    platform: values["platform"] as string,
    limitTo,
    mode: values["incremental"] === true ? BuildMode.INCREMENTAL : BuildMode.FULL,
    packagesDir: values["packages-dir"] as string,
  });
  const build = answer.build!;
  if (json && !follow) writeJson(io.out, CreateBuildResponseSchema, answer);
  else if (!json) {
    io.out.write(`build ${build.id} on ${build.platform}${build.state === BuildState.SCANNING ? `: scanning the list's closure first (scan ${build.scanId})` : `: ${build.totalJobs} jobs`}\n`);
  }
  return follow ? watchBuild(context, build.id) : EXIT_OK;
}

export const startVerb: Verb = {
  name: "build start",
  synopsis: "[--platform P] [--incremental] [--packages-dir D] [--watch] [--limit FILE | LOCATION...]",
  help: `${START_HELP}\nWith --watch: ${WATCH_EXIT_HELP}`,
  options: START_OPTIONS,
  positionals: { min: 0, max: Infinity },
  needs: { depgraph: true },
  run: (context) => startBuild(context, context.values["watch"] === true),
};

/**
 * The command before `build start` existed: start and follow. Kept so
 * `pkgfarm build --limit FILE` in scripts and the README goes on working;
 * --no-wait is the old way to only start.
 */
const legacyVerb: Verb = {
  name: "build",
  synopsis: "[--platform P] [--incremental] [--packages-dir D] [--no-wait] [--limit FILE | LOCATION...]",
  help: `Starts a build and follows it to its end (pkgfarm build start --watch); --no-wait only starts it.\n${START_HELP}\n${WATCH_EXIT_HELP}`,
  options: { ...START_OPTIONS, "no-wait": { type: "boolean" as const, default: false } },
  positionals: { min: 0, max: Infinity },
  needs: { depgraph: true },
  run: (context) => startBuild(context, context.values["no-wait"] !== true),
};

const BUILD_VERBS: readonly Verb[] = [startVerb, listVerb, statusVerb, watchVerb, cancelVerb, reportVerb, diffVerb];

const ABOUT = "Builds on a remote farm: start one, see them, follow one, cancel one, read its report.";

/** runBuildGroup is `pkgfarm build ...`: a subcommand, or the older start-and-follow form. */
export function runBuildGroup(argv: readonly string[], io: CommandIo = PROCESS_IO, signal?: AbortSignal): Promise<number> {
  const [word, ...rest] = argv;
  const verb = BUILD_VERBS.find((v) => v.name === `build ${word}`);
  if (verb !== undefined) return runVerb(verb, rest, io, signal);
  if (word === "help" || word === "--help" || word === "-h") {
    io.out.write(groupUsage("build", BUILD_VERBS, ABOUT));
    io.out.write(`\npkgfarm build [--limit FILE | LOCATION...] (no COMMAND) starts a build and follows it, as before.\n`);
    return Promise.resolve(EXIT_OK);
  }
  if (word !== undefined && !word.startsWith("-") && !word.includes("/") && /^[a-z]+$/.test(word)) {
    io.err.write(`pkgfarm build: unknown command "${word}" (a location has a slash, e.g. devel/gmake)\n${groupUsage("build", BUILD_VERBS, ABOUT)}`);
    return Promise.resolve(EXIT_USAGE);
  }
  return runVerb(legacyVerb, argv, io, signal);
}
