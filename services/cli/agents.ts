// `pkgfarm agents` and `pkgfarm agents drain ID`: the build hosts connected
// to the dispatcher, and taking one out of service in order.
import { AgentState, DrainAgentResponseSchema, ListAgentsResponseSchema, type Agent } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { EXIT_OK, EXIT_USAGE, groupUsage, PROCESS_IO, runVerb, type CommandIo, type Verb } from "./command.js";
import { agoText, clean, formatDuration, ms, table, writeJson } from "./output.js";

/** What an agent runs, each with how long: "bison-3.8.2 (1m02s) zlib-1.3.1 (4s)". */
function running(agent: Agent, now?: number): string {
  if (agent.jobs.length === 0) return agent.running.length === 0 ? "-" : agent.running.map((j) => j.pkgname).join(" ");
  return agent.jobs.map((j) => {
    const since = ms(j.assignTime);
    return now === undefined || since === undefined ? j.job?.pkgname ?? "" : `${j.job?.pkgname ?? ""} (${formatDuration(now - since)})`;
  }).join(" ");
}

export const agentsVerb: Verb = {
  name: "agents",
  synopsis: "[--json]",
  help: `Lists the agents connected to the dispatcher: id, host, platform, state (active or
draining), slots in use of all, when it last sent anything, jobs done, and what it runs
(each job with how long since it was sent to the agent).`,
  positionals: { min: 0, max: 0 },
  needs: { dispatcher: true },
  async run({ farm, io, json }) {
    const answer = await farm.dispatcher.listAgents({});
    if (json) {
      writeJson(io.out, ListAgentsResponseSchema, answer);
      return EXIT_OK;
    }
    if (answer.agents.length === 0) {
      io.out.write("no agents connected\n");
      return EXIT_OK;
    }
    const now = Date.now();
    io.out.write(table(["AGENT", "HOST", "PLATFORM", "STATE", "SLOTS", "LAST SEEN", "DONE", "RUNNING"], answer.agents.map((a) => [
      a.hello?.agentId ?? "-",
      clean(a.hello?.host || "-"),
      a.platform,
      a.state === AgentState.DRAINING ? "draining" : "active",
      `${a.running.length}/${a.hello?.slots ?? 0}`,
      agoText(a.lastSeen, now),
      String(a.jobsDone),
      running(a, now),
    ])));
    return EXIT_OK;
  },
};

export const drainVerb: Verb = {
  name: "agents drain",
  synopsis: "AGENT [--json]",
  help: `Stops giving an agent work; it finishes what it runs (then it can be stopped). Needs the
operator token (PKGFARM_OPERATOR_TOKEN) when the farm has one.`,
  positionals: { min: 1, max: 1 },
  needs: { dispatcher: true },
  async run({ positionals, farm, io, json }) {
    const answer = await farm.dispatcher.drainAgent({ agentId: positionals[0]! });
    if (json) {
      writeJson(io.out, DrainAgentResponseSchema, answer);
      return EXIT_OK;
    }
    const agent = answer.agent!;
    io.out.write(`agent ${agent.hello?.agentId ?? positionals[0]} is draining: ${agent.running.length === 0 ? "it runs nothing" : `it finishes ${running(agent)}`}\n`);
    return EXIT_OK;
  },
};

/** runAgentsGroup is `pkgfarm agents [drain ID]`. */
export function runAgentsGroup(argv: readonly string[], io: CommandIo = PROCESS_IO, signal?: AbortSignal): Promise<number> {
  if (argv[0] === "drain") return runVerb(drainVerb, argv.slice(1), io, signal);
  if (argv[0] !== undefined && !argv[0].startsWith("-")) {
    io.err.write(`pkgfarm agents: unknown command "${argv[0]}"\n${groupUsage("agents", [agentsVerb, drainVerb], "The dispatcher's build hosts.")}`);
    return Promise.resolve(EXIT_USAGE);
  }
  return runVerb(agentsVerb, argv, io, signal);
}
