// The pkgsrc executor builds one package the way pbulk's pkg-build does
// (pkgtools/pbulk/files/pbulk/scripts/pkg-build), in the job's slot sandbox:
//
//   client-clean   the slot's prefix emptied and the bootstrap kit unpacked
//   pre-clean      bmake clean
//   depends        pkg_add of the direct dependencies (PKG_PATH finds the rest)
//   checksum       bmake checksum
//   configure      [create-usergroup] bmake configure
//   build          [create-usergroup] bmake all
//   install        [create-usergroup] bmake stage-install
//   package        bmake package, then a test pkg_add of the new package
//   clean          bmake clean
//   deinstall      pkg_delete of the new package
//
// with BATCH=1, DEPENDS_TARGET=/nonexistent, the MULTI_VERSION settings, and
// the slot's WRKOBJDIR, PACKAGES and DISTDIR on every bmake command line. For
// USE_DESTDIR=destdir and user-destdir, configure and build (and for
// user-destdir stage-install) run as the unprivileged build user, as pbulk's
// run_su does; BOOTSTRAP_PKG=yes skips the test install and deinstall (those
// packages may be in the kit already); USERGROUP_PHASE says in which phase
// create-usergroup runs. Each phase's output is its own log, and the phase
// that fails is the job's failed phase, after which pbulk's cleanup runs (the
// work directory saved first with --keep-wrkdir).

