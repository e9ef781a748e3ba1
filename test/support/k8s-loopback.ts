import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import type { K8sObject } from "../../deploy/tools/render.js";
import type { ImageConfig } from "./dockerfile.js";

/**
 * Runs the pods of rendered manifests as processes on loopback, the way the
 * kubelet would run them, with only these substitutions:
 *
 * - every containerPort gets a free loopback port, and a Service name with a
 *   port (`http://depgraph:7401`, `nats://nats:4222`) becomes 127.0.0.1 and the
 *   port of the pod the Service selects; `0.0.0.0` becomes 127.0.0.1;
 * - every volume mount and the image's working directory become local
 *   directories; any other absolute container path is an error;
 * - the image's own environment (the Dockerfile's ENV) is applied, and PATH is
 *   the host's, with node and nats-server first.
 *
 * Command, arguments, env, envFrom, $(VAR) references, fieldRefs, ConfigMap
 * and Secret references are taken from the objects as they are.
 */

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: any }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string }[];
  readinessProbe?: any;
}

/** A container made ready to run on loopback. */
export interface LoopbackContainer {
  readonly pod: string;
  readonly name: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  /** containerPort (number, and name when it has one) → loopback port. */
  readonly ports: ReadonlyMap<number | string, number>;
  /** Container mount path → local directory. */
  readonly mounts: ReadonlyMap<string, string>;
  readonly readinessProbe: any;
}

export interface LoopbackOptions {
  readonly image: ImageConfig;
  /** What the image's WORKDIR holds: the project root, with dist/ and examples/. */
  readonly workdir: string;
  /** Where volumes are made. */
  readonly scratch: string;
  /** Secret name → key → value: test values, since the manifests only refer to Secrets. */
  readonly secrets: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** Directories put first on PATH (where node and nats-server are). */
  readonly path: readonly string[];
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const byName = (objects: readonly K8sObject[], kind: string, name: string): any => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`the manifests refer to ${kind} ${name}, which they do not define`);
  return o;
};

/** Pods of a workload, named as the kubelet would (StatefulSet: name-0; Deployment: a stand-in for the hash). */
function podNames(workload: any): string[] {
  const n = workload.spec.replicas ?? 1;
  return Array.from({ length: n }, (_, i) => (workload.kind === "StatefulSet" ? `${workload.metadata.name}-${i}` : `${workload.metadata.name}-loopback-${i}`));
}

