#!/usr/bin/env node
import { runAgent } from "../builder-agent/main.js";
import { runDepGraph } from "../depgraph/main.js";
import { runDispatcher } from "../dispatcher/main.js";
import { runUp } from "./up.js";
import { runImport } from "./import.js";
import { runPublish } from "./publish.js";
import { runScan } from "./scan.js";
import { runBuild } from "./build.js";

const USAGE = `usage: pkgfarm COMMAND [options]

commands:
  depgraph [--port N] [--import FILE] [--history CSV] ...   run the depgraph service
  import [--server URL] [--locations] [--max-removed-share S] FILE
                                                              stream a pbulk-index scan (gzip or plain) to depgraph
  publish [--nats URL] --records FILE | --changed-files FILE  put package-metadata changes on NATS for depgraph
  scan [--server URL] (--all | --limit FILE | LOCATION...)    scan a platform's tree on its agents, and wait
  build [--server URL] [--limit FILE] [--incremental]         start a build on the farm, and wait
  dispatcher [--port N] [--depgraph URL] [--data-dir DIR] ... run the dispatcher
  agent [--dispatcher URL] [--build-command CMD] [--slots N]  run a builder agent
  up [--incremental] [--agents N] [--tree DIR] [--executor pkgsrc --bootstrap-kit FILE] [--limit FILE] ...
                                                              bulk-build a tree locally (depgraph + dispatcher + agents in one process)

pkgfarm COMMAND --help tells a command's options.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "depgraph":
      return runDepGraph(rest);
    case "import":
      return runImport(rest, process.stdout);
    case "publish":
      return runPublish(rest, process.stdout);
    case "scan":
      return runScan(rest, process.stdout);
    case "build":
      return runBuild(rest, process.stdout);
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
