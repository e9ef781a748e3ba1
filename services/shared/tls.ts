import { X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import type { ConfigReader } from "./config.js";

/**
 * ServerTls turns a gRPC port into HTTPS/2 (ALPN h2). With clientCa the
 * server also demands a client certificate signed by it (mutual TLS) and
 * ends the handshake of a client that has none.
 */
export interface ServerTls {
  /** PEM certificate chain, leaf first. */
  readonly cert: Buffer;
  /** PEM private key of the leaf. */
  readonly key: Buffer;
  /** PEM bundle of the CAs that sign client certificates; absent: no client certificates asked for. */
  readonly clientCa?: Buffer;
}

/** ClientTls is what a client needs beyond an https:// URL; every part optional. */
export interface ClientTls {
  /** PEM bundle to trust instead of the system's CAs (a private CA). */
  readonly ca?: Buffer;
  /** Client certificate chain and key, for servers that require mutual TLS. */
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** Flags a gRPC server reads for TLS; list them in the service's readConfig call. */
export const SERVER_TLS_FLAGS = ["tls-cert", "tls-key", "tls-client-ca"] as const;
/** Flags a gRPC client reads for TLS. */
export const CLIENT_TLS_FLAGS = ["tls-ca", "tls-client-cert", "tls-client-key"] as const;

/**
 * readServerTls reads --tls-cert, --tls-key and --tls-client-ca and checks
 * them the way the server will use them (PEM parses, key matches the
 * certificate), so a bad Secret fails at start-up, not at the first client.
 */
export function readServerTls(read: ConfigReader): ServerTls | undefined {
  const cert = read.file("tls-cert", "PKGFARM_TLS_CERT");
  const key = read.file("tls-key", "PKGFARM_TLS_KEY");
  const clientCa = read.file("tls-client-ca", "PKGFARM_TLS_CLIENT_CA");
  if (cert === undefined && key === undefined) {
    if (clientCa !== undefined) read.errors.push("--tls-client-ca (PKGFARM_TLS_CLIENT_CA) needs --tls-cert and --tls-key: mutual TLS is TLS first");
    return undefined;
  }
  if (cert === undefined || key === undefined) {
    read.errors.push("--tls-cert (PKGFARM_TLS_CERT) and --tls-key (PKGFARM_TLS_KEY) go together: set both or neither");
    return undefined;
  }
  if (!check(read, "--tls-cert/--tls-key (PKGFARM_TLS_CERT/PKGFARM_TLS_KEY)", { cert, key })) return undefined;
  if (clientCa !== undefined && !check(read, "--tls-client-ca (PKGFARM_TLS_CLIENT_CA)", { ca: clientCa })) return undefined;
  return clientCa === undefined ? { cert, key } : { cert, key, clientCa };
}

/**
 * readClientTls reads --tls-ca, --tls-client-cert and --tls-client-key for a
 * client of `url`. They mean nothing on an http:// URL, which is reported
 * rather than silently ignored: the operator meant to have TLS.
 */
export function readClientTls(read: ConfigReader, url: string, urlSetting: string): ClientTls | undefined {
  const ca = read.file("tls-ca", "PKGFARM_TLS_CA");
  const cert = read.file("tls-client-cert", "PKGFARM_TLS_CLIENT_CERT");
  const key = read.file("tls-client-key", "PKGFARM_TLS_CLIENT_KEY");
  if (ca === undefined && cert === undefined && key === undefined) return undefined;
  if (!url.startsWith("https://")) {
    read.errors.push(`--tls-ca and --tls-client-cert/--tls-client-key need an https:// URL in ${urlSetting}, not "${url}"`);
    return undefined;
  }
  if ((cert === undefined) !== (key === undefined)) {
    read.errors.push("--tls-client-cert (PKGFARM_TLS_CLIENT_CERT) and --tls-client-key (PKGFARM_TLS_CLIENT_KEY) go together: set both or neither");
    return undefined;
  }
  if (ca !== undefined && !check(read, "--tls-ca (PKGFARM_TLS_CA)", { ca })) return undefined;
  if (cert !== undefined && !check(read, "--tls-client-cert/--tls-client-key (PKGFARM_TLS_CLIENT_CERT/PKGFARM_TLS_CLIENT_KEY)", { cert, key })) return undefined;
  return { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) };
}

function check(read: ConfigReader, what: string, pems: { cert?: Buffer; key?: Buffer; ca?: Buffer }): boolean {
  try {
    // OpenSSL refuses a bad certificate or key, or a key that is not the
    // certificate's, but skips what it cannot parse in a CA bundle: a bundle
    // that trusts nothing would only show as every handshake failing.
    if (pems.ca !== undefined) {
      const blocks = pems.ca.toString("latin1").match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
      if (blocks.length === 0) throw new Error("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file");
      for (const block of blocks) new X509Certificate(block);
    }
    createSecureContext(pems);
    return true;
  } catch (e) {
    read.errors.push(`${what}: ${(e as Error).message}`);
    return false;
  }
}
