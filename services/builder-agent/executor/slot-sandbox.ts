// SlotSandbox is what the executors need from a slot's sandbox: the host
// directories that are the slot's prefix and work area, a way to run a
// command inside it, and pbulk's client-clean (the prefix restored from the
// bootstrap kit). With a sandbox per slot one host builds several packages at
// once, each against its own /usr/pkg and package database.
//
// Kinds:
// - "namespace" (Linux): every command runs in a private mount namespace
//   (and pid namespace, so nothing it starts outlives it) where the slot's
//   prefix directory is bind-mounted over /usr/pkg. The host's /usr/pkg is
//   only ever a mount point.
// - "chroot": the operator gives one prepared root per slot (the tree, work
//   and cache directories visible at the same paths inside); the slot's prefix
//   is <root>/usr/pkg.
// - "none": commands run on the host and the prefix is the host's /usr/pkg:
//   one slot, on a host given to building, as pbulk runs.

import { appendFile, chmod, mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The prefix the bootstrap kit was made for; sandboxes put the slot's prefix here. */
export const PKG_PREFIX = "/usr/pkg";

export type SandboxKind = "namespace" | "chroot" | "none";

/** SlotPaths are one slot's directories, as host paths. */
export interface SlotPaths {
  /** What the slot's commands see as /usr/pkg (prefix, pkgdb, var). */
  readonly prefix: string;
  /** WRKOBJDIR: where the slot's builds unpack and compile. */
  readonly wrkobjdir: string;
  /** PACKAGES: where the slot's bmake package writes All/<PKGNAME>.tgz. */
  readonly packages: string;
  /** DISTDIR: the slot's distfiles. */
  readonly distdir: string;
}

export interface SlotSandbox {
  readonly kind: SandboxKind;
  paths(slot: number): SlotPaths;
  /** argv that runs argv inside the slot's sandbox (with cwd and environment kept). */
  wrap(slot: number, argv: readonly string[]): string[];
  /**
   * pbulk's client-clean: empties the slot's prefix and unpacks the kit (a
   * tarball of usr/pkg) into it, then appends mkConfLines to its etc/mk.conf.
   */
  reset(slot: number, kit: string, mkConfLines: readonly string[]): Promise<void>;
}

export interface SlotSandboxOptions {
  readonly kind: SandboxKind;
  /** namespace: slot N's directories are <root>/slot-N/{prefix,wrkobjdir}. */
  readonly root: string;
  /** chroot: one root directory per slot. */
  readonly chrootDirs?: readonly string[];
}

export function createSlotSandbox(options: SlotSandboxOptions): SlotSandbox {
  const paths = (slot: number): SlotPaths => {
    const own = join(options.root, `slot-${slot}`);
    const work = { wrkobjdir: join(own, "wrkobjdir"), packages: join(own, "packages"), distdir: join(own, "distfiles") };
    switch (options.kind) {
      case "namespace":
        return { prefix: join(own, "prefix"), ...work };
      case "chroot": {
        const dir = options.chrootDirs?.[slot];
        if (dir === undefined) throw new Error(`no chroot directory for slot ${slot}`);
        return { prefix: join(dir, PKG_PREFIX), ...work };
      }
      case "none":
        return { prefix: PKG_PREFIX, ...work };
    }
  };
  return {
    kind: options.kind,
    paths,
    wrap(slot, argv) {
      const p = paths(slot);
      switch (options.kind) {
        case "namespace":
          // unshare's child is pid 1 of a new pid namespace and dies (taking
          // every process of the namespace with it) when unshare is killed.
          return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--",
            "/bin/sh", "-c", 'mount --bind "$1" "$2" || exit 125; shift 2; exec "$@"', "pkgfarm-sandbox", p.prefix, PKG_PREFIX, ...argv];
        case "chroot": {
          const dir = options.chrootDirs![slot]!;
          return ["chroot", dir, "/bin/sh", "-c", 'cd "$1" 2>/dev/null || cd /; shift; exec "$@"', "pkgfarm-sandbox", process.cwd(), ...argv];
        }
        case "none":
          return [...argv];
      }
    },
    async reset(slot, kit, mkConfLines) {
      const p = paths(slot);
      await mkdir(p.prefix, { recursive: true });
      // Keep the directory itself: it may be a mount point (pbulk's note).
      for (const entry of await readdir(p.prefix)) await rm(join(p.prefix, entry), { recursive: true, force: true });
      await run("tar", ["-xzf", kit, "-C", p.prefix, "--strip-components=2"]);
      if (mkConfLines.length > 0) await appendFile(join(p.prefix, "etc", "mk.conf"), `\n# added by the agent (--mk-conf)\n${mkConfLines.join("\n")}\n`);
      // The slot's directories are made traversable: builds of USE_DESTDIR
      // packages run as an unprivileged user that must reach WRKOBJDIR.
      for (const dir of [options.root, join(options.root, `slot-${slot}`), p.wrkobjdir, p.distdir]) {
        await mkdir(dir, { recursive: true });
        await chmod(dir, 0o755);
      }
      await rm(p.packages, { recursive: true, force: true });
      await mkdir(p.packages, { recursive: true });
    },
  };
}
