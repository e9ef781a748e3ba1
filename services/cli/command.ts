// One farm command (a "verb"): its flags, its --help, how it reaches the
// farm, and what its exit status means. Every verb runs through runVerb, so
// usage errors, server refusals and --help read the same everywhere.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ConnectError } from "@connectrpc/connect";
import { grpcCodeName } from "../shared/index.js";
import { FARM_HELP, FARM_OPTIONS, farmClients, type FarmClients } from "./farm-client.js";

/** Where a verb writes, and the environment it reads; a test passes its own. */
export interface CommandIo {
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream;
  readonly env: NodeJS.ProcessEnv;
}

export const PROCESS_IO: CommandIo = { out: process.stdout, err: process.stderr, env: process.env };

/** Exit statuses shared by every verb; build watch adds its own (see build-watch.ts). */
export const EXIT_OK = 0;
export const EXIT_SERVER = 1;
export const EXIT_USAGE = 2;

/** UsageError: the command line is wrong; the verb's usage follows the message, and the exit status is 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export interface VerbContext {
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: readonly string[];
  readonly farm: FarmClients;
  readonly json: boolean;
  readonly io: CommandIo;
  /** Aborted on SIGINT/SIGTERM, so a follow ends cleanly. */
  readonly signal: AbortSignal;
}

export interface Verb {
  /** As typed, e.g. "build status". */
  readonly name: string;
  /** The first line of --help after "usage: pkgfarm NAME ". */
  readonly synopsis: string;
  /** What the command does and its own flags, one per line. */
  readonly help: string;
  readonly options?: ParseArgsConfig["options"];
  /** Positional arguments the verb takes: the least and the most. */
  readonly positionals: { readonly min: number; readonly max: number };
  readonly needs: { readonly depgraph?: boolean; readonly dispatcher?: boolean };
  run(context: VerbContext): Promise<number>;
}

export function usageOf(verb: Verb): string {
  return `usage: pkgfarm ${verb.name} ${verb.synopsis}\n\n${verb.help.trimEnd()}\n${FARM_HELP}`;
}

/** runVerb parses argv for the verb, makes its clients and runs it; the exit status is what it returns. */
export async function runVerb(verb: Verb, argv: readonly string[], io: CommandIo = PROCESS_IO, signal: AbortSignal = new AbortController().signal): Promise<number> {
  const fail = (message: string) => {
    io.err.write(`pkgfarm ${verb.name}: ${message}\n${usageOf(verb)}`);
    return EXIT_USAGE;
  };
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...FARM_OPTIONS, ...verb.options }, allowPositionals: true, strict: true });
  } catch (e) {
    return fail((e as Error).message);
  }
  const values = parsed.values as VerbContext["values"];
  if (values["help"] === true) {
    io.out.write(usageOf(verb));
    return EXIT_OK;
  }
  const { positionals } = parsed;
  if (positionals.length < verb.positionals.min || positionals.length > verb.positionals.max) {
    const { min, max } = verb.positionals;
    return fail(min === max ? `takes ${min === 0 ? "no" : min} argument${min === 1 ? "" : "s"}, not ${positionals.length}` : `takes ${min} to ${max === Infinity ? "any number of" : max} arguments, not ${positionals.length}`);
  }
  const farm = farmClients(values, io.env, verb.needs);
  if ("errors" in farm) {
    for (const line of farm.errors) io.err.write(`pkgfarm ${verb.name}: ${line}\n`);
    return EXIT_USAGE;
  }
  try {
    return await verb.run({ values, positionals, farm, json: values["json"] === true, io, signal });
  } catch (e) {
    if (e instanceof UsageError) return fail(e.message);
    if (e instanceof ConnectError || (e as Error).name === "ConnectError") {
      const error = ConnectError.from(e);
      io.err.write(`pkgfarm ${verb.name}: ${grpcCodeName(error.code)}: ${error.rawMessage}\n`);
      return EXIT_SERVER;
    }
    throw e;
  }
}

/** A subcommand group (`pkgfarm build ...`, `pkgfarm agents ...`): picks the verb by its first word. */
export function groupUsage(group: string, verbs: readonly Verb[], about: string): string {
  const width = Math.max(...verbs.map((v) => v.name.length));
  return `usage: pkgfarm ${group} COMMAND ...\n\n${about}\n\n${verbs.map((v) => `  pkgfarm ${v.name.padEnd(width)}  ${v.synopsis}`).join("\n")}\n\npkgfarm ${group} COMMAND --help tells a command's options.\n`;
}
