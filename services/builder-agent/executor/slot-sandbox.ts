// SlotSandbox is what the executors need from a slot's sandbox, on top of
// sandbox.ts: the slot's host directories, a command wrapped to run inside
// it, and pbulk's client-clean (the prefix restored from the bootstrap kit
// with the agent's mk.conf lines added). With a sandbox per slot one host
// builds several packages at once, each against its own /usr/pkg and package
// database.
//
// Kinds (sandbox.ts has the mechanics):
// - "namespace" (Linux, root): a private mount and PID namespace per command
//   with the slot's prefix bind-mounted over /usr/pkg; nothing the command
//   starts outlives it. The host's /usr/pkg is only ever a mount point.
// - "chroot": one operator-prepared root per slot (--chroot-dirs); its
//   usr/pkg is the slot's prefix. The tree, --work-dir and --sandbox-root must
//   be visible at the same paths inside (null or bind mounts).
// - "none": commands run on the host and the prefix is the host's /usr/pkg:
//   one slot, on a host given over to building, as pbulk runs.

import { chmod, mkdir, rm, utimes } from "node:fs/promises";
import { join } from "node:path";
import { writeMkConf } from "../pkgsrc/scan.js";
import { resetPrefix, sandboxCommand, slotDirs, type SandboxBind, type SandboxKind, type SlotDirs } from "../sandbox.js";

/** The prefix the bootstrap kit was made for; sandboxes put the slot's prefix here. */
export const PKG_PREFIX = "/usr/pkg";

export type { SandboxKind };

export interface SlotSandbox {
  readonly kind: SandboxKind;
  /** The slot's directories as host paths (prefix: what its commands see as /usr/pkg). */
  paths(slot: number): SlotDirs;
  /** What the slot's sandbox mounts (for unchangedSince and the scanner). */
  binds(slot: number): SandboxBind[];
  /** The chroot of the slot, for kind "chroot". */
  chrootDir(slot: number): string | undefined;
  /** argv that runs argv inside the slot's sandbox, in directory cwd. */
  wrap(slot: number, argv: readonly string[], cwd?: string): string[];
  /**
   * pbulk's client-clean: the slot's prefix emptied and the kit (a tarball
   * of usr/pkg) unpacked into it, mkConfLines appended to its etc/mk.conf,
   * an empty packages directory. mk.conf then gets the modification time
   * stampMs (when given): every scan lists mk.conf in SCAN_DEPENDS, so a
   * fresh time at every reset would make a reuse scan rescan everything.
   */
  reset(slot: number, kit: string, mkConfLines: readonly string[], stampMs?: number): Promise<void>;
}

export interface SlotSandboxOptions {
  readonly kind: SandboxKind;
  /** Slot N's directories are <root>/slot-N/{prefix,wrkobjdir,packages,distdir,tmp}. */
  readonly root: string;
  /** chroot: one root directory per slot. */
  readonly chrootDirs?: readonly string[];
}

export function createSlotSandbox(options: SlotSandboxOptions): SlotSandbox {
  const chrootDir = (slot: number): string | undefined => {
    if (options.kind !== "chroot") return undefined;
    const dir = options.chrootDirs?.[slot];
    if (dir === undefined) throw new Error(`no chroot directory for slot ${slot} (--chroot-dirs has ${options.chrootDirs?.length ?? 0})`);
    return dir;
  };
  const paths = (slot: number): SlotDirs => {
    const own = slotDirs(options.root, slot);
    switch (options.kind) {
      case "namespace":
        return own;
      case "chroot":
        return { ...own, prefix: join(chrootDir(slot)!, PKG_PREFIX) };
      case "none":
        return { ...own, prefix: PKG_PREFIX };
    }
  };
  const binds = (slot: number): SandboxBind[] => options.kind === "namespace" ? [{ source: paths(slot).prefix, target: PKG_PREFIX }] : [];
  return {
    kind: options.kind,
    paths,
    binds,
    chrootDir,
    wrap(slot, argv, cwd) {
      // chroot(8) starts in the new root's /; the command's directory is
      // entered again inside (the operator makes it exist there).
      const inner = options.kind === "chroot" && cwd !== undefined ? ["/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, ...argv] : [...argv];
      const dir = chrootDir(slot);
      return sandboxCommand(options.kind, { binds: binds(slot), ...(dir === undefined ? {} : { chrootDir: dir }) }, inner);
    },
    async reset(slot, kit, mkConfLines, stampMs) {
      const p = paths(slot);
      await resetPrefix(p.prefix, kit);
      if (mkConfLines.length > 0) {
        const file = await writeMkConf(p.prefix, mkConfLines.join("\n"));
        if (stampMs !== undefined) await utimes(file, stampMs / 1000, stampMs / 1000);
      }
      // Traversable by all: USE_DESTDIR builds run as an unprivileged user
      // that must reach WRKOBJDIR.
      for (const dir of [options.root, p.root, p.wrkobjdir, p.distdir, p.tmp]) {
        await mkdir(dir, { recursive: true });
        await chmod(dir, 0o755);
      }
      await rm(p.packages, { recursive: true, force: true });
      await mkdir(p.packages, { recursive: true });
    },
  };
}
