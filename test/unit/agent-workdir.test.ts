import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { InvalidJobName, prepareJobWorkdir, removeJobWorkdir } from "../../services/builder-agent/workdir.js";

const tmp = mkdtempSync(join(tmpdir(), "pkgfarm-workdir-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("prepareJobWorkdir creates <root>/<buildId>/<pkgname> with depends/ and out/", async () => {
  const root = join(tmp, "fresh", "root");
  const w = await prepareJobWorkdir(root, "b-1", "perl-5.38.2");
  assert.equal(w.dir, join(root, "b-1", "perl-5.38.2"));
  assert.equal(w.dependsDir, join(w.dir, "depends"));
  assert.equal(w.outputPath, join(w.dir, "out", "perl-5.38.2.tgz"));
  assert.ok(statSync(w.dependsDir).isDirectory());
  assert.ok(statSync(join(w.dir, "out")).isDirectory());
  assert.equal(existsSync(w.outputPath), false);
  assert.deepEqual(readdirSync(w.dir).sort(), ["depends", "out"]);
});

test("prepareJobWorkdir starts clean: what an earlier attempt left is removed", async () => {
  const root = join(tmp, "again");
  const first = await prepareJobWorkdir(root, "b-1", "zlib-1.3");
  writeFileSync(join(first.dependsDir, "stale.tgz"), "old");
  writeFileSync(first.outputPath, "half a package");
  mkdirSync(join(first.dir, "work", "deep"), { recursive: true });
  const second = await prepareJobWorkdir(root, "b-1", "zlib-1.3");
  assert.equal(second.dir, first.dir);
  assert.deepEqual(readdirSync(second.dir).sort(), ["depends", "out"]);
  assert.deepEqual(readdirSync(second.dependsDir), []);
  assert.deepEqual(readdirSync(join(second.dir, "out")), []);
});

test("unsafe buildId and pkgname are refused before anything is touched", async () => {
  const root = join(tmp, "refused");
  const bad = ["", ".", "..", "a/b", "../x", "a\\b", "a\0b", ".hidden", "-rf", "/abs"];
  for (const value of bad) {
    for (const [buildId, pkgname, what] of [
      [value, "ok-1.0", "buildId"],
      ["b-1", value, "pkgname"],
    ] as const) {
      await assert.rejects(prepareJobWorkdir(root, buildId, pkgname), (error: unknown) => {
        assert.ok(error instanceof InvalidJobName, `${JSON.stringify(value)} refused with InvalidJobName`);
        assert.equal(error.name, "InvalidJobName");
        assert.equal(error.what, what);
        assert.equal(error.value, value);
        assert.ok(error.message.includes(JSON.stringify(value)), `message names the value: ${error.message}`);
        return true;
      });
      await assert.rejects(removeJobWorkdir(root, buildId, pkgname), InvalidJobName);
    }
  }
  assert.equal(existsSync(root), false);
});

test("names that only look odd are accepted", async () => {
  const root = join(tmp, "odd");
  const w = await prepareJobWorkdir(root, "2024-06-01T12:00:00Z", "gtk+3-3.24.41nb1");
  assert.ok(statSync(w.dependsDir).isDirectory());
  const dots = await prepareJobWorkdir(root, "b..1", "a..b-1.0");
  assert.equal(dots.dir, join(root, "b..1", "a..b-1.0"));
});

test("removeJobWorkdir removes the job, and the build directory once it is empty", async () => {
  const root = join(tmp, "remove");
  const a = await prepareJobWorkdir(root, "b-1", "a-1.0");
  const b = await prepareJobWorkdir(root, "b-1", "b-1.0");
  writeFileSync(a.outputPath, "package");
  await removeJobWorkdir(root, "b-1", "a-1.0");
  assert.equal(existsSync(a.dir), false);
  assert.ok(existsSync(b.dir), "the other job of the build is kept");
  await removeJobWorkdir(root, "b-1", "b-1.0");
  assert.equal(existsSync(join(root, "b-1")), false);
  assert.ok(existsSync(root), "root itself is kept");
  await removeJobWorkdir(root, "b-1", "b-1.0"); // already gone: not an error
  await removeJobWorkdir(join(tmp, "never-made"), "b-9", "c-1.0");
});
