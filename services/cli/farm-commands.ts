// The commands that talk to a running farm, by their first word; main.ts
// runs them, and tests run them in process with their own output streams.
import { runAgentsGroup } from "./agents.js";
import { runBuildGroup } from "./build.js";
import { PROCESS_IO, runVerb, type CommandIo } from "./command.js";
import { jobsVerb, whyVerb } from "./jobs.js";
import { logVerb } from "./log.js";
import { runScan } from "./scan.js";

const FARM_COMMANDS: Readonly<Record<string, (argv: readonly string[], io: CommandIo, signal: AbortSignal) => Promise<number>>> = {
  scan: runScan,
  build: runBuildGroup,
  jobs: (argv, io, signal) => runVerb(jobsVerb, argv, io, signal),
  why: (argv, io, signal) => runVerb(whyVerb, argv, io, signal),
  log: (argv, io, signal) => runVerb(logVerb, argv, io, signal),
  agents: runAgentsGroup,
};

export function isFarmCommand(command: string | undefined): boolean {
  return command !== undefined && Object.hasOwn(FARM_COMMANDS, command);
}

/** runFarmCommand runs `pkgfarm COMMAND ARGV...` for a farm command; see isFarmCommand. */
export function runFarmCommand(command: string, argv: readonly string[], io: CommandIo = PROCESS_IO, signal: AbortSignal = new AbortController().signal): Promise<number> {
  const run = FARM_COMMANDS[command];
  if (run === undefined) throw new Error(`${command} is not a farm command`);
  return run(argv, io, signal);
}
