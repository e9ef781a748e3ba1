import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { test } from "node:test";

const ROOT = new URL("../../../", import.meta.url).pathname;

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path) : [path];
  });
}

test("gen/ is what `buf generate` makes of proto/ (run `npx buf generate` and commit both)", () => {
  const out = mkdtempSync(join(tmpdir(), "pkgfarm-gen-"));
  try {
    // buf runs the local protoc-gen-es plugin, which npm puts in node_modules/.bin.
    const bin = join(ROOT, "node_modules/.bin");
    const env = { ...process.env, PATH: `${bin}:${process.env["PATH"] ?? ""}` };
    execFileSync(join(bin, "buf"), ["generate", "--output", out], { cwd: ROOT, stdio: "pipe", env });
    const fresh = listFiles(join(out, "gen")).map((p) => relative(join(out, "gen"), p)).sort();
    const committed = listFiles(join(ROOT, "gen")).map((p) => relative(join(ROOT, "gen"), p)).sort();
    assert.deepEqual(committed, fresh, "gen/ has other files than buf generate makes");
    for (const file of fresh) {
      assert.equal(readFileSync(join(ROOT, "gen", file), "utf8"), readFileSync(join(out, "gen", file), "utf8"), `gen/${file} is stale`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
