import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { imageConfig, readDockerStages } from "../support/dockerfile.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const stages = readDockerStages(join(ROOT, "Dockerfile"));
const runtime = stages.at(-1)!;

test("the runtime image runs as a numeric non-root user, so Kubernetes' runAsNonRoot can verify it", () => {
  const { user } = imageConfig(stages);
  assert.match(user, /^\d+(:\d+)?$/, `USER ${user} must be numeric`);
  assert.notEqual(Number(user.split(":")[0]), 0);
});

test("the runtime image has production dependencies only and no package manager", () => {
  const runs = runtime.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args).join("\n");
  assert.doesNotMatch(runs, /npm (ci|install)/, "nothing is installed in the runtime stage itself");
  const nodeModules = runtime.instructions.filter((i) => i.keyword === "COPY" && /node_modules/.test(i.args));
  assert.equal(nodeModules.length, 1);
  const from = /--from=(\S+)/.exec(nodeModules[0]!.args)![1];
  const deps = stages.find((s) => s.name === from)!;
  assert.ok(deps.instructions.some((i) => i.keyword === "RUN" && /npm ci\b.*--omit=dev/.test(i.args)), `stage ${from} installs with --omit=dev`);
  assert.match(runs, /rm -rf [^\n]*\/usr\/local\/bin\/npm\b/, "npm is removed");
});

test("the image's entry point is the pkgfarm CLI that npm run build produces", () => {
  const { entrypoint, workdir } = imageConfig(stages);
  assert.deepEqual(entrypoint.slice(0, 1), ["node"]);
  assert.equal(workdir, "/app");
  assert.ok(existsSync(join(ROOT, entrypoint[1]!)), `${entrypoint[1]} exists after npm run build`);
  const copied = runtime.instructions.filter((i) => i.keyword === "COPY").map((i) => i.args.split(/\s+/).at(-1));
  assert.ok(copied.includes("dist/services"), "the services are in the image");
  assert.ok(copied.includes("services/web/static"), "the web status page is in the image, where STATIC_DIR looks for it");
});
