// `pkgfarm build watch BUILD`: a build's progress as it happens, one line per
// job that ends, until the build ends; the exit status says how it ended.
import { create, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  BuildEventKind,
  BuildState,
  JobState,
  ListJobsResponseSchema,
  WatchJobsResponseSchema,
  type Build,
  type DepGraphService,
  type WatchJobsResponse,
} from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { EXIT_OK, type Verb, type VerbContext } from "./command.js";
import { clean, counts, durationText, ended, jobStateName, ms, formatDuration } from "./output.js";

/** Every package of the build was built (or was up to date). */
export const EXIT_BUILT = EXIT_OK;
/** Some package was not built: failed, prefailed, indirect-failed, in a cycle. */
export const EXIT_SOME_FAILED = 3;
/** The build was cancelled. */
export const EXIT_CANCELLED = 4;
/** The watch was interrupted (Ctrl-C), as a shell reports a SIGINT; the build goes on. */
export const EXIT_INTERRUPTED = 130;

export const WATCH_EXIT_HELP = `Exit status: 0 every package was built (or up to date), 3 some package was not
(failed, prefailed, indirect-failed, cycle), 4 the build was cancelled, 1 the server
refused or went away, 2 bad usage, 130 interrupted (the build goes on).`;

/** How often the build is re-read while no event comes, in case its end slipped past the stream. */
const IDLE_CHECK_MS = 2_000;

const NOT_BUILT = ["JOB_STATE_FAILED", "JOB_STATE_PREFAILED", "JOB_STATE_INDIRECT_FAILED", "JOB_STATE_CYCLE"];

/** exitStatusOf is what a build's end means to a script. */
export function exitStatusOf(build: Build): number {
  if (build.state === BuildState.CANCELLED) return EXIT_CANCELLED;
  return NOT_BUILT.some((key) => (build.jobCounts[key] ?? 0) > 0) ? EXIT_SOME_FAILED : EXIT_BUILT;
}

export const watchVerb: Verb = {
  name: "build watch",
  synopsis: "BUILD [--json]",
  help: `Follows a build until it ends: one line per job that ends ([ended/total], its state, the
host that ran it and how long it took), then the counts and the failures with their phase.
With --json, every WatchJobs message as one line of JSON (job transitions, and the build's
end as a build_event), then the failed jobs.
${WATCH_EXIT_HELP}`,
  positionals: { min: 1, max: 1 },
  needs: { depgraph: true },
  run: (context) => watchBuild(context, context.positionals[0]!),
};

/**
 * watchBuild follows the build over WatchJobs. The stream starts with what
 * happens after the call reaches depgraph, and a build may end between
 * reading it and that moment: so the build is read after the stream is
 * opened, and again whenever the stream is quiet for IDLE_CHECK_MS.
 */
export async function watchBuild(context: VerbContext, buildId: string): Promise<number> {
  const { farm, io, json } = context;
  const out = io.out;
  const abort = new AbortController();
  const stop = () => abort.abort();
  context.signal.addEventListener("abort", stop);
  try {
    const open = () => farm.depgraph.watchJobs({ buildId }, { signal: abort.signal })[Symbol.asyncIterator]();
    // A read still waiting when the watch ends rejects with the abort: handled here, not unhandled.
    const read = (s: AsyncIterator<WatchJobsResponse>) => {
      const p = s.next();
      p.catch(() => undefined);
      return p;
    };
    let stream = open();
    let next = read(stream);
    let build = (await farm.depgraph.getBuild({ buildId })).build!;
    if (!json) out.write(`build ${build.id} on ${build.platform}: ${progressLine(build)}\n`);
    while (build.state === BuildState.RUNNING || build.state === BuildState.SCANNING) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<"idle">((resolve) => (timer = setTimeout(() => resolve("idle"), IDLE_CHECK_MS)));
      let got: Awaited<typeof next> | "idle";
      try {
        got = await Promise.race([next, idle]);
      } catch (e) {
        if (context.signal.aborted) return EXIT_INTERRUPTED;
        // A watcher that fell behind is told to re-read the build and watch again.
        if (ConnectError.from(e).code !== Code.ResourceExhausted) throw e;
        got = { done: true, value: undefined };
      } finally {
        clearTimeout(timer);
      }
      if (got === "idle") {
        build = (await farm.depgraph.getBuild({ buildId })).build!;
        continue;
      }
      if (got.done === true) {
        // The stream ended (depgraph shut down gracefully, or cut a slow reader off): open another, then re-read.
        stream = open();
        next = read(stream);
        build = (await farm.depgraph.getBuild({ buildId })).build!;
        continue;
      }
      next = read(stream);
      const message = got.value;
      if (json) out.write(`${toLine(message)}\n`);
      if (message.buildEvent !== undefined) {
        if (message.buildEvent.kind === BuildEventKind.ENDED && message.buildEvent.build !== undefined) build = message.buildEvent.build;
        continue;
      }
      build = apply(build, message);
      if (!json && ended(build) > 0 && isEnd(message.toState)) out.write(`${jobLine(build, message)}\n`);
    }
    await finish(farm.depgraph, build, context);
    return exitStatusOf(build);
  } finally {
    context.signal.removeEventListener("abort", stop);
    abort.abort();
  }
}

