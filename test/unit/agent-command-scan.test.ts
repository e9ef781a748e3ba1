// Scans through a scan command (the example tree's scan-one.mjs and small
// shell stand-ins for misbehaving commands), with the pkgsrc scan's contract.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { enumerateLocations, scanLocations, type ScanCommandHost } from "../../services/builder-agent/command-scan.js";

const repo = resolve(fileURLToPath(import.meta.url), "../../../..");
const TREE = join(repo, "examples", "tree");
const SCAN_ONE = [process.execPath, join(repo, "examples", "bin", "scan-one.mjs")];
const host: ScanCommandHost = { command: SCAN_ONE, treeDir: TREE, timeoutMs: 30_000, concurrency: 2 };

function treeLocations(): string[] {
  const out: string[] = [];
  for (const category of readdirSync(TREE)) {
    if (!statSync(join(TREE, category)).isDirectory()) continue;
    for (const dir of readdirSync(join(TREE, category))) {
      try {
        if (statSync(join(TREE, category, dir, "Makefile")).isFile()) out.push(`${category}/${dir}`);
      } catch {
        // not a package
      }
    }
  }
  return out.sort();
}

const sh = (script: string): ScanCommandHost => ({ command: ["/bin/sh", "-c", script, "scan"], treeDir: TREE, env: { PATH: "/usr/bin:/bin" }, timeoutMs: 30_000 });

describe("scans through a scan command", () => {
  test("each location's records are what the command prints for it, MULTI_VERSION variants included", async () => {
    const locations = ["archivers/bzip2", "devel/py-setuptools", "archivers/bzip2"];
    const scans = await scanLocations(host, locations);
    assert.deepEqual(scans.map((s) => s.location), ["archivers/bzip2", "devel/py-setuptools"]);
    for (const scan of scans) {
      assert.equal(scan.error, "");
      const direct = execFileSync(SCAN_ONE[0]!, [SCAN_ONE[1]!, "--tree", TREE, scan.location], { encoding: "utf8" });
      assert.equal(scan.pbulkIndex, direct);
    }
    assert.ok((scans[1]!.pbulkIndex.match(/^MULTI_VERSION=/gm) ?? []).length >= 2, "one record per variant");
  });

  test("enumeration through --all lists every package of the tree", async () => {
    const locations = await enumerateLocations(host);
    assert.deepEqual([...locations].sort(), treeLocations());
  });

  test("an unknown location fails with the command's stderr; a malformed one is not run", async () => {
    const [unknown, bad] = await scanLocations(host, ["nosuch/package", "../x"]);
    assert.match(unknown!.error, /exited with status 1: scan-one: nosuch\/package: .*has no package at nosuch\/package/);
    assert.match(bad!.error, /invalid location/);
  });

  test("PKG_LOCATION is added when the command prints none, and a record for another location is refused", async () => {
    const [plain] = await scanLocations(sh('printf "PKGNAME=a-1.0\\nALL_DEPENDS=\\n"'), ["cat/a"]);
    assert.equal(plain!.pbulkIndex, "PKGNAME=a-1.0\nPKG_LOCATION=cat/a\nALL_DEPENDS=\n");
    const [liar] = await scanLocations(sh('printf "PKGNAME=a-1.0\\nPKG_LOCATION=other/place\\n"'), ["cat/a"]);
    assert.match(liar!.error, /printed records for other\/place/);
    // The location arrives as an argument and as PKGFARM_LOCATION, never as shell text.
    const [echo] = await scanLocations(sh('printf "PKGNAME=x-1\\nCOMMENT=%s %s %s\\n" "$1" "$PKGFARM_LOCATION" "$PKGFARM_TREE"'), ["cat/a"]);
    assert.match(echo!.pbulkIndex, new RegExp(`COMMENT=cat/a cat/a ${TREE}\n`));
  });

  test("a command past its timeout is killed and its location fails", async () => {
    const [slow] = await scanLocations({ ...sh("sleep 30"), timeoutMs: 200 }, ["cat/a"]);
    assert.match(slow!.error, /timed out after 0\.2 s/);
    assert.ok(slow!.durationMs < 5000);
  });

  test("enumeration keeps the packages --all could not scan (named on its stderr), and fails when nothing was printed", async () => {
    const partial = sh('[ "$1" = --all ] || exit 2; printf "PKGNAME=a-1\\nPKG_LOCATION=cat/a\\n"; echo "scan: cat/broken: bad Makefile" >&2; exit 1');
    assert.deepEqual(await enumerateLocations(partial), ["cat/a", "cat/broken"]);
    await assert.rejects(enumerateLocations(sh("echo nothing here >&2; exit 3")), /exited with status 3: nothing here/);
  });

  test("an aborted scan rejects with the signal's reason", async () => {
    const controller = new AbortController();
    const pending = scanLocations(sh("sleep 30"), ["cat/a", "cat/b"], controller.signal);
    setTimeout(() => controller.abort(new Error("stop")), 50);
    await assert.rejects(pending, /stop/);
  });
});
