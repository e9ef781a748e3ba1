import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, test } from "node:test";

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
