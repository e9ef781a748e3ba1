// Runs a command of the real bootstrap kit (pkg_info, pkg_create, bmake ...)
// in a private mount namespace: an empty directory of the test's is
// bind-mounted over /usr/pkg and the kit unpacked into it, so the host's
// /usr/pkg is never written (other engineers share the machine).

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { BOOTSTRAP_KIT } from "./pkgsrc.js";

const SCRIPT =
  'set -e; prefix=$1 kit=$2 cwd=$3; shift 3; mount --bind "$prefix" /usr/pkg; ' +
  'tar -xzf "$kit" -C "$prefix" --strip-components=2; cd "$cwd"; ' +
  'PATH=/usr/pkg/bin:/usr/pkg/sbin:$PATH; export PATH; exec "$@"';

export interface KitRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** spawnWithKit runs argv (no shell) with the kit at /usr/pkg and returns how it ended. */
export function spawnWithKit(argv: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): KitRun {
  // The mount point only; nothing is ever written to it on the host.
  if (!existsSync("/usr/pkg")) mkdirSync("/usr/pkg");
  const prefix = mkdtempSync(path.join(tmpdir(), "pkgfarm-kit-"));
  try {
    const r = spawnSync("unshare", ["-m", "--propagation", "private", "sh", "-c", SCRIPT, "sandbox", prefix, BOOTSTRAP_KIT, options.cwd ?? "/", ...argv], {
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 120_000,
    });
    if (r.error !== undefined) throw r.error;
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(prefix, { recursive: true, force: true });
  }
}

/** runWithKit runs argv with the kit at /usr/pkg and returns its stdout; a failure throws with its stderr. */
export function runWithKit(argv: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnWithKit(argv, options);
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited with status ${r.status}: ${r.stderr.slice(0, 2000)}`);
  return r.stdout;
}
