/**
 * Which packages must be rescanned when files of the tree change.
 *
 * A package's scan (its `bmake pbulk-index` record) depends on the files in its own
 * directory and on every file its Makefile included while being scanned, which pbulk
 * records as SCAN_DEPENDS. So a commit that touches `devel/zlib/buildlink3.mk` must
 * rescan devel/zlib and every package that includes that file, and nothing else.
 *
 * SCAN_DEPENDS entries are written from the package's point of view:
 *   - `../../devel/zlib/buildlink3.mk`, relative to the package directory;
 *   - `Makefile`, the package's own files;
 *   - `/build/pkgsrc/x11/XaoS/../../mk/defaults/mk.conf`, absolute through the
 *     scanning host's copy of the tree, which is still a tree file
 *     (`mk/defaults/mk.conf`) because it passes through `/<location>/`;
 *   - `/etc/mk.conf`, `/usr/share/mk/sys.mk`: host files outside the tree, which a
 *     tree diff never names, so they are not indexed.
 * Everything is reduced to a path relative to the tree root, the form
 * `git diff --name-only` prints.
 *
 * Pure: no I/O, no clock.
 */

/** ScanDependsIndex answers "which packages included this tree file when scanned". */
export interface ScanDependsIndex {
  /** Locations whose SCAN_DEPENDS names treeFile (relative to the tree root), sorted and unique. */
  locationsNeeding(treeFile: string): readonly string[];
}

/** RescanSet is what a list of changed files asks for. */
export interface RescanSet {
  /** Locations to rescan, sorted and unique. */
  locations: string[];
  /**
   * Changed files that affect no known package, sorted and unique: tree files no
   * scan included (doc/CHANGES-*, a category's Makefile), files of locations that
   * are not known yet (a new package: the caller decides whether to scan it).
   */
  ignored: string[];
}

const NONE: readonly string[] = Object.freeze([]);

/**
 * normalizeTreePath resolves "." and ".." segments and empty segments of a path
 * relative to the tree root; undefined when it climbs out of the tree or names
 * nothing.
 */
function normalizeTreePath(path: string): string | undefined {
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length === 0) return undefined;
      out.pop();
    } else {
      out.push(seg);
    }
  }
  return out.length === 0 ? undefined : out.join("/");
}

/**
 * resolveScanDepend turns one SCAN_DEPENDS entry of the package at location into a
 * path relative to the tree root, or undefined when the entry is outside the tree.
 */
function resolveScanDepend(location: string, entry: string): string | undefined {
  if (entry.startsWith("/")) {
    // The scanning host's absolute path of the package directory tells where its
    // tree root was; without it the file is the host's, not the tree's.
    const marker = `/${location}/`;
    const at = entry.indexOf(marker);
    if (at < 0) return undefined;
    return normalizeTreePath(`${location}/${entry.slice(at + marker.length)}`);
  }
  return normalizeTreePath(`${location}/${entry}`);
}

/** True when location is "category/package": then "../../x" means "x" whatever the package. */
function isTwoLevel(location: string): boolean {
  const slash = location.indexOf("/");
  return slash > 0 && location.indexOf("/", slash + 1) < 0;
}

/**
 * buildScanDependsIndex indexes the SCAN_DEPENDS of every package (the
 * space-separated value, as in a scan record). A location may appear in more than
 * one record (MULTI_VERSION packages); it is listed once per file.
 *
 * Cost: one map insertion per entry. Nearly every entry is `../../<tree file>`,
 * shared by thousands of packages, so its resolution is computed once and cached.
 */
export function buildScanDependsIndex(
  packages: Iterable<{ readonly location: string; readonly scanDepends: string }>,
): ScanDependsIndex {
  const byFile = new Map<string, string[]>();
  // "../../x" -> resolved "x" (or null when it leaves the tree), valid for two-level locations.
  const upTwo = new Map<string, string | null>();

  for (const { location, scanDepends } of packages) {
    const twoLevel = isTwoLevel(location);
    for (const entry of scanDepends.split(" ")) {
      if (entry === "") continue;
      let file: string | undefined;
      if (twoLevel && entry.startsWith("../../")) {
        const cached = upTwo.get(entry);
        if (cached === undefined) {
          file = normalizeTreePath(entry.slice(6));
          upTwo.set(entry, file ?? null);
        } else {
          file = cached ?? undefined;
        }
      } else {
        file = resolveScanDepend(location, entry);
      }
      if (file === undefined) continue;
      const list = byFile.get(file);
      if (list === undefined) byFile.set(file, [location]);
      // Repeats within one record (and consecutive records of one location) stop
      // here; the rest are removed when the list is first asked for.
      else if (list[list.length - 1] !== location) list.push(location);
    }
  }

  // Sorting every list up front would cost more than the whole index; only the
  // few files that actually change are ever asked for.
  const finished = new Set<string>();
  return {
    locationsNeeding(treeFile: string): readonly string[] {
      const file = normalizeTreePath(treeFile);
      if (file === undefined) return NONE;
      const list = byFile.get(file);
      if (list === undefined) return NONE;
      if (!finished.has(file)) {
        const sorted = [...new Set(list)].sort();
        byFile.set(file, sorted);
        finished.add(file);
        return sorted;
      }
      return list;
    },
  };
}

/**
 * locationsToRescan maps changed tree files (as `git diff --name-only` prints them)
 * to the locations whose scan they may change: the location whose directory holds
 * the file, when it is a known location, and every location whose SCAN_DEPENDS
 * names the file.
 */
export function locationsToRescan(
  changedFiles: readonly string[],
  knownLocations: ReadonlySet<string>,
  index: ScanDependsIndex,
): RescanSet {
  const locations = new Set<string>();
  const ignored = new Set<string>();
  for (const changed of changedFiles) {
    const file = normalizeTreePath(changed);
    if (file === undefined) {
      ignored.add(changed);
      continue;
    }
    let affects = false;
    // "cat/pkg/<something>": a file inside a package directory. "cat/pkg" alone is
    // not a file of the package, and "cat/Makefile" is the category's.
    const first = file.indexOf("/");
    const second = first < 0 ? -1 : file.indexOf("/", first + 1);
    if (second > 0) {
      const dir = file.slice(0, second);
      if (knownLocations.has(dir)) {
        locations.add(dir);
        affects = true;
      }
    }
    for (const location of index.locationsNeeding(file)) {
      locations.add(location);
      affects = true;
    }
    if (!affects) ignored.add(changed);
  }
  return { locations: [...locations].sort(), ignored: [...ignored].sort() };
}
