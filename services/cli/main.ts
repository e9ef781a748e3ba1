#!/usr/bin/env node
import { runAgent } from "../builder-agent/main.js";
import { runDepGraph } from "../depgraph/main.js";
import { runDispatcher } from "../dispatcher/main.js";
import { runUp } from "./up.js";
import { runImport } from "./import.js";
import { runPublish } from "./publish.js";
import { isFarmCommand, runFarmCommand } from "./farm-commands.js";

const USAGE = `usage: pkgfarm COMMAND [options]

commands:
  depgraph [--port N] [--import FILE] [--history CSV] ...   run the depgraph service
  import [--server URL] [--locations] [--max-removed-share S] FILE
                                                              stream a pbulk-index scan (gzip or plain) to depgraph
  publish [--nats URL] --records FILE | --changed-files FILE  put package-metadata changes on NATS for depgraph
  scan [--platform P] (--all | --limit FILE | LOCATION...)  scan a platform's tree on its agents, and wait
  build start [--platform P] [--limit FILE | LOCATION...] [--incremental] [--watch]
                                                              start a build on the farm
  build list | status BUILD | watch BUILD | cancel BUILD      the farm's builds: list, where one stands (ETA), follow one
  build report BUILD [--html FILE] | diff BUILD [OTHER]      a build's report, what changed between two builds
  build [--limit FILE | LOCATION...]                          start a build and follow it (build start --watch)
  jobs BUILD [--state S]                                      a build's jobs
  why BUILD PKG                                               why a job is not running, or why it failed
  log BUILD PKG [--phase P] [-f]                              a job's build log (-f follows it)
  agents | agents drain ID                                    the dispatcher's agents; take one out of service
  dispatcher [--port N] [--depgraph URL] [--data-dir DIR] ... run the dispatcher
  agent [--dispatcher URL] [--build-command CMD] [--slots N]  run a builder agent
  up [--incremental] [--agents N] [--tree DIR] [--executor pkgsrc --bootstrap-kit FILE] [--limit FILE] ...
                                                              bulk-build a tree locally (depgraph + dispatcher + agents in one process)

pkgfarm COMMAND --help tells a command's options.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (isFarmCommand(command)) {
    // The farm commands end what they follow (build watch, log -f) on the first Ctrl-C.
    const interrupted = new AbortController();
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => interrupted.abort());
    return runFarmCommand(command!, rest, undefined, interrupted.signal);
  }
  switch (command) {
    case "depgraph":
      return runDepGraph(rest);
    case "import":
      return runImport(rest, process.stdout);
    case "publish":
      return runPublish(rest, process.stdout);
    case "dispatcher":
      return runDispatcher(rest);
    case "agent":
      return runAgent(rest);
    case "up":
      return runUp(rest, process.stdout);
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`pkgfarm: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`pkgfarm: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
