// `pkgfarm jobs BUILD [--state S]` and `pkgfarm why BUILD PKG`: a build's
// jobs, and why one of them is not running or did not build.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ExplainJobResponseSchema, JobState, ListJobsResponseSchema, WaitKind, type Job } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { EXIT_OK, UsageError, type Verb, type VerbContext } from "./command.js";
import { clean, durationText, jobStateFromName, jobStateName, JOB_STATE_NAMES, table, writeJson } from "./output.js";

/** The longest reason the jobs table shows; `why` and --json show all of it. */
const REASON_CHARS = 80;

/** allJobs reads every page of the build's jobs in the states. */
async function allJobs(context: VerbContext, buildId: string, states: JobState[]): Promise<Job[]> {
  const jobs: Job[] = [];
  let pageToken = "";
  do {
    const page = await context.farm.depgraph.listJobs({ buildId, states, pageSize: 10_000, pageToken }, { signal: context.signal });
    jobs.push(...page.jobs);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return jobs;
}

function statesFrom(values: VerbContext["values"]): JobState[] {
  const given = (values["state"] as string[] | undefined) ?? [];
  return given.flatMap((s) => s.split(",")).filter((s) => s.trim() !== "").map((name) => {
    const state = jobStateFromName(name);
    if (state === undefined) throw new UsageError(`unknown state "${name}": say one of ${JOB_STATE_NAMES.join(", ")}`);
    return state;
  });
}

export const jobsVerb: Verb = {
  name: "jobs",
  synopsis: "BUILD [--state S[,S...]]... [--json]",
  help: `Lists a build's jobs by PKGNAME: state, location, the host that ran it, how long it took,
and why it is in its state (the failing phase and reason, the package that blocks it).
  --state S   only jobs in these states (${JOB_STATE_NAMES.join(", ")});
              repeat it or separate with commas`,
  options: { state: { type: "string", multiple: true } },
  positionals: { min: 1, max: 1 },
  needs: { depgraph: true },
  async run(context) {
    const jobs = await allJobs(context, context.positionals[0]!, statesFrom(context.values));
    if (context.json) {
      writeJson(context.io.out, ListJobsResponseSchema, create(ListJobsResponseSchema, { jobs }));
      return EXIT_OK;
    }
    if (jobs.length === 0) {
      context.io.out.write("no jobs\n");
      return EXIT_OK;
    }
    context.io.out.write(table(["PKGNAME", "STATE", "LOCATION", "HOST", "TOOK", "WHY"], jobs.map((j) => [
      j.pkgname,
      jobStateName(j.state),
      j.location,
      j.host || (j.state === JobState.LEASED ? j.agentId : "") || "-",
      durationText(j.duration),
      why(j),
    ])));
    return EXIT_OK;
  },
};

/** A job's reason as one short cell. */
function why(job: Job): string {
  const phase = job.failedPhase !== "" ? `${job.failedPhase}: ` : "";
  const text = clean(`${phase}${job.reason}`);
  return text.length <= REASON_CHARS ? text : `${text.slice(0, REASON_CHARS - 3)}...`;
}

export const whyVerb: Verb = {
  name: "why",
  synopsis: "BUILD PKG [--json]",
  help: `Says why a job is not running (the dependencies it waits for, no agent of the platform,
every slot busy) or why it failed, with the chain of dependencies to the root cause.
PKG is the job's PKGNAME, or a location (devel/gmake) with one job in the build.`,
  positionals: { min: 2, max: 2 },
  needs: { depgraph: true },
  async run(context) {
    const [buildId, pkg] = context.positionals as [string, string];
    const pkgname = pkg.includes("/") ? await pkgnameAt(context, buildId, pkg) : pkg;
    const answer = await context.farm.depgraph.explainJob({ buildId, pkgname }, { signal: context.signal });
    if (context.json) {
      writeJson(context.io.out, ExplainJobResponseSchema, answer);
      return EXIT_OK;
    }
    const out = [clean(answer.summary)];
    const job = answer.job!;
    out.push(`  state: ${jobStateName(job.state)}${job.failedPhase ? ` in ${job.failedPhase}` : ""}${job.host ? ` on host ${clean(job.host)}` : ""}`);
    const wait = answer.wait;
    const waiting = wait !== undefined && wait.kind !== WaitKind.NONE;
    if (waiting && wait.kind === WaitKind.DEPENDENCIES) out.push(clean(`  waiting for: ${wait.dependencies.join(", ")}`));
    // A kind this pkgfarm does not know yet still has its words.
    else if (waiting) out.push(`  waits: ${(WaitKind[wait.kind] ?? `kind ${wait.kind}`).toLowerCase().replace(/_/g, " ")}: ${clean(wait.detail)}`);
    if (answer.chain.length > 0) {
      out.push(waiting ? "  what it waits for, down to what runs:" : "  chain to the root cause:");
      for (const link of answer.chain) {
        const detail = link.reason !== "" ? `: ${link.failedPhase ? `${link.failedPhase}: ` : ""}${link.reason}` : link.host ? ` on host ${link.host}` : "";
        out.push(clean(`    -> ${link.pkgname} (${link.location}) ${jobStateName(link.state)}${detail}`));
      }
    }
    context.io.out.write(`${out.join("\n")}\n`);
    return EXIT_OK;
  },
};

/** The PKGNAME of the build's job at a location; NOT_FOUND or a list of the choices when not one. */
async function pkgnameAt(context: VerbContext, buildId: string, location: string): Promise<string> {
  const at = (await allJobs(context, buildId, [])).filter((j) => j.location === location);
  if (at.length === 1) return at[0]!.pkgname;
  if (at.length === 0) throw new ConnectError(`build ${buildId} has no job at ${location}`, Code.NotFound);
  throw new UsageError(`${location} has ${at.length} jobs in build ${buildId}: name one of ${at.map((j) => j.pkgname).join(", ")}`);
}