/** One message per line: NDJSON a script reads with a line reader. */
function toLine(message: WatchJobsResponse): string {
  return JSON.stringify(toJson(WatchJobsResponseSchema, message));
}

function isEnd(state: JobState): boolean {
  return state !== JobState.PENDING && state !== JobState.READY && state !== JobState.LEASED;
}

/** apply moves one job's count from its old state to its new one, so progress needs no GetBuild per job. */
function apply(build: Build, t: WatchJobsResponse): Build {
  const jobCounts = { ...build.jobCounts };
  const from = `JOB_STATE_${JobState[t.fromState]}`;
  const to = `JOB_STATE_${JobState[t.toState]}`;
  jobCounts[from] = Math.max(0, (jobCounts[from] ?? 0) - 1);
  jobCounts[to] = (jobCounts[to] ?? 0) + 1;
  return { ...build, jobCounts };
}

/** "[12/37] failed     bison-3.8.2 on host h1 after 3s: exited with status 1" */
function jobLine(build: Build, t: WatchJobsResponse): string {
  const where = t.host !== "" ? ` on host ${t.host}` : t.agentId !== "" ? ` on ${t.agentId}` : "";
  const reason = t.reason !== "" && t.toState !== JobState.SUCCEEDED ? `: ${t.reason}` : "";
  return clean(`[${ended(build)}/${build.totalJobs}] ${jobStateName(t.toState).padEnd(15)} ${t.pkgname}${t.toState === JobState.SUCCEEDED || t.toState === JobState.FAILED ? where : ""}${reason}`);
}

function progressLine(build: Build): string {
  if (build.state === BuildState.SCANNING) return `scanning the list's closure first (scan ${build.scanId})`;
  return `${ended(build)}/${build.totalJobs} jobs ended: ${counts(build)}`;
}

/** The end: the counts, the build's problem, and its failures with their phase. */
async function finish(depgraph: Client<typeof DepGraphService>, build: Build, context: VerbContext): Promise<void> {
  const { io, json } = context;
  const failed = (await depgraph.listJobs({ buildId: build.id, states: [JobState.FAILED] })).jobs;
  if (json) {
    io.out.write(`${JSON.stringify(toJson(ListJobsResponseSchema, create(ListJobsResponseSchema, { jobs: failed })))}\n`);
    return;
  }
  const took = ms(build.finishTime) !== undefined && ms(build.createTime) !== undefined ? ` in ${formatDuration(ms(build.finishTime)! - ms(build.createTime)!)}` : "";
  if (build.problem !== "") io.out.write(`build ${build.id}: ${clean(build.problem)}\n`);
  io.out.write(`build ${build.id} ${build.state === BuildState.CANCELLED ? "cancelled" : "finished"}${took}: ${counts(build)}\n`);
  for (const job of failed.slice(0, 50)) {
    io.out.write(clean(`  failed: ${job.pkgname} (${job.location})${job.failedPhase ? ` in ${job.failedPhase}` : ""}${job.host ? ` on host ${job.host}` : ""} after ${durationText(job.duration)}: ${job.reason}`) + "\n");
  }
  if (failed.length > 50) io.out.write(`  ... and ${failed.length - 50} more: pkgfarm jobs ${build.id} --state failed\n`);
}
