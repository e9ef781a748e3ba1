// The real pkgsrc tree and bootstrap kit from ../shared/pkgsrc, unpacked once
// per machine and shared by every test and benchmark that needs them.
//
// Unpacking the 466 MB tree takes about a minute, so it is done once into a
// cache directory (PKGFARM_PKGSRC_CACHE, default /var/tmp/pkgfarm-pkgsrc)
// under flock(1), into a temporary name renamed into place: a test that
// finds `pkgsrc/` there finds all of it. Tests copy nothing into the
// project. The tree is treated as read-only; a test that edits a package
// works on a copy of that package's directory.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** ../shared/pkgsrc beside the checkout (dist/test/support → ../../../../shared). */
export const SHARED_PKGSRC = path.resolve(here, "../../../../shared/pkgsrc");
export const TREE_ARCHIVE = path.join(SHARED_PKGSRC, "pkgsrc-2013.tar.xz");
export const BOOTSTRAP_KIT = path.join(SHARED_PKGSRC, "bootstrap-kit-linux-x86_64.tgz");
export const LIMITED_LIST = path.join(SHARED_PKGSRC, "limited-list.txt");
export const EXPECTED_DIR = path.join(SHARED_PKGSRC, "expected");

export function pkgsrcCacheDir(): string {
  return process.env["PKGFARM_PKGSRC_CACHE"] ?? "/var/tmp/pkgfarm-pkgsrc";
}

/** Why the real-tree tests cannot run here, or undefined when they can. */
export function pkgsrcUnavailable(): string | undefined {
  if (!existsSync(TREE_ARCHIVE) || !existsSync(BOOTSTRAP_KIT)) return `no pkgsrc tree and kit at ${SHARED_PKGSRC}`;
  if (process.platform !== "linux") return "the pkgsrc tests need Linux (mount namespaces for the /usr/pkg sandbox)";
  if (typeof process.getuid === "function" && process.getuid() !== 0) return "the pkgsrc tests need root (unshare -m, bind mounts)";
  return undefined;
}

/**
 * pkgsrcTree returns the root of the unpacked tree (…/pkgsrc, holding mk/,
 * pkgtools/ …), unpacking it first if no one has yet.
 */
export function pkgsrcTree(): string {
  const cache = pkgsrcCacheDir();
  const tree = path.join(cache, "pkgsrc");
  if (existsSync(path.join(tree, "mk", "bsd.pkg.mk"))) return tree;
  mkdirSync(cache, { recursive: true });
  // The shell runs under flock so a second caller waits and then finds the
  // tree; the archive path and cache dir are arguments, never interpolated.
  execFileSync("flock", [path.join(cache, ".lock"), "sh", "-c",
    'set -e; [ -f "$2/pkgsrc/mk/bsd.pkg.mk" ] && exit 0; tmp="$2/.unpack.$$"; rm -rf "$tmp"; mkdir -p "$tmp"; ' +
    'tar -xJf "$1" -C "$tmp"; rm -rf "$2/pkgsrc"; mv "$tmp/pkgsrc" "$2/pkgsrc"; rm -rf "$tmp"',
    "unpack", TREE_ARCHIVE, cache], { stdio: "inherit" });
  return tree;
}

/** The packages of the limited list (one location per line; # comments). */
export function limitedList(): string[] {
  return readFileSync(LIMITED_LIST, "utf8")
    .split("\n").map((l) => l.replace(/#.*/, "").trim()).filter((l) => l !== "");
}
