// `pkgfarm build list`, `build status BUILD` and `build cancel BUILD`.
import { BuildMode, BuildState, CancelBuildResponseSchema, GetBuildStatusResponseSchema, ListBuildsResponseSchema, type Build } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { EXIT_OK, type Verb } from "./command.js";
import { buildStateName, clean, counts, durationText, ended, formatDuration, ms, table, timeText, writeJson } from "./output.js";

/** How long a build has run: to its end, or to now. */
function elapsed(build: Build, now: number): string {
  const start = ms(build.createTime);
  if (start === undefined) return "-";
  return formatDuration((ms(build.finishTime) ?? now) - start);
}

export const listVerb: Verb = {
  name: "build list",
  synopsis: "[--platform P] [--json]",
  help: `Lists the builds depgraph keeps, newest first: id, state, platform, mode, jobs ended of
all, failures, when it started and how long it ran.
  --platform P   only the builds of this platform`,
  options: { platform: { type: "string", default: "" } },
  positionals: { min: 0, max: 0 },
  needs: { depgraph: true },
  async run({ values, farm, io, json }) {
    const answer = await farm.depgraph.listBuilds({ platform: values["platform"] as string });
    if (json) {
      writeJson(io.out, ListBuildsResponseSchema, answer);
      return EXIT_OK;
    }
    if (answer.builds.length === 0) {
      io.out.write("no builds\n");
      return EXIT_OK;
    }
    const now = Date.now();
    io.out.write(table(["BUILD", "STATE", "PLATFORM", "MODE", "ENDED", "FAILED", "STARTED", "ELAPSED"], answer.builds.map((b) => [
      b.id,
      buildStateName(b.state),
      b.platform,
      b.mode === BuildMode.INCREMENTAL ? "incremental" : "full",
      b.state === BuildState.SCANNING ? "scanning" : `${ended(b)}/${b.totalJobs}`,
      String(b.jobCounts["JOB_STATE_FAILED"] ?? 0),
      timeText(b.createTime),
      elapsed(b, now),
    ])));
    return EXIT_OK;
  },
};

export const statusVerb: Verb = {
  name: "build status",
  synopsis: "BUILD [--json]",
  help: `Shows where a build stands: its counts per state, what runs now (each job with its host,
agent, how long it has run and how long it is expected to take) and when it should end.
The ETA is the larger of the longest chain of work left and the work left spread over
the hosts running the build's jobs now, from the durations the scheduler knows.`,
  positionals: { min: 1, max: 1 },
  needs: { depgraph: true },
  async run({ positionals, farm, io, json }) {
    const answer = await farm.depgraph.getBuildStatus({ buildId: positionals[0]! });
    if (json) {
      writeJson(io.out, GetBuildStatusResponseSchema, answer);
      return EXIT_OK;
    }
    const build = answer.build!;
    const now = Date.now();
    const lines = [
      `build ${build.id} on ${build.platform}: ${buildStateName(build.state)}${build.mode === BuildMode.INCREMENTAL ? " (incremental)" : ""}`,
      `started ${timeText(build.createTime)}, ${build.finishTime ? `ended ${timeText(build.finishTime)} after` : "running for"} ${durationText(answer.elapsed)}`,
    ];
    if (build.state === BuildState.SCANNING) lines.push(`scanning the list's closure first (scan ${build.scanId})`);
    else lines.push(`${ended(build)}/${build.totalJobs} jobs ended: ${counts(build)}`);
    if (build.problem !== "") lines.push(`problem: ${clean(build.problem)}`);
    const estimate = answer.estimate;
    if (estimate !== undefined) {
      lines.push(`ETA ${timeText(estimate.finishTime)} (in ${durationText(estimate.remaining)}): longest chain left ${durationText(estimate.criticalPathLeft)}, ` +
        `work left ${durationText(estimate.workLeft)} over ${estimate.parallelism} running ${estimate.parallelism === 1 ? "job" : "jobs"}`);
    }
    io.out.write(`${lines.join("\n")}\n`);
    if (answer.running.length > 0) {
      io.out.write(`\nrunning (${answer.running.length}):\n`);
      io.out.write(table(["PKGNAME", "HOST", "AGENT", "ELAPSED", "EXPECTED"], answer.running.map((j) => {
        const start = ms(j.startTime);
        return [j.pkgname, j.host || "-", j.agentId || "-", start === undefined ? "-" : formatDuration(now - start), durationText(j.expectedDuration)];
      })));
    }
    return EXIT_OK;
  },
};

export const cancelVerb: Verb = {
  name: "build cancel",
  synopsis: "BUILD [--json]",
  help: `Cancels a build: every job not yet ended becomes cancelled, and the agents stop the ones
they run. Needs the operator token (PKGFARM_OPERATOR_TOKEN) when the farm has one.`,
  positionals: { min: 1, max: 1 },
  needs: { depgraph: true },
  async run({ positionals, farm, io, json }) {
    const answer = await farm.depgraph.cancelBuild({ buildId: positionals[0]! });
    if (json) {
      writeJson(io.out, CancelBuildResponseSchema, answer);
      return EXIT_OK;
    }
    const build = answer.build!;
    io.out.write(`build ${build.id} ${buildStateName(build.state)}: ${counts(build)}\n`);
    return EXIT_OK;
  },
};
