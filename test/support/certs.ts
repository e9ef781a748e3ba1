import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** PEM file paths (and contents) of one test certificate and its key. */
export interface TestCert {
  readonly certPath: string;
  readonly keyPath: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * TestPki is a throw-away CA with a server certificate for 127.0.0.1 and
 * localhost, a client certificate, and a second, unrelated CA's client
 * certificate (one the server must not trust).
 */
export interface TestPki {
  readonly caPath: string;
  readonly ca: Buffer;
  readonly server: TestCert;
  readonly client: TestCert;
  readonly strangerClient: TestCert;
}

/**
 * createTestPki makes the certificates with the openssl command line, as an
 * operator would (EC P-256, valid one day, SANs that Go's and Node's TLS
 * both check).
 */
export function createTestPki(dir: string): TestPki {
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const newCa = (name: string) => {
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-keyout", `${name}.key`, "-out", `${name}.pem`, "-subj", `/CN=${name}`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  };
  const issue = (name: string, ca: string, extensions: string): TestCert => {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    openssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial",
      "-days", "1", "-out", `${name}.pem`, "-extfile", `${name}.ext`);
    const certPath = join(dir, `${name}.pem`);
    const keyPath = join(dir, `${name}.key`);
    return { certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) };
  };
  newCa("test-ca");
  newCa("stranger-ca");
  const server = issue("server", "test-ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  const client = issue("client", "test-ca", "extendedKeyUsage=clientAuth\n");
  const strangerClient = issue("stranger", "stranger-ca", "extendedKeyUsage=clientAuth\n");
  const caPath = join(dir, "test-ca.pem");
  return { caPath, ca: readFileSync(caPath), server, client, strangerClient };
}
