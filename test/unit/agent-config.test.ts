import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { AGENT_FLAGS, agentHelp, loadAgentConfig, wantsHelp, type AgentConfig } from "../../services/builder-agent/config.js";

const dir = mkdtempSync(join(tmpdir(), "pkgfarm-agent-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const tree = join(dir, "pkgsrc");
mkdirSync(join(tree, "mk"), { recursive: true });
writeFileSync(join(tree, "mk", "bsd.pkg.mk"), "");
const kit = join(dir, "kit.tgz");
writeFileSync(kit, "");
const mkConf = join(dir, "frag.conf");
writeFileSync(mkConf, "PKG_FAIL_REASON.digest= test\n\nACCEPTABLE_LICENSES+= x\n");

function ok(argv: string[], env: NodeJS.ProcessEnv = {}): AgentConfig {
  const c = loadAgentConfig(argv, env);
  assert.ok(!("errors" in c), "errors" in c ? c.errors.join("\n") : "");
  return c;
}
function errors(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  const c = loadAgentConfig(argv, env);
  assert.ok("errors" in c, "expected errors");
  return c.errors;
}

test("the pkgsrc executor: tree, kit, a namespace sandbox per slot by default, mk.conf lines, keep-wrkdir", () => {
  const c = ok(["--executor", "pkgsrc", "--tree", tree, "--bootstrap-kit", kit, "--slots", "2", "--mk-conf", mkConf, "--keep-wrkdir", "--sandbox-root", join(dir, "sb")]);
  assert.equal(c.executor, "pkgsrc");
  assert.equal(c.sandbox, process.platform === "linux" ? "namespace" : c.sandbox);
  assert.equal(c.bootstrapKit, kit);
  assert.equal(c.sandboxRoot, join(dir, "sb"));
  assert.deepEqual(c.mkConfLines, ["PKG_FAIL_REASON.digest= test", "ACCEPTABLE_LICENSES+= x"]);
  assert.equal(c.keepWrkdir, true);
  assert.equal(c.buildUser, "pkgfarm");
  assert.equal(c.buildCommand.length, 0);
  const plain = ok(["--build-command", "true"]);
  assert.equal(plain.executor, "command");
  assert.equal(plain.sandbox, "none");
  assert.equal(plain.keepWrkdir, false);
});

test("every bad value is one clear line", () => {
  const e = errors(["--executor", "pbulk"]);
  assert.match(e.join("\n"), /--executor \(PKGFARM_EXECUTOR\) must be one of command, pkgsrc, not "pbulk"/);
  const p = errors(["--executor", "pkgsrc", "--tree", dir, "--sandbox", "jail", "--mk-conf", join(dir, "missing")]);
  assert.equal(p.length, 4, p.join("\n"));
  assert.match(p[0]!, /--tree .* has no mk\/bsd\.pkg\.mk/);
  assert.match(p[1]!, /--bootstrap-kit \(PKGFARM_BOOTSTRAP_KIT\) is required with --executor pkgsrc/);
  assert.match(p[2]!, /--sandbox \(PKGFARM_SANDBOX\) must be one of namespace, chroot, none, not "jail"/);
  assert.match(p[3]!, /--mk-conf \(PKGFARM_MK_CONF\): cannot read .*missing: ENOENT/);
  assert.match(errors(["--executor", "pkgsrc", "--tree", tree, "--bootstrap-kit", kit, "--sandbox", "none", "--slots", "3"]).join("\n"), /--slots \(PKGFARM_SLOTS\) 3 needs a sandbox per slot/);
  assert.match(errors(["--executor", "pkgsrc", "--tree", tree, "--bootstrap-kit", kit, "--sandbox", "chroot", "--slots", "2", "--chroot-dirs", dir]).join("\n"),
    /--chroot-dirs \(PKGFARM_CHROOT_DIRS\) must name one directory per slot: 2 slot\(s\), 1 directory/);
  assert.match(errors(["--build-command", "true", "--chroot-dirs", dir]).join("\n"), /--chroot-dirs \(PKGFARM_CHROOT_DIRS\) needs --sandbox chroot/);
  assert.match(errors(["--executor", "pkgsrc", "--tree", tree, "--bootstrap-kit", join(dir, "nokit.tgz")]).join("\n"), /--bootstrap-kit .*nokit\.tgz is not a file/);
  assert.match(errors(["--build-command", "true", "--scan-timeout-seconds", "0"]).join("\n"), /--scan-timeout-seconds \(PKGFARM_SCAN_TIMEOUT_SECONDS\) must be a whole number from 1/);
  assert.match(errors(["--build-command", "true"], { PKGFARM_KEEP_WRKDIR: "maybe" }).join("\n"), /PKGFARM_KEEP_WRKDIR must be yes or no/);
  assert.match(errors([]).join("\n"), /--build-command \(PKGFARM_BUILD_COMMAND\) is required with --executor command/);
});

test("--help lists every flag the agent reads", () => {
  assert.equal(wantsHelp(["--slots", "2", "--help"]), true);
  const help = agentHelp();
  for (const flag of ["--dispatcher", "--id", "--slots", "--executor", "--tree", "--bootstrap-kit", "--sandbox", "--sandbox-root", "--chroot-dirs", "--mk-conf",
    "--keep-wrkdir", "--build-user", "--build-command", "--scan-command", "--scan-timeout-seconds", "--platform", "--os", "--os-release", "--arch", "--labels",
    "--work-dir", "--cache-dir", "--job-timeout-seconds", "--log-level", "--tls-ca", "--tls-client-cert", "--tls-client-key", "--help"]) {
    assert.ok(help.includes(flag), `--help does not mention ${flag}`);
  }
  assert.ok(AGENT_FLAGS.length > 20);
});
