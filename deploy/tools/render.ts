import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";

/** K8sObject is one rendered Kubernetes object, as plain JSON data. */
export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly [key: string]: unknown };
  readonly [key: string]: unknown;
}

/** RenderError says which kustomization failed to render and what kustomize printed. */
export class RenderError extends Error {
  override readonly name = "RenderError";
}

/**
 * kustomizeCommand picks a renderer that needs no cluster: a standalone
 * `kustomize` if one is on PATH, else the one built into kubectl (which is what
 * .ci/run installs when neither is there).
 */
async function kustomizeCommand(): Promise<readonly string[]> {
  try {
    await promisify(execFile)("kustomize", ["version"]);
    return ["kustomize", "build"];
  } catch {
    return ["kubectl", "kustomize"];
  }
}

/** renderKustomization renders one kustomization directory into its objects, in kustomize's order. */
export async function renderKustomization(dir: string): Promise<K8sObject[]> {
  const [program, ...args] = await kustomizeCommand();
  let yamlText: string;
  try {
    yamlText = (await promisify(execFile)(program!, [...args, dir], { maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch (e) {
    const err = e as { code?: unknown; stderr?: string; message: string };
    const why = err.code === "ENOENT" ? `${program} is not installed (see .ci/run)` : (err.stderr ?? "").trim() || err.message;
    throw new RenderError(`cannot render ${dir} with ${program} ${args.join(" ")}: ${why}`, { cause: e });
  }
  return parseManifests(yamlText, dir);
}

/** parseManifests reads a multi-document YAML stream of Kubernetes objects. */
export function parseManifests(yamlText: string, source: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(yamlText)) {
    if (doc.errors.length > 0) throw new RenderError(`${source}: ${doc.errors[0]!.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (typeof value !== "object" || Array.isArray(value)) throw new RenderError(`${source}: a document is not an object`);
    const o = value as Partial<K8sObject>;
    if (typeof o.apiVersion !== "string" || typeof o.kind !== "string" || typeof o.metadata?.name !== "string") {
      throw new RenderError(`${source}: a document lacks apiVersion, kind or metadata.name`);
    }
    objects.push(o as K8sObject);
  }
  return objects;
}

/** objectName is how messages name an object: Kind/name. */
export function objectName(o: K8sObject): string {
  return `${o.kind}/${o.metadata.name}`;
}
