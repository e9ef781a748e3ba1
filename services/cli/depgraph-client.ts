import { createClient, type Client } from "@connectrpc/connect";
import { DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { CLIENT_TLS_FLAGS, createPkgfarmTransport, readClientTls, readConfig } from "../shared/index.js";

/** The options every command that talks to depgraph takes (for parseArgs). */
export const DEPGRAPH_CLIENT_OPTIONS = {
  server: { type: "string" as const, default: process.env["PKGFARM_DEPGRAPH_URL"] ?? "http://127.0.0.1:7401" },
  ...Object.fromEntries(CLIENT_TLS_FLAGS.map((flag) => [flag, { type: "string" as const }])),
};

export const DEPGRAPH_CLIENT_USAGE = "[--server URL] [--tls-ca PEM] [--tls-client-cert PEM --tls-client-key PEM]";

/**
 * depgraphClient makes a DepGraphService client from parsed options, with
 * the operator token (PKGFARM_OPERATOR_TOKEN or PKGFARM_OPERATOR_TOKEN_FILE)
 * when one is set; or the lines saying what is wrong.
 */
export function depgraphClient(values: Record<string, unknown>): { client: Client<typeof DepGraphService> } | { errors: string[] } {
  const server = values["server"] as string;
  const tlsArgs = CLIENT_TLS_FLAGS.flatMap((flag) => typeof values[flag] === "string" ? [`--${flag}`, values[flag] as string] : []);
  const read = readConfig(tlsArgs, process.env, CLIENT_TLS_FLAGS);
  const tls = readClientTls(read, server, "--server (PKGFARM_DEPGRAPH_URL)");
  const token = read.secret("PKGFARM_OPERATOR_TOKEN");
  if (read.errors.length > 0) return { errors: read.errors };
  return { client: createClient(DepGraphService, createPkgfarmTransport(server, { tls, token })) };
}
