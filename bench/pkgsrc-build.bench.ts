// bench:pkgsrc-build: how long one package build takes through the pkgsrc
// executor, beside the same pbulk pkg-build commands run directly by a
// shell in the same kind of sandbox, in the same run (so both see the same
// machine load). Prints one JSON object: wall and CPU seconds (user+sys of
// every process of the build) for each, per package.
//
//   node dist/bench/pkgsrc-build.bench.js [--location pkgtools/digest] [--rounds 1]

import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { JobOutcome } from "../gen/pkgfarm/v1/depgraph_pb.js";
import { ensureBuildUser } from "../services/builder-agent/executor/build-user.js";
import { createPkgsrcExecutor } from "../services/builder-agent/executor/pkgsrc-executor.js";
import { createSlotSandbox } from "../services/builder-agent/executor/slot-sandbox.js";
import { prepareJobWorkdir } from "../services/builder-agent/workdir.js";
import { BOOTSTRAP_KIT, pkgsrcTree, pkgsrcUnavailable } from "../test/support/pkgsrc.js";
import { assignment, phaseLogs, scanVars } from "../test/support/pkgsrc-jobs.js";

/** CPU seconds (user+sys) of this process's reaped children so far: /proc/self/stat cutime+cstime. */
function childCpuSeconds(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

async function main(): Promise<void> {
  const why = pkgsrcUnavailable();
  if (why !== undefined) throw new Error(why);
  const { values } = parseArgs({ options: { location: { type: "string", default: "pkgtools/digest" }, rounds: { type: "string", default: "1" } } });
  const location = values.location!;
  const rounds = Number(values.rounds);
  const tree = pkgsrcTree();
  const root = mkdtempSync("/var/tmp/pkgfarm-bench-build-");
  chmodSync(root, 0o755);
  try {
    const sandbox = createSlotSandbox({ kind: "namespace", root: join(root, "sandbox") });
    const user = await ensureBuildUser("pkgfarm");
    const executor = createPkgsrcExecutor({ treeDir: tree, bootstrapKit: BOOTSTRAP_KIT, sandbox, mkConfLines: [], buildUser: user, timeoutMs: 3_600_000, baseEnv: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", TMPDIR: "/tmp" } });
    await sandbox.reset(0, BOOTSTRAP_KIT, []);
    const vars = scanVars(sandbox, 0, tree, location);
    const pkgname = vars["PKGNAME"]!;
    const viaExecutor: Array<{ wall: number; cpu: number }> = [];
    const direct: Array<{ wall: number; cpu: number }> = [];
    const p = sandbox.paths(0);
    // pkg-build's commands for a package without dependencies, as pbulk runs them.
    const make = `/usr/pkg/bin/bmake BATCH=1 DEPENDS_TARGET=/nonexistent WRKOBJDIR=${p.wrkobjdir} PACKAGES=${p.packages} DISTDIR=${p.distdir}`;
    const asUser = vars["USE_DESTDIR"] === "user-destdir" ? `setpriv --reuid=${user.uid} --regid=${user.gid} --init-groups --` : "";
    const script = [
      "set -e",
      `${make} clean`, `${make} checksum`,
      ...(asUser !== "" ? [`chown -R ${user.uid}:${user.gid} ${p.wrkobjdir}`] : []),
      `${asUser} ${make} configure`, `${asUser} ${make} all`, `${asUser} ${make} stage-install`, `${make} package`,
      `PKG_PATH=${p.packages}/All /usr/pkg/sbin/pkg_add -K /usr/pkg/pkgdb ${pkgname}`, `${make} clean`, `/usr/pkg/sbin/pkg_delete -K /usr/pkg/pkgdb ${pkgname}`,
    ].join("\n");
    for (let i = 0; i < rounds; i++) {
      {
        const workdir = await prepareJobWorkdir(join(root, "work"), `bench${i}`, pkgname);
        const cpu0 = childCpuSeconds();
        const t0 = performance.now();
        const r = await executor.run(assignment({ pkgname, location, scanVars: vars }), { workdir, slot: 0, log: phaseLogs(), signal: new AbortController().signal });
        if (r.outcome !== JobOutcome.SUCCEEDED) throw new Error(`${pkgname}: ${r.failureReason}`);
        viaExecutor.push({ wall: (performance.now() - t0) / 1000, cpu: childCpuSeconds() - cpu0 });
      }
      {
        const cpu0 = childCpuSeconds();
        const t0 = performance.now();
        await sandbox.reset(0, BOOTSTRAP_KIT, []);
        const [program, ...args] = sandbox.wrap(0, ["/bin/sh", "-c", script], join(tree, location));
        execFileSync(program!, args, { cwd: join(tree, location), stdio: ["ignore", "ignore", "ignore"], env: { PATH: "/usr/pkg/sbin:/usr/pkg/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root" } });
        direct.push({ wall: (performance.now() - t0) / 1000, cpu: childCpuSeconds() - cpu0 });
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
    process.stdout.write(`${JSON.stringify({
      package: pkgname, rounds, loadavg: load,
      executor: { wallSeconds: +median(viaExecutor.map((r) => r.wall)).toFixed(2), cpuSeconds: +median(viaExecutor.map((r) => r.cpu)).toFixed(2) },
      directShell: { wallSeconds: +median(direct.map((r) => r.wall)).toFixed(2), cpuSeconds: +median(direct.map((r) => r.cpu)).toFixed(2) },
      pbulkReadmeSecondsPerPackage: 17,
    })}\n`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
