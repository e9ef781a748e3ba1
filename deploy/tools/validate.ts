import { join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { objectName, type K8sObject } from "./render.js";

/**
 * Offline validation of rendered objects against the Kubernetes API schemas
 * that the kubernetes-models package carries (Kubernetes 1.27), in two passes:
 *
 * 1. its JSON-schema validators (types, required fields, enums, formats); these
 *    accept unknown fields, as the API server does by default;
 * 2. a TypeScript check of every object as an object literal of the package's
 *    interface for its kind: excess-property checking rejects every field the
 *    API does not define, at any depth, as `kubectl --validate=strict` would.
 */

const PROJECT_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
// The checked module has to sit inside the project so that it resolves kubernetes-models.
const CHECKED_FILE = join(PROJECT_ROOT, "deploy", "tools", "rendered-objects.check.ts");

/** modelModule is the kubernetes-models module path for an apiVersion: "apps/v1" → "apps/v1", "v1" → "v1". */
function modelModule(apiVersion: string): string {
  if (!KNOWN_API_VERSION.test(apiVersion)) throw new Error(`unrecognised apiVersion "${apiVersion}"`);
  return `kubernetes-models/${apiVersion}`;
}

const KNOWN_API_VERSION = /^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/;

/** schemaProblems runs the package's JSON-schema validator for each object's kind. */
async function schemaProblems(objects: readonly K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const o of objects) {
    let models: Record<string, unknown>;
    try {
      models = (await import(modelModule(o.apiVersion))) as Record<string, unknown>;
    } catch {
      problems.push(`${objectName(o)}: no schema for apiVersion ${o.apiVersion}`);
      continue;
    }
    const Model = models[o.kind] as (new (data: unknown) => { validate(): void }) | undefined;
    if (typeof Model !== "function") {
      problems.push(`${objectName(o)}: no schema for kind ${o.kind} in ${o.apiVersion}`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (e) {
      problems.push(`${objectName(o)}: ${(e as Error).message}`);
    }
  }
  return problems;
}

/** unknownFieldProblems type-checks every object against its kind's interface; see the file comment. */
function unknownFieldProblems(objects: readonly K8sObject[]): string[] {
  // One import line per object, then one `export const` per object; literalStart[i] is where object i's literal begins.
  let text = objects.map((o, i) => `import type { I${o.kind} as T${i} } from ${JSON.stringify(`${modelModule(o.apiVersion)}/${o.kind}`)};\n`).join("");
  const literalStart: number[] = [];
  objects.forEach((o, i) => {
    text += `export const o${i}: T${i} = `;
    literalStart.push(text.length);
    text += `${JSON.stringify(o, null, 1)};\n`;
  });
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
    // The interfaces need only the basic types; the default lib (with the DOM) triples the time.
    lib: ["lib.es5.d.ts"],
  };
  const host = ts.createCompilerHost(options);
  const fileExists = host.fileExists.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.fileExists = (name) => name === CHECKED_FILE || fileExists(name);
  host.getSourceFile = (name, languageVersion, onError) =>
    name === CHECKED_FILE ? ts.createSourceFile(name, text, languageVersion, true) : getSourceFile(name, languageVersion, onError);
  const program = ts.createProgram([CHECKED_FILE], options, host);
  const problems: string[] = [];
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, "; ");
    if (d.file?.fileName !== CHECKED_FILE || d.start === undefined) {
      problems.push(`type check: ${message}`);
      continue;
    }
    const at = d.start;
    if (at < literalStart[0]!) {
      // An import line: the package has no interface for this kind.
      const index = d.file.getLineAndCharacterOfPosition(at).line;
      problems.push(`${objectName(objects[index]!)}: no schema: ${message}`);
      continue;
    }
    const index = literalStart.findLastIndex((s) => s <= at);
    const path = jsonPathAt(text, literalStart[index]!, at);
    problems.push(`${objectName(objects[index]!)}${path === "" ? "" : ` at ${path}`}: ${message}`);
  }
  return problems;
}

/**
 * jsonPathAt names the property at offset `at` inside the JSON literal that
 * starts at `from` (spec.template.spec.containers[0].bogus): TypeScript
 * reports an excess property at its key, and a person fixes a path faster
 * than a line number of a generated file.
 */
function jsonPathAt(text: string, from: number, at: number): string {
  const path: (string | number)[] = [];
  const containers: ("{" | "[")[] = [];
  let key: string | number | undefined;
  const readString = (i: number): [string, number] => {
    let j = i + 1;
    while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
    return [JSON.parse(text.slice(i, j + 1)) as string, j];
  };
  for (let i = from; i < at; i++) {
    const c = text[i]!;
    if (c === '"') {
      const [s, end] = readString(i);
      if (containers.at(-1) === "{" && text[end + 1] === ":") key = s;
      i = end;
    } else if (c === "{" || c === "[") {
      if (containers.length > 0) path.push(key!);
      containers.push(c);
      key = c === "[" ? 0 : undefined;
    } else if (c === "}" || c === "]") {
      containers.pop();
      key = path.pop();
    } else if (c === "," && containers.at(-1) === "[") {
      key = (key as number) + 1;
    }
  }
  if (text[at] === '"' && containers.at(-1) === "{") path.push(readString(at)[0]);
  else if (containers.at(-1) === "[") path.push(key!);
  return path.map((p, n) => (typeof p === "number" ? `[${p}]` : n === 0 ? p : `.${p}`)).join("");
}

/** validateObjects returns every problem found, one line each; none means valid. */
export async function validateObjects(objects: readonly K8sObject[]): Promise<string[]> {
  const known = objects.filter((o) => KNOWN_API_VERSION.test(o.apiVersion));
  return [...(await schemaProblems(objects)), ...unknownFieldProblems(known)];
}
