import { readFileSync } from "node:fs";

/** DockerStage is one FROM ... AS name section of a Dockerfile, its instructions joined across continuations. */
export interface DockerStage {
  readonly name: string;
  readonly from: string;
  readonly instructions: readonly { readonly keyword: string; readonly args: string }[];
}

/** readDockerStages splits a Dockerfile into its stages (enough of the syntax for our own file). */
export function readDockerStages(path: string): DockerStage[] {
  const text = readFileSync(path, "utf8").replace(/\\\n/g, " ");
  const stages: { name: string; from: string; instructions: { keyword: string; args: string }[] }[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    const upper = keyword!.toUpperCase();
    if (upper === "FROM") {
      const [, from, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args!)!;
      stages.push({ name: name ?? String(stages.length), from: from!, instructions: [] });
    } else if (stages.length > 0) {
      stages.at(-1)!.instructions.push({ keyword: upper, args: args! });
    }
  }
  return stages;
}

/** ImageConfig is what a container of the final stage starts with: entrypoint, working directory, environment, user. */
export interface ImageConfig {
  readonly entrypoint: readonly string[];
  readonly workdir: string;
  readonly env: Readonly<Record<string, string>>;
  readonly user: string;
}

/** imageConfig reads the final stage's ENTRYPOINT (exec form only), WORKDIR, ENV (key=value form) and USER. */
export function imageConfig(stages: readonly DockerStage[]): ImageConfig {
  const last = stages.at(-1)!;
  let entrypoint: string[] = [];
  let workdir = "/";
  let user = "root";
  const env: Record<string, string> = {};
  for (const { keyword, args } of last.instructions) {
    if (keyword === "ENTRYPOINT") entrypoint = JSON.parse(args) as string[];
    if (keyword === "WORKDIR") workdir = args;
    if (keyword === "USER") user = args;
    if (keyword === "ENV") for (const [, k, v] of args.matchAll(/(\w+)=(\S+)/g)) env[k!] = v!;
  }
  return { entrypoint, workdir, env, user };
}