import { execFile } from "node:child_process";
import { chown, copyFile, mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { JobAssignment } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import { runBuildCommand } from "../runner.js";
import { cancelled, elapsedSince, failed, succeeded, type Executor, type JobContext } from "./executor.js";
import { PKG_PREFIX, type SlotSandbox } from "./slot-sandbox.js";

const execFileP = promisify(execFile);

export const BMAKE = `${PKG_PREFIX}/bin/bmake`;
export const PKG_ADD = `${PKG_PREFIX}/sbin/pkg_add`;
export const PKG_DELETE = `${PKG_PREFIX}/sbin/pkg_delete`;
export const PKG_DBDIR = `${PKG_PREFIX}/pkgdb`;

/** The phases in order; a job's failed_phase is one of them. */
export const PKGSRC_PHASES = ["pre-clean", "depends", "checksum", "configure", "build", "install", "package", "clean", "deinstall"] as const;
export type PkgsrcPhase = (typeof PKGSRC_PHASES)[number];

export interface PkgsrcExecutorOptions {
  /** The pkgsrc tree (holding mk/ and the categories). */
  readonly treeDir: string;
  /** The bootstrap kit, a tarball of usr/pkg restored before every build. */
  readonly bootstrapKit: string;
  readonly sandbox: SlotSandbox;
  /** Lines appended to the kit's mk.conf on every reset (--mk-conf). */
  readonly mkConfLines: readonly string[];
  /** The modification time the prefix's mk.conf gets after the lines are added (SlotSandbox.reset). */
  readonly mkConfMtimeMs?: number;
  /** pbulk's keep_wrkdir: a failed build's WRKDIR is saved as <keepDir>/<PKGNAME>/wrkdir.tar.gz. */
  readonly keepWrkdirDir?: string;
  /** pbulk's unprivileged_user, for USE_DESTDIR builds when the agent runs as root. */
  readonly buildUser: { readonly name: string; readonly uid: number; readonly gid: number } | undefined;
  /** Wall-clock limit for the whole job, in milliseconds. */
  readonly timeoutMs: number;
  /** PATH, HOME, TMPDIR of the agent (PATH gets the prefix in front). */
  readonly baseEnv: Readonly<Record<string, string>>;
}

/** PhaseFailure: one step of a phase did not succeed. */
class PhaseFailure extends Error {
  override readonly name = "PhaseFailure";
  constructor(readonly phase: PkgsrcPhase, readonly what: string, readonly reason: string) {
    super(`${phase} failed: ${what} ${reason}`);
  }
}
class Cancelled extends Error {
  override readonly name = "Cancelled";
}

type Runner = "root" | "user";

export function createPkgsrcExecutor(options: PkgsrcExecutorOptions): Executor {
  return {
    name: "pkgsrc",
    async run(job, ctx) {
      const started = performance.now();
      const deadline = started + options.timeoutMs;
      const build = new PkgBuild(options, job, ctx, deadline);
      try {
        await build.run();
        return succeeded(elapsedSince(started), ctx.workdir.outputPath);
      } catch (e) {
        if (e instanceof Cancelled || ctx.signal.aborted) return cancelled(elapsedSince(started));
        if (!(e instanceof PhaseFailure)) throw e;
        await build.cleanupAfterFailure(e.phase);
        return failed(elapsedSince(started), e.message, e.phase);
      }
    },
  };
}

/** PkgBuild is one run of pkg-build: the job's variables and the steps. */
class PkgBuild {
  private readonly pkgname: string;
  private readonly dir: string;
  private useDestdir = "no";
  private isBootstrap = false;
  private usergroupPhase = "";
  private runBuild: Runner = "root";
  private runInstall: Runner = "root";
  private readonly paths;

  constructor(
    private readonly o: PkgsrcExecutorOptions,
    private readonly job: JobAssignment,
    private readonly ctx: JobContext,
    private readonly deadline: number,
  ) {
    this.pkgname = job.job!.pkgname;
    this.dir = join(o.treeDir, job.location);
    this.paths = o.sandbox.paths(ctx.slot);
  }

  /**
   * The scan's USE_DESTDIR, BOOTSTRAP_PKG and USERGROUP_PHASE, as pkg-build
   * reads them from the build info. An assignment without them (a
   * dispatcher that does not pass scan variables) gets them from bmake.
   */
  private async readBuildVars(): Promise<void> {
    let vars: Record<string, string> = this.job.scanVars;
    if (!("USE_DESTDIR" in vars)) {
      const names = ["_USE_DESTDIR", "BOOTSTRAP_PKG", "USERGROUP_PHASE"];
      const out = await this.capture("pre-clean", [...this.makeArgv("show-vars"), `VARNAMES=${names.join(" ")}`]);
      const lines = out.split("\n");
      vars = { USE_DESTDIR: lines[0] ?? "no", BOOTSTRAP_PKG: lines[1] ?? "", USERGROUP_PHASE: lines[2] ?? "" };
      this.ctx.log.write("pre-clean", `=== no scan variables in the assignment; from bmake: USE_DESTDIR=${vars["USE_DESTDIR"]} BOOTSTRAP_PKG=${vars["BOOTSTRAP_PKG"]} USERGROUP_PHASE=${vars["USERGROUP_PHASE"]}\n`);
    }
    this.useDestdir = vars["USE_DESTDIR"] || "no";
    this.isBootstrap = (vars["BOOTSTRAP_PKG"] ?? "") !== "";
    this.usergroupPhase = vars["USERGROUP_PHASE"] ?? "";
    // pkg-build: user-destdir builds and installs as the user, destdir only
    // builds as the user; without root (or without a user) everything runs
    // as the agent.
    const unprivileged = this.o.buildUser !== undefined && process.getuid?.() === 0;
    this.runBuild = unprivileged && (this.useDestdir === "user-destdir" || this.useDestdir === "destdir") ? "user" : "root";
    this.runInstall = unprivileged && this.useDestdir === "user-destdir" ? "user" : "root";
  }

  /** Runs argv in the sandbox as root and returns its stdout (stderr goes to the phase's log). */
  private async capture(phase: PkgsrcPhase, argv: readonly string[]): Promise<string> {
    let out = "";
    const result = await runBuildCommand({
      command: this.o.sandbox.wrap(this.ctx.slot, argv, this.dir),
      env: this.env({}),
      cwd: this.dir,
      timeoutMs: Math.max(1, this.deadline - performance.now()),
      signal: this.ctx.signal,
      onOutput: (chunk, stream) => {
        if (stream === "stdout") out += Buffer.from(chunk).toString("utf8");
        else this.ctx.log.write(phase, chunk);
      },
      onSpawn: (pid) => this.ctx.usage?.track(pid),
    });
    if (result.cancelled) throw new Cancelled();
    if (result.failureReason !== "") throw new PhaseFailure(phase, "bmake show-vars", result.failureReason);
    return out;
  }

  async run(): Promise<void> {
    const { ctx, o } = this;
    if (this.job.location === "" || this.job.location.split("/").some((part) => part === ".." || part === "")) {
      throw new PhaseFailure("pre-clean", "the location", `${JSON.stringify(this.job.location)} is not a package directory of the tree`);
    }
    const isDir = await stat(this.dir).then((s) => s.isDirectory(), () => false);
    if (!isDir) throw new PhaseFailure("pre-clean", "the location", `${this.job.location} is not in the tree ${o.treeDir}`);

    // client-clean
    await o.sandbox.reset(ctx.slot, o.bootstrapKit, o.mkConfLines, o.mkConfMtimeMs);
    await rm(join(this.paths.wrkobjdir, this.job.location), { recursive: true, force: true });
    ctx.log.write("pre-clean", `=== ${this.paths.prefix} restored from ${o.bootstrapKit}; it is ${PKG_PREFIX} in slot ${ctx.slot}'s sandbox\n`);

    ctx.usage?.watch(this.paths.wrkobjdir);
    await this.readBuildVars();
    await this.make("pre-clean", "clean", "root");
    const deps = this.dependencies();
    if (deps.length > 0) await this.step("depends", [PKG_ADD, "-K", PKG_DBDIR, ...deps], "root", { PKG_PATH: ctx.workdir.dependsDir });
    await this.make("checksum", "checksum", "root");
    if (this.runBuild === "user" || this.runInstall === "user") await this.giveWorkToUser();
    await this.usergroup("configure");
    await this.make("configure", "configure", this.runBuild);
    await this.usergroup("build");
    await this.make("build", "all", this.runBuild);
    await this.usergroup("install");
    await this.make("install", "stage-install", this.runInstall);
    await this.make("package", "package", "root");
    if (this.useDestdir !== "no" && !this.isBootstrap) {
      try {
        await this.step("package", [PKG_ADD, "-K", PKG_DBDIR, this.pkgname], "root", { PKG_PATH: `${join(this.paths.packages, "All")};${ctx.workdir.dependsDir}` });
      } catch (e) {
        if (e instanceof PhaseFailure) await this.make("package", "package-clean", "root").catch(() => {});
        throw e;
      }
    }
    const made = join(this.paths.packages, "All", `${this.pkgname}.tgz`);
    if (!(await stat(made).then((s) => s.isFile(), () => false))) throw new PhaseFailure("package", "bmake package", `made no ${made}`);
    await copyFile(made, ctx.workdir.outputPath);
    // The work directory is at its fullest now; clean empties it.
    await ctx.usage?.sampleDisk();
    await this.make("clean", "clean", "root");
    if (!this.isBootstrap) await this.step("deinstall", [PKG_DELETE, "-K", PKG_DBDIR, this.pkgname], "root");
  }

  /** pbulk's cleanup(): save the WRKDIR when asked, then clean (its output is not kept). */
  async cleanupAfterFailure(phase: PkgsrcPhase): Promise<void> {
    const { o, ctx } = this;
    try {
      if (o.keepWrkdirDir !== undefined) {
        const into = join(o.keepWrkdirDir, this.pkgname, "wrkdir.tar.gz");
        await mkdir(join(o.keepWrkdirDir, this.pkgname), { recursive: true });
        await rm(into, { force: true });
        await this.step(phase, this.makeArgv("pbulk-save-wrkdir", [`INTO=${into}`, "TAR=tar"]), "root");
        if (await stat(into).then(() => true, () => false)) ctx.log.write(phase, `=== the work directory is kept in ${into}\n`);
      }
    } catch {
      ctx.log.write(phase, `=== the work directory could not be saved\n`);
    }
    if (ctx.signal.aborted) return;
    await runBuildCommand({
      command: this.o.sandbox.wrap(ctx.slot, this.makeArgv("clean"), this.dir),
      env: this.env({}),
      cwd: this.dir,
      timeoutMs: 120_000,
      onOutput: () => {},
    });
  }

  /** The direct dependencies by PKGNAME; older dispatchers sent only the packages. */
  private dependencies(): string[] {
    if (this.job.dependencies.length > 0) return [...this.job.dependencies];
    return this.job.dependencyPackages.map((p) => p.fileName.replace(/\.tgz$/, ""));
  }

  private makeArgv(target: string, extra: readonly string[] = []): string[] {
    const multi = this.job.multiVersion.split(/\s+/).filter((v) => v !== "");
    return [BMAKE, target, "BATCH=1", "DEPENDS_TARGET=/nonexistent", ...multi,
      `WRKOBJDIR=${this.paths.wrkobjdir}`, `PACKAGES=${this.paths.packages}`, `DISTDIR=${this.paths.distdir}`,
      `WRKLOG=${join(this.paths.wrkobjdir, ".work.log")}`,
      // The job's share of the host's CPUs; pkgsrc still makes a MAKE_JOBS_SAFE=no package serially.
      ...(this.job.makeJobs > 0 ? [`MAKE_JOBS=${this.job.makeJobs}`] : []), ...extra];
  }

  private make(phase: PkgsrcPhase, target: string, as: Runner): Promise<void> {
    return this.step(phase, this.makeArgv(target), as);
  }

  /** pkg-build's run_usergroup: create-usergroup in the phase USERGROUP_PHASE names. */
  private async usergroup(phase: "configure" | "build" | "install"): Promise<void> {
    if (this.useDestdir === "no") return;
    const p = this.usergroupPhase;
    if (phase === "configure" && p.endsWith("configure")) {
      await this.make("configure", "create-usergroup", "root");
      await this.make("configure", "clean", "root");
    } else if (phase === "build" && p.endsWith("build")) {
      await this.make("build", "create-usergroup", "root");
    } else if (phase === "install" && p === "pre-install") {
      await this.make("install", "create-usergroup", "root");
    }
  }

  /** pbulk chowns WRKOBJDIR to unprivileged_user; here the slot's, before the user's first step. */
  private async giveWorkToUser(): Promise<void> {
    const user = this.o.buildUser!;
    await execFileP("chown", ["-R", `${user.uid}:${user.gid}`, this.paths.wrkobjdir]);
    await chown(this.paths.wrkobjdir, user.uid, user.gid);
  }

  private env(extra: Readonly<Record<string, string>>): Record<string, string> {
    const base = this.o.baseEnv;
    return {
      PATH: `${PKG_PREFIX}/sbin:${PKG_PREFIX}/bin:${base["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`,
      HOME: base["HOME"] ?? "/root",
      TMPDIR: base["TMPDIR"] ?? "/tmp",
      PKGFARM_SLOT: String(this.ctx.slot),
      PKGFARM_PKGNAME: this.pkgname,
      PKGFARM_LOCATION: this.job.location,
      PKGFARM_BUILD_ID: this.job.job!.buildId,
      ...(this.job.makeJobs > 0 ? { PKGFARM_MAKE_JOBS: String(this.job.makeJobs) } : {}),
      ...extra,
    };
  }

  private async step(phase: PkgsrcPhase, argv: readonly string[], as: Runner, extraEnv: Readonly<Record<string, string>> = {}): Promise<void> {
    const { ctx } = this;
    if (ctx.signal.aborted) throw new Cancelled();
    const left = this.deadline - performance.now();
    if (left <= 0) throw new PhaseFailure(phase, argv.slice(0, 2).join(" "), "was not started: the job's time limit is spent");
    const user = this.o.buildUser;
    const inner = as === "user" && user !== undefined
      ? ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--init-groups", "--", ...argv]
      : [...argv];
    const shown = argv.map((a) => a.startsWith("/") && a.startsWith(PKG_PREFIX) ? a.slice(a.lastIndexOf("/") + 1) : a).slice(0, 2).join(" ");
    ctx.log.write(phase, `=== ${phase}: ${argv.join(" ")}${as === "user" ? ` (as ${user!.name})` : ""}\n`);
    const result = await runBuildCommand({
      command: this.o.sandbox.wrap(ctx.slot, inner, this.dir),
      env: this.env(extraEnv),
      cwd: this.dir,
      timeoutMs: left,
      signal: ctx.signal,
      onOutput: (chunk) => ctx.log.write(phase, chunk),
      onSpawn: (pid) => ctx.usage?.track(pid),
    });
    if (result.cancelled) throw new Cancelled();
    if (result.failureReason !== "") throw new PhaseFailure(phase, shown, result.failureReason);
  }
}
