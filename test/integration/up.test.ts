import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, test } from "node:test";
import { UP_FLAGS } from "../../services/cli/up-config.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
const dataDir = mkdtempSync(join(tmpdir(), "pkgfarm-up-"));
after(() => rmSync(dataDir, { recursive: true, force: true }));

const up = (...args: string[]) => promisify(execFile)(process.execPath, [CLI, "up", "--data-dir", dataDir, "--platform", "Up-1.0-x86_64", ...args], { timeout: 60_000 });

test("pkgfarm up bulk-builds the example tree and reports failures by what they block; --incremental builds nothing new", async () => {
  const full = await up();
  assert.match(full.stdout, /\[\d+\/37\]/, "progress lines");
  assert.match(full.stdout, /29 succeeded, 1 failed, 1 prefailed, 4 indirect-failed, 2 cycle/);
  // bison blocks two packages, more than any other failure: it comes first.
  assert.match(full.stdout, /failures, most-blocking first:\n  bison-3\.8\.2 \(devel\/bison\): failed: exited with status 1\n    blocks 2: ruby33-3\.3\.6, ruby33-rake-13\.2\.1\n    log: .*bison-3\.8\.2\.log/);
  assert.equal(readdirSync(join(dataDir, "packages", "Up-1.0-x86_64", "All")).filter((f) => f.endsWith(".tgz")).length, 29);

  const incremental = await up("--incremental");
  assert.match(incremental.stdout, /1 failed, 1 prefailed, 4 indirect-failed, 2 cycle, 29 up-to-date/);
  assert.doesNotMatch(incremental.stdout, /succeeded/);

  await assert.rejects(up("--strict", "--incremental"), (e: { code: number }) => e.code === 1);
  await assert.rejects(up("--agents", "0"), (e: { code: number; stderr: string }) => e.code === 2 && /--agents/.test(e.stderr));
});

test("pkgfarm up --help lists every flag and exits 0", async () => {
  const { stdout } = await up("--help");
  assert.match(stdout, /^usage: pkgfarm up/);
  for (const [flag] of UP_FLAGS) assert.ok(stdout.includes(flag), `--help lists ${flag}`);
  for (const flag of ["--tree", "--executor", "--bootstrap-kit", "--limit", "--agents", "--slots", "--sandbox-root", "--mk-conf", "--incremental", "--data-dir"]) {
    assert.match(stdout, new RegExp(`^  ${flag}\\b`, "m"), `${flag} has its own line`);
  }
});

test("pkgfarm up refuses bad flag values with one clear line each and exit 2, before starting anything", async () => {
  const refused = async (args: string[], ...lines: RegExp[]) => {
    const run = await up(...args).then(() => undefined, (e: { code: number; stdout: string; stderr: string }) => e);
    assert.ok(run !== undefined, `${args.join(" ")} was accepted`);
    assert.equal(run.code, 2, `${args.join(" ")}: exit code`);
    assert.equal(run.stdout, "", `${args.join(" ")}: nothing started`);
    const got = run.stderr.trim().split("\n");
    assert.equal(got.length, lines.length, `${args.join(" ")}: one line per problem:\n${run.stderr}`);
    lines.forEach((line, i) => assert.match(got[i]!, line));
    for (const l of got) assert.match(l, /^pkgfarm up: /);
  };
  const missing = join(dataDir, "no-such-file");
  await refused(["--executor", "make"], /--executor \(PKGFARM_EXECUTOR\) must be one of command, pkgsrc, not "make"/);
  await refused(["--executor", "pkgsrc"], /--tree \(PKGFARM_TREE\) is required with --executor pkgsrc/, /--bootstrap-kit \(PKGFARM_BOOTSTRAP_KIT\) is required with --executor pkgsrc/);
  await refused(["--executor", "pkgsrc", "--tree", join(ROOT, "examples", "tree"), "--bootstrap-kit", missing],
    /--tree \(PKGFARM_TREE\) must be a pkgsrc tree with --executor pkgsrc: .* has no mk\/bsd\.pkg\.mk/, /--bootstrap-kit \(PKGFARM_BOOTSTRAP_KIT\): .*no-such-file is not a file/);
  await refused(["--limit", missing], /--limit \(PKGFARM_LIMIT\): cannot read .*no-such-file: ENOENT/);
  const empty = join(dataDir, "empty-list.txt");
  writeFileSync(empty, "# nothing\n\n");
  await refused(["--limit", empty], /--limit \(PKGFARM_LIMIT\): .*empty-list\.txt names no location/);
  await refused(["--slots", "two"], /--slots \(PKGFARM_SLOTS\) must be a whole number from 1 to 64, not "two"/);
  await refused(["--agents", "65"], /--agents \(PKGFARM_AGENTS\) must be a whole number from 1 to 64, not "65"/);
  await refused(["--mk-conf", missing], /--mk-conf \(PKGFARM_MK_CONF\) needs --executor pkgsrc/);
  await refused(["--tree", missing], /--tree \(PKGFARM_TREE\): .*no-such-file is not a directory/);
  await refused(["--bogus"], /Unknown option '--bogus'/);
});
