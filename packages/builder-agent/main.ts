#!/usr/bin/env node
import { runAgent } from "../../services/builder-agent/main.js";

/**
 * The entry point of the stand-alone agent (`pkgfarm-agent`, bundled into one
 * file by `npm run bundle:agent`): the same agent as `pkgfarm agent`, for build
 * hosts that have Node 20+ and nothing else of pkgfarm.
 */
const USAGE = `usage: pkgfarm-agent --dispatcher URL --build-command CMD [options]

Connects to a pkgfarm dispatcher and builds the packages it assigns. Every flag
has a PKGFARM_* environment variable (flags win); the README's agent table lists them.

  --dispatcher URL        dispatcher's URL, https:// for TLS (PKGFARM_DISPATCHER_URL)
  --build-command CMD     command or JSON argv array that builds one package (PKGFARM_BUILD_COMMAND)
  --tree DIR              the package tree checkout (PKGFARM_TREE)
  --slots N               builds at once (PKGFARM_SLOTS)
  --id NAME               agent id, unique per live agent; default the host name (PKGFARM_AGENT_ID)
  --platform NAME         depgraph platform, default <os>-<release>-<arch> (PKGFARM_PLATFORM)
  --work-dir, --cache-dir per-job directories and the dependency cache

The agent token comes from PKGFARM_AGENT_TOKEN or PKGFARM_AGENT_TOKEN_FILE, never a flag.
The first SIGTERM or SIGINT drains (running builds finish); a second gives them back and exits.
`;

const argv = process.argv.slice(2);
if (argv.includes("--help") || argv.includes("-h")) {
  process.stdout.write(USAGE);
} else {
  runAgent(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`pkgfarm-agent: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
