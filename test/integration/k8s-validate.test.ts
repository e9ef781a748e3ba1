import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, test } from "node:test";
import { parseAllDocuments, stringify } from "yaml";
import { objectName, renderKustomization, type K8sObject } from "../../deploy/tools/render.js";
import { validateObjects } from "../../deploy/tools/validate.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const K8S = join(ROOT, "deploy", "k8s");
const scratch = mkdtempSync(join(tmpdir(), "pkgfarm-k8s-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

const base = await renderKustomization(join(K8S, "base"));
const overlay = await renderKustomization(join(K8S, "overlays", "external-tls"));

test("the base and the external-tls overlay render and validate against the Kubernetes schemas", async () => {
  assert.deepEqual(await validateObjects(base), []);
  assert.deepEqual(await validateObjects(overlay), []);
  const kinds = (objects: K8sObject[]) => objects.map(objectName);
  for (const name of ["StatefulSet/nats", "Deployment/depgraph", "Deployment/dispatcher", "Deployment/builder-agent", "PersistentVolumeClaim/pkgfarm-data"]) {
    assert.ok(kinds(base).includes(name), name);
  }
  assert.ok(kinds(overlay).includes("Service/dispatcher-external"));
});

test("a field the API does not know, or a value of the wrong type, fails validation with its path", async () => {
  const broken = join(scratch, "k8s");
  cpSync(K8S, broken, { recursive: true });
  const file = join(broken, "base", "depgraph.yaml");
  const docs = parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS() as Record<string, any>);
  const deployment = docs.find((d) => d.kind === "Deployment")!;
  deployment.spec.template.spec.containers[0].imagePullPolcy = "Always";
  deployment.spec.replicas = "one";
  writeFileSync(file, docs.map((d) => stringify(d)).join("---\n"));
  for (const dir of [join(broken, "base"), join(broken, "overlays", "external-tls")]) {
    const problems = await validateObjects(await renderKustomization(dir));
    assert.ok(problems.some((p) => /^Deployment\/depgraph at spec\.template\.spec\.containers\[0\]\.imagePullPolcy: .*known properties/.test(p)), problems.join("\n"));
    assert.ok(problems.some((p) => /^Deployment\/depgraph.*replicas must be integer/.test(p)), problems.join("\n"));
    assert.equal(problems.filter((p) => !p.startsWith("Deployment/depgraph")).length, 0, problems.join("\n"));
  }
});

/** The pod templates of every workload, with where they come from. */
function podSpecs(objects: readonly K8sObject[]): [string, any][] {
  return objects.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet").map((o) => [objectName(o), (o as any).spec.template.spec]);
}

test("every pod runs non-root with a read-only root, no capabilities, RuntimeDefault seccomp and resource limits", () => {
  for (const [name, pod] of podSpecs(overlay)) {
    assert.equal(pod.securityContext.runAsNonRoot, true, name);
    assert.ok(Number.isInteger(pod.securityContext.runAsUser) && pod.securityContext.runAsUser > 0, name);
    assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault", name);
    assert.equal(pod.automountServiceAccountToken, false, name);
    for (const c of pod.containers) {
      assert.equal(c.securityContext.allowPrivilegeEscalation, false, name);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true, name);
      assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"], name);
      for (const r of ["cpu", "memory"]) assert.ok(c.resources.requests[r] && c.resources.limits[r], `${name} ${r}`);
      // Builds and their tools write temporary files; nats-server writes only to its store.
      if (c.image.startsWith("pkgfarm")) assert.ok(c.volumeMounts.some((m: any) => m.mountPath === "/tmp"), `${name} has a writable /tmp`);
    }
  }
});

test("gRPC services are probed natively on their plaintext health port and scraped on their metrics port", () => {
  for (const [name, pod] of podSpecs(overlay).filter(([n]) => n === "Deployment/depgraph" || n === "Deployment/dispatcher")) {
    const config = base.find((o) => o.kind === "ConfigMap" && pod.containers[0].envFrom.some((e: any) => e.configMapRef?.name === o.metadata.name)) as any;
    const healthPort = Number(config.data.PKGFARM_HEALTH_PORT);
    const c = pod.containers[0];
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) assert.equal(c[probe].grpc.port, healthPort, `${name} ${probe}`);
    const workload = overlay.find((o) => objectName(o) === name) as any;
    assert.equal(workload.spec.template.metadata.annotations["prometheus.io/port"], config.data.PKGFARM_METRICS_PORT, name);
    assert.ok(c.ports.some((p: any) => p.name === "metrics" && String(p.containerPort) === config.data.PKGFARM_METRICS_PORT), name);
  }
});
