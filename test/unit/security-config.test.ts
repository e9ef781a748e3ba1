import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loadAgentConfig } from "../../services/builder-agent/config.js";
import { loadDepGraphConfig } from "../../services/depgraph/config.js";
import { loadDispatcherConfig } from "../../services/dispatcher/config.js";
import { createTestPki, type TestPki } from "../support/certs.js";

const TOKEN = "0123456789abcdef0123456789abcdef";

function errorsOf(result: object): string[] {
  assert.ok("errors" in result, `expected errors, got a configuration: ${JSON.stringify(result)}`);
  return (result as { errors: string[] }).errors;
}

describe("security configuration is checked at start-up, one line per problem", () => {
  let dir: string;
  let pki: TestPki;
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "pkgfarm-secconf-"));
    pki = createTestPki(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("without any of it, everything is off", () => {
    const config = loadDepGraphConfig([], {});
    assert.ok(!("errors" in config));
    assert.deepEqual({ tls: config.tls, healthPort: config.healthPort, operatorToken: config.operatorToken, grace: config.shutdownGraceMs },
      { tls: undefined, healthPort: undefined, operatorToken: "", grace: 20_000 });
  });

  test("TLS files are read and checked: certificate and key together and matching, a CA bundle with certificates", () => {
    const ok = loadDepGraphConfig(["--tls-cert", pki.server.certPath, "--tls-key", pki.server.keyPath, "--tls-client-ca", pki.caPath, "--health-port", "8081"], {});
    assert.ok(!("errors" in ok));
    assert.deepEqual(ok.tls, { cert: pki.server.cert, key: pki.server.key, clientCa: pki.ca });
    assert.equal(ok.healthPort, 8081);

    assert.match(errorsOf(loadDepGraphConfig(["--tls-cert", pki.server.certPath], {})).join("\n"), /go together/);
    assert.match(errorsOf(loadDepGraphConfig(["--tls-cert", pki.server.certPath, "--tls-key", pki.client.keyPath], {})).join("\n"), /key values mismatch/);
    assert.match(errorsOf(loadDepGraphConfig(["--tls-cert", join(dir, "absent.pem"), "--tls-key", pki.server.keyPath], {})).join("\n"), /cannot read .*absent\.pem: ENOENT/);
    assert.match(errorsOf(loadDepGraphConfig(["--tls-client-ca", pki.caPath], {})).join("\n"), /needs --tls-cert/);
    const garbage = file("garbage.pem", "not a certificate\n");
    assert.match(errorsOf(loadDepGraphConfig(["--tls-cert", pki.server.certPath, "--tls-key", pki.server.keyPath, "--tls-client-ca", garbage], {})).join("\n"),
      /--tls-client-ca .*no PEM certificate/);
  });

  test("tokens come from the variable or its _FILE, not both, and are long enough", () => {
    const fromFile = loadDepGraphConfig([], { PKGFARM_OPERATOR_TOKEN_FILE: file("operator", `${TOKEN}\n`) });
    assert.ok(!("errors" in fromFile));
    assert.equal(fromFile.operatorToken, TOKEN);
    assert.match(errorsOf(loadDepGraphConfig([], { PKGFARM_OPERATOR_TOKEN: "short" })).join("\n"), /at least 16 characters/);
    assert.match(errorsOf(loadDepGraphConfig([], { PKGFARM_OPERATOR_TOKEN: TOKEN, PKGFARM_OPERATOR_TOKEN_FILE: file("o2", TOKEN) })).join("\n"), /not both/);
    assert.match(errorsOf(loadDepGraphConfig([], { PKGFARM_OPERATOR_TOKEN_FILE: join(dir, "missing") })).join("\n"), /cannot read .*missing: ENOENT/);
    // Never a flag: command lines are visible to every user of the host.
    assert.match(errorsOf(loadDepGraphConfig(["--operator-token", TOKEN], {})).join("\n"), /Unknown option '--operator-token'/);
    const agent = loadAgentConfig(["--build-command", "true"], { PKGFARM_AGENT_TOKEN_FILE: file("agent", TOKEN) });
    assert.ok(!("errors" in agent));
    assert.equal(agent.token, TOKEN);
  });

  test("PKGFARM_AGENT_TOKENS_FILE: one `agent-name token` per line, each name and token once", () => {
    const good = loadDispatcherConfig([], { PKGFARM_AGENT_TOKENS_FILE: file("tokens", `# build hosts\nnetbsd-1 ${TOKEN}1\n\nmacos-1   ${TOKEN}2\n`) });
    assert.ok(!("errors" in good));
    assert.deepEqual([...good.agentTokens!], [["netbsd-1", `${TOKEN}1`], ["macos-1", `${TOKEN}2`]]);
    const bad = errorsOf(loadDispatcherConfig([], {
      PKGFARM_AGENT_TOKENS_FILE: file("bad-tokens", `a ${TOKEN}1\na ${TOKEN}2\nb ${TOKEN}1\nc short\nd\n`),
    }));
    assert.equal(bad.length, 4, bad.join("\n"));
    assert.match(bad[0]!, /line 2: agent a has a token already/);
    assert.match(bad[1]!, /line 3: the token for b is also another agent's/);
    assert.match(bad[2]!, /line 4: the token for c must be at least 16/);
    assert.match(bad[3]!, /line 5: expected "agent-name token", got 1 field/);
  });

  test("client TLS settings need an https:// URL; every bad value is reported at once", () => {
    assert.match(errorsOf(loadDispatcherConfig(["--tls-ca", pki.caPath], {})).join("\n"), /need an https:\/\/ URL in --depgraph/);
    const ok = loadAgentConfig(["--build-command", "true", "--dispatcher", "https://dispatcher:7402", "--tls-ca", pki.caPath,
      "--tls-client-cert", pki.client.certPath, "--tls-client-key", pki.client.keyPath], {});
    assert.ok(!("errors" in ok));
    assert.deepEqual(ok.tls, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key });
    const many = errorsOf(loadDispatcherConfig(["--max-agents", "0", "--health-port", "http", "--shutdown-grace-seconds", "0", "--tls-key", pki.server.keyPath],
      { PKGFARM_AGENT_TOKEN: "short" }));
    assert.equal(many.length, 5, many.join("\n"));
  });
});
