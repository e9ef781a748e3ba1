import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BuildMode, BuildState, DepGraphService, ImportMode } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { renderKustomization, type K8sObject } from "../../deploy/tools/render.js";
import { imageConfig, readDockerStages } from "../support/dockerfile.js";
import { planLoopbackPods, startContainer, waitReady, type RunningContainer } from "../support/k8s-loopback.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "pkgfarm-k8s-pods-"));
const running: RunningContainer[] = [];
after(async () => {
  for (const r of running.reverse()) await r.stop();
  rmSync(scratch, { recursive: true, force: true });
});

// Test values for the Secret the manifests refer to (README "Deploying" creates the real one).
const SECRETS = { "pkgfarm-tokens": { "operator-token": "operator-test-token", "agent-token": "agent-test-token" } };
const NATS_SERVER = existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server";

const configValue = (objects: readonly K8sObject[], configMap: string, key: string): string =>
  ((objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === configMap) as any).data as Record<string, string>)[key]!;

test("the base's pods, run on loopback exactly as the manifests say, bulk-build the example tree", { timeout: 240_000 }, async () => {
  const objects = await renderKustomization(join(ROOT, "deploy", "k8s", "base"));
  const plan = await planLoopbackPods(objects, {
    image: imageConfig(readDockerStages(join(ROOT, "Dockerfile"))),
    workdir: ROOT,
    scratch,
    secrets: SECRETS,
    path: [dirname(process.execPath), dirname(NATS_SERVER)],
  });
  // The order the cluster settles into: each waits for what it needs to be ready (its readiness probe).
  for (const pod of ["nats-0", "depgraph-loopback-0", "dispatcher-loopback-0", "builder-agent-loopback-0", "builder-agent-loopback-1"]) {
    const containers = plan.get(pod);
    assert.ok(containers !== undefined, `the manifests define pod ${pod}`);
    for (const c of containers) {
      const r = startContainer(c);
      running.push(r);
      await waitReady(r);
    }
  }
  assert.equal(plan.size, 5, `exactly these pods: ${[...plan.keys()].join(", ")}`);

  const depgraphPod = plan.get("depgraph-loopback-0")![0]!;
  const depgraph = createClient(DepGraphService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${depgraphPod.ports.get("grpc")}` }));
  const operator = { headers: { authorization: `Bearer ${SECRETS["pkgfarm-tokens"]["operator-token"]}` } };

  // Scan the tree with the scan helper and tree the depgraph manifest configures, in its
  // container's environment (as `kubectl exec deploy/depgraph` would), and import the records.
  const helper = JSON.parse(depgraphPod.env.PKGFARM_SCAN_HELPER!) as string[];
  const scan = await promisify(execFile)(helper[0]!, [...helper.slice(1), "--all"], { cwd: depgraphPod.env.PKGFARM_TREE, env: depgraphPod.env, maxBuffer: 64 * 1024 * 1024 });
  const imported = await depgraph.importScan((async function* () {
    yield { pbulkIndex: scan.stdout, mode: ImportMode.REPLACE_TREE };
  })(), operator);
  assert.equal(imported.recordsImported, 37, JSON.stringify(imported.problems));

  const platform = configValue(objects, "pkgfarm-agent", "PKGFARM_PLATFORM");
  const { build } = await depgraph.createBuild({ platform, mode: BuildMode.FULL }, operator);
  let finished = build!;
  const deadline = Date.now() + 180_000;
  while (finished.state === BuildState.RUNNING && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    finished = (await depgraph.getBuild({ buildId: build!.id })).build!;
  }
  assert.equal(finished.state, BuildState.FINISHED, `build ${BuildState[finished.state]}: ${JSON.stringify(finished.jobCounts)}\n${running.map((r) => `--- ${r.container.pod}\n${r.output().slice(-2000)}`).join("\n")}`);
  // What `npm start` reports for the example tree (examples/README.md).
  assert.deepEqual(
    Object.fromEntries(Object.entries(finished.jobCounts).filter(([, n]) => n > 0)),
    { JOB_STATE_SUCCEEDED: 29, JOB_STATE_FAILED: 1, JOB_STATE_PREFAILED: 1, JOB_STATE_INDIRECT_FAILED: 4, JOB_STATE_CYCLE: 2 },
  );
  // The packages are on the dispatcher's volume, where PKGFARM_DATA_DIR points.
  const dispatcherPod = plan.get("dispatcher-loopback-0")![0]!;
  const dataDir = dispatcherPod.mounts.get("/var/lib/pkgfarm")!;
  assert.equal(readdirSync(join(dataDir, "packages", platform, "All")).filter((f) => f.endsWith(".tgz")).length, 29);
  // Prometheus finds each service's metrics where the pod's scrape annotations say.
  for (const workload of objects.filter((o) => o.kind === "Deployment" && (o as any).spec.template.metadata.annotations?.["prometheus.io/scrape"] === "true") as any[]) {
    const annotations = workload.spec.template.metadata.annotations;
    const container = plan.get(`${workload.metadata.name}-loopback-0`)![0]!;
    const response = await fetch(`http://127.0.0.1:${container.ports.get(Number(annotations["prometheus.io/port"]))}${annotations["prometheus.io/path"]}`);
    assert.equal(response.status, 200, workload.metadata.name);
    assert.match(await response.text(), /^pkgfarm_rpc_duration_seconds_count\{/m, workload.metadata.name);
  }
  // Both agents took work.
  const agentIds = new Set<string>();
  for (const pod of ["builder-agent-loopback-0", "builder-agent-loopback-1"]) {
    if (/job (assigned|started)|"jobId"/.test(running.find((r) => r.container.pod === pod)!.output())) agentIds.add(pod);
  }
  assert.equal(agentIds.size, 2, "both agents built packages");
});
