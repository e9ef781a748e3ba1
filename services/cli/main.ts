#!/usr/bin/env node
import { runDepGraph } from "../depgraph/main.js";
import { runImport } from "./import.js";

const USAGE = `usage: pkgfarm COMMAND [options]

commands:
  depgraph [--port N] [--import FILE] [--history CSV] ...   run the depgraph service
  import [--server URL] [--locations] FILE                    stream a pbulk-index scan (gzip or plain) to depgraph
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "depgraph":
      return runDepGraph(rest);
    case "import":
      return runImport(rest, process.stdout);
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
