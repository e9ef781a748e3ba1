// How every farm command reaches depgraph and the dispatcher: their URLs, TLS
// and token, read as the services read theirs (services/shared/config.ts and
// tls.ts), so one set of PKGFARM_* variables serves a shell session.
import { createClient, type Client } from "@connectrpc/connect";
import { DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { CLIENT_TLS_FLAGS, createPkgfarmTransport, readClientTls, readConfig } from "../shared/index.js";

export const DEFAULT_DEPGRAPH_URL = "http://127.0.0.1:7401";
export const DEFAULT_DISPATCHER_URL = "http://127.0.0.1:7402";

/** The options every farm command takes (for parseArgs). */
export const FARM_OPTIONS = {
  depgraph: { type: "string" as const },
  // The name older commands used for --depgraph; kept so scripts go on working.
  server: { type: "string" as const },
  dispatcher: { type: "string" as const },
  ...Object.fromEntries(CLIENT_TLS_FLAGS.map((flag) => [flag, { type: "string" as const }])) as Record<(typeof CLIENT_TLS_FLAGS)[number], { type: "string" }>,
  json: { type: "boolean" as const, default: false },
  help: { type: "boolean" as const, short: "h", default: false },
};

/** The lines every farm command's --help ends with. */
export const FARM_HELP = `
Reaching the farm (flags win over the environment):
  --depgraph URL       depgraph (PKGFARM_DEPGRAPH_URL, default ${DEFAULT_DEPGRAPH_URL}; --server is the same)
  --dispatcher URL     the dispatcher (PKGFARM_DISPATCHER_URL, default ${DEFAULT_DISPATCHER_URL})
  --tls-ca PEM         trust this CA for https:// URLs (PKGFARM_TLS_CA)
  --tls-client-cert PEM --tls-client-key PEM   client certificate for mutual TLS
                       (PKGFARM_TLS_CLIENT_CERT, PKGFARM_TLS_CLIENT_KEY)
  --json               print what the server answered as protobuf JSON, for scripts
Tokens come from the environment only, never a flag: PKGFARM_OPERATOR_TOKEN (or
PKGFARM_OPERATOR_TOKEN_FILE) for commands that change things, else PKGFARM_READ_TOKEN
(or _FILE) for reads when the farm runs with --read-auth token.
Exit status: 0 done, 1 the server refused or could not be reached (the gRPC status is
printed), 2 bad usage.
`;

/** The services a command talks to. */
export interface FarmClients {
  readonly depgraph: Client<typeof DepGraphService>;
  readonly dispatcher: Client<typeof DispatcherService>;
  readonly depgraphUrl: string;
  readonly dispatcherUrl: string;
}

/**
 * farmClients makes clients for the services a command needs from its
 * parsed options and the environment, or the lines saying what is wrong.
 * TLS flags are checked against the URL of each service the command uses
 * only, so `--tls-ca` with an https:// depgraph does not trip over the
 * default http:// dispatcher of a command that never calls it.
 */
export function farmClients(values: Record<string, unknown>, env: NodeJS.ProcessEnv, needs: { depgraph?: boolean; dispatcher?: boolean }): FarmClients | { errors: string[] } {
  const depgraphUrl = (values["depgraph"] ?? values["server"] ?? env["PKGFARM_DEPGRAPH_URL"] ?? DEFAULT_DEPGRAPH_URL) as string;
  const dispatcherUrl = (values["dispatcher"] ?? env["PKGFARM_DISPATCHER_URL"] ?? DEFAULT_DISPATCHER_URL) as string;
  const tlsArgs = CLIENT_TLS_FLAGS.flatMap((flag) => typeof values[flag] === "string" ? [`--${flag}`, values[flag] as string] : []);
  const read = readConfig(tlsArgs, env, CLIENT_TLS_FLAGS);
  const depgraphTls = needs.depgraph ? readClientTls(read, depgraphUrl, "--depgraph (PKGFARM_DEPGRAPH_URL)") : undefined;
  const dispatcherTls = needs.dispatcher ? readClientTls(read, dispatcherUrl, "--dispatcher (PKGFARM_DISPATCHER_URL)") : undefined;
  // The operator token can do everything the read token can.
  const token = read.secret("PKGFARM_OPERATOR_TOKEN") || read.secret("PKGFARM_READ_TOKEN");
  if (read.errors.length > 0) return { errors: [...new Set(read.errors)] };
  return {
    depgraph: createClient(DepGraphService, createPkgfarmTransport(depgraphUrl, { tls: depgraphTls, token })),
    dispatcher: createClient(DispatcherService, createPkgfarmTransport(dispatcherUrl, { tls: dispatcherTls, token })),
    depgraphUrl,
    dispatcherUrl,
  };
}
