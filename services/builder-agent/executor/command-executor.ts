// The command executor runs the operator's build command once per job, the
// way the agent always has: the job reaches the command only as PKGFARM_*
// environment, the command writes <PKGNAME>.tgz to PKGFARM_OUTPUT, and its
// output is the job's log (no phases: the command's own business).

import { mkdir, stat } from "node:fs/promises";
import type { JobAssignment } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { JobWorkdir } from "../workdir.js";
import { runBuildCommand } from "../runner.js";
import { cancelled, failed, succeeded, type Executor } from "./executor.js";
import type { SlotSandbox } from "./slot-sandbox.js";

export interface CommandExecutorOptions {
  /** argv of the build command. */
  readonly command: readonly string[];
  readonly treeDir: string;
  readonly timeoutMs: number;
  /** The agent's PATH, HOME and TMPDIR, passed on. */
  readonly baseEnv: Readonly<Record<string, string>>;
  /** When set, the command runs in its slot's sandbox. */
  readonly sandbox?: SlotSandbox;
}

export function createCommandExecutor(options: CommandExecutorOptions): Executor {
  return {
    name: "command",
    async run(job, ctx) {
      const env = commandEnvironment(options, job, ctx.workdir, ctx.slot);
      // The slot's prefix is what the command sees as /usr/pkg; the command
      // itself decides what goes into it.
      if (options.sandbox !== undefined && options.sandbox.kind === "namespace") await mkdir(options.sandbox.paths(ctx.slot).prefix, { recursive: true });
      const argv = options.sandbox === undefined ? [...options.command] : options.sandbox.wrap(ctx.slot, options.command, ctx.workdir.dir);
      ctx.log.write("", `=== running ${options.command.join(" ")}${job.makeJobs > 0 ? ` (PKGFARM_MAKE_JOBS=${job.makeJobs})` : ""}\n`);
      ctx.usage?.watch(ctx.workdir.dir);
      const result = await runBuildCommand({
        command: argv,
        env,
        cwd: ctx.workdir.dir,
        timeoutMs: options.timeoutMs,
        signal: ctx.signal,
        onOutput: (chunk) => ctx.log.write("", chunk),
        onSpawn: (pid) => ctx.usage?.track(pid),
      });
      if (result.cancelled) return cancelled(result.durationMs);
      if (result.failureReason !== "") return failed(result.durationMs, result.failureReason);
      const made = await stat(ctx.workdir.outputPath).catch(() => undefined);
      if (made === undefined || !made.isFile()) return failed(result.durationMs, `the build command exited 0 but wrote no package at ${ctx.workdir.outputPath}`);
      return succeeded(result.durationMs, ctx.workdir.outputPath);
    },
  };
}

/** The build command's environment: the agent's PATH and HOME, and the job as PKGFARM_* variables. */
export function commandEnvironment(options: Pick<CommandExecutorOptions, "treeDir" | "baseEnv">, a: JobAssignment, workdir: JobWorkdir, slot: number): Record<string, string> {
  return {
    PATH: "/usr/bin:/bin",
    HOME: workdir.dir,
    TMPDIR: "/tmp",
    ...options.baseEnv,
    LC_ALL: "C",
    PKGFARM_TREE: options.treeDir,
    PKGFARM_LOCATION: a.location,
    PKGFARM_PKGNAME: a.job!.pkgname,
    PKGFARM_MULTI_VERSION: a.multiVersion,
    PKGFARM_BUILD_ID: a.job!.buildId,
    PKGFARM_ATTEMPT: String(a.attempt),
    PKGFARM_WORKDIR: workdir.dir,
    PKGFARM_DEPENDS_DIR: workdir.dependsDir,
    PKGFARM_OUTPUT: workdir.outputPath,
    PKGFARM_SLOT: String(slot),
    // The job's share of the host's CPUs (the dispatcher's budget), for make -j.
    ...(a.makeJobs > 0 ? { PKGFARM_MAKE_JOBS: String(a.makeJobs) } : {}),
  };
}
