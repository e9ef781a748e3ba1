#!/usr/bin/env node
import { objectName, renderKustomization } from "./render.js";
import { validateObjects } from "./validate.js";

/**
 * `npm run validate:k8s [DIR ...]`: renders each kustomization (deploy/k8s/base
 * and every overlay by default) with no cluster, and validates the objects
 * against the Kubernetes schemas with unknown fields rejected. Exit 1 on any problem.
 */
const DEFAULT_DIRS = ["deploy/k8s/base", "deploy/k8s/overlays/external-tls"];

async function main(dirs: readonly string[]): Promise<number> {
  let failed = false;
  for (const dir of dirs) {
    const objects = await renderKustomization(dir);
    const problems = await validateObjects(objects);
    if (problems.length === 0) {
      process.stdout.write(`${dir}: ${objects.length} objects valid (${objects.map(objectName).join(", ")})\n`);
      continue;
    }
    failed = true;
    for (const p of problems) process.stdout.write(`${dir}: ${p}\n`);
  }
  return failed ? 1 : 0;
}

main(process.argv.length > 2 ? process.argv.slice(2) : DEFAULT_DIRS).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`validate-k8s: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