/** planLoopbackPods turns every Deployment and StatefulSet into containers to run, ports and directories assigned. */
export async function planLoopbackPods(objects: readonly K8sObject[], options: LoopbackOptions): Promise<Map<string, LoopbackContainer[]>> {
  const workloads = objects.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet") as any[];
  // First every pod's ports, so that any container can resolve any Service.
  const pods: { workload: any; pod: string; labels: Record<string, string>; containers: Container[]; ports: Map<number | string, number>[] }[] = [];
  for (const workload of workloads) {
    for (const pod of podNames(workload)) {
      const containers: Container[] = workload.spec.template.spec.containers;
      const ports = [];
      for (const c of containers) {
        const map = new Map<number | string, number>();
        for (const p of c.ports ?? []) {
          const local = await freePort();
          map.set(p.containerPort, local);
          if (p.name !== undefined) map.set(p.name, local);
        }
        ports.push(map);
      }
      pods.push({ workload, pod, labels: workload.spec.template.metadata.labels ?? {}, containers, ports });
    }
  }

  /** The loopback port behind Service `name` port `port`: its targetPort on the first pod it selects. */
  const servicePort = (name: string, port: number): number | undefined => {
    const service = objects.find((o) => o.kind === "Service" && o.metadata.name === name) as any;
    if (service === undefined) return undefined;
    const entry = service.spec.ports.find((p: any) => p.port === port);
    if (entry === undefined) throw new Error(`Service ${name} has no port ${port}`);
    const selected = pods.find((p) => Object.entries(service.spec.selector).every(([k, v]) => p.labels[k] === v));
    if (selected === undefined) throw new Error(`Service ${name} selects no pod`);
    const target = entry.targetPort ?? port;
    for (const map of selected.ports) if (map.has(target)) return map.get(target);
    throw new Error(`Service ${name} port ${port} targets ${target}, which pod ${selected.pod} does not declare`);
  };

  const plan = new Map<string, LoopbackContainer[]>();
  for (const { workload, pod, containers, ports } of pods) {
    const podSpec = workload.spec.template.spec;
    const claimTemplates = new Set((workload.spec.volumeClaimTemplates ?? []).map((t: any) => t.metadata.name));
    const planned: LoopbackContainer[] = [];
    containers.forEach((c, i) => {
      const mounts = new Map<string, string>();
      for (const m of c.volumeMounts ?? []) {
        const volume = podSpec.volumes?.find((v: any) => v.name === m.name);
        // A claim outlives the pod and is shared by name; emptyDir and claim templates are the pod's own.
        const dir = volume?.persistentVolumeClaim !== undefined
          ? join(options.scratch, "pvc", volume.persistentVolumeClaim.claimName)
          : volume !== undefined || claimTemplates.has(m.name) ? join(options.scratch, pod, m.name) : undefined;
        if (dir === undefined) throw new Error(`${pod}/${c.name} mounts volume ${m.name}, which the pod does not define`);
        mkdirSync(dir, { recursive: true });
        mounts.set(m.mountPath, dir);
      }
      const paths = new Map<string, string>([...mounts, [options.image.workdir, options.workdir]]);
      const prefixes = [...paths.keys()].sort((a, b) => b.length - a.length);
      const localPath = (p: string): string => {
        const prefix = prefixes.find((x) => p === x || p.startsWith(`${x}/`));
        if (prefix === undefined) throw new Error(`${pod}/${c.name}: container path ${p} is neither in the image's working directory nor on a volume`);
        return paths.get(prefix)! + p.slice(prefix.length);
      };
      const toLoopback = (value: string): string => {
        let v = value.replace(/\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[-a-z0-9.]+)?:(\d+)\b/g, (whole, host: string, _a, _b, port: string) => {
          const local = servicePort(host, Number(port));
          return local === undefined ? whole : `127.0.0.1:${local}`;
        });
        v = v.replace(/\b0\.0\.0\.0\b/g, "127.0.0.1");
        v = v.replace(/^(--[\w-]+=)?(\d+)$/, (whole, flag: string | undefined, n: string) => (ports[i]!.has(Number(n)) ? `${flag ?? ""}${ports[i]!.get(Number(n))}` : whole));
        return v.replace(/(?<![\w:/.-])\/[\w.\/-]+/g, (p) => localPath(p));
      };

      const env: Record<string, string> = { ...options.image.env, PATH: [...options.path, process.env.PATH ?? "/usr/bin:/bin"].join(":") };
      const expand = (s: string) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
      for (const from of c.envFrom ?? []) {
        const data = from.configMapRef !== undefined ? byName(objects, "ConfigMap", from.configMapRef.name).data : options.secrets[from.secretRef!.name];
        if (data === undefined) throw new Error(`${pod}/${c.name}: no test values for Secret ${from.secretRef!.name}`);
        for (const [k, v] of Object.entries(data as Record<string, string>)) env[k] = toLoopback(v);
      }
      for (const e of c.env ?? []) {
        let value: string;
        if (e.value !== undefined) value = expand(e.value);
        else if (e.valueFrom?.configMapKeyRef) value = byName(objects, "ConfigMap", e.valueFrom.configMapKeyRef.name).data[e.valueFrom.configMapKeyRef.key];
        else if (e.valueFrom?.secretKeyRef) value = options.secrets[e.valueFrom.secretKeyRef.name]?.[e.valueFrom.secretKeyRef.key]!;
        else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.name") value = pod;
        else throw new Error(`${pod}/${c.name}: env ${e.name} has a source this test does not resolve`);
        if (value === undefined) throw new Error(`${pod}/${c.name}: env ${e.name} refers to a value that does not exist`);
        env[e.name] = toLoopback(value);
      }
      const argv = [...(c.command ?? options.image.entrypoint), ...(c.args ?? [])].map((a) => toLoopback(expand(a)));
      planned.push({ pod, name: c.name, argv, env, cwd: options.workdir, ports: ports[i]!, mounts, readinessProbe: c.readinessProbe });
    });
    plan.set(pod, planned);
  }
  return plan;
}

/** A started container: its process and the tail of what it printed. */
export interface RunningContainer {
  readonly container: LoopbackContainer;
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM, as the kubelet sends; resolves when the process has exited. */
  stop(): Promise<void>;
}

export function startContainer(container: LoopbackContainer): RunningContainer {
  const [program, ...args] = container.argv;
  const child = spawn(program!, args, { cwd: container.cwd, env: { ...container.env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk: Buffer) => (output = (output + chunk.toString("utf8")).slice(-16_384));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("error", (e) => keep(Buffer.from(`spawn failed: ${e.message}\n`)));
  return {
    container,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const hard = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(hard);
    },
  };
}

/** probeOnce runs a readiness probe as the kubelet does: httpGet wants 2xx/3xx, grpc wants SERVING. */
async function probeOnce(probe: any, ports: ReadonlyMap<number | string, number>): Promise<boolean> {
  try {
    if (probe.httpGet !== undefined) {
      const response = await fetch(`http://127.0.0.1:${ports.get(probe.httpGet.port)}${probe.httpGet.path ?? "/"}`, { signal: AbortSignal.timeout(1000) });
      return response.status >= 200 && response.status < 400;
    }
    if (probe.grpc !== undefined) {
      const port = ports.get(probe.grpc.port);
      if (port === undefined) throw new Error(`the gRPC probe's port ${probe.grpc.port} is not a port of the container`);
      const health = createClient(Health, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
      const { status } = await health.check({ service: probe.grpc.service ?? "" }, { timeoutMs: 1000 });
      return status === HealthCheckResponse_ServingStatus.SERVING;
    }
  } catch (e) {
    if (/not a port of the container/.test((e as Error).message)) throw e;
    return false;
  }
  throw new Error(`unsupported probe ${JSON.stringify(probe)}`);
}

/** waitReady probes until the container is ready; fails early, with its output, if it exits. */
export async function waitReady(running: RunningContainer, timeoutMs = 20_000): Promise<void> {
  const { container, child } = running;
  if (container.readinessProbe === undefined) return;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${container.pod}/${container.name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${running.output()}`);
    }
    if (await probeOnce(container.readinessProbe, container.ports)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${container.pod}/${container.name} was not ready within ${timeoutMs} ms:\n${running.output()}`);
}
