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
const UP_TWO = "../../";

/**
 * normalizeTreePath resolves "." and ".." segments and empty segments of a path
 * relative to the tree root; undefined when it climbs out of the tree or names
 * nothing.
 */
function normalizeTreePath(path: string): string | undefined {
  // Nearly every path is already clean; only these can hold ".", ".." or "//".
  if (path !== "" && !path.startsWith(".") && !path.startsWith("/") && !path.endsWith("/") &&
      !path.includes("/.") && !path.includes("//")) {
    return path;
  }
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
    return resolveAgainst(location, entry.slice(at + marker.length));
  }
  return resolveAgainst(location, entry);
}

/** resolveAgainst resolves rel relative to the package directory location. */
function resolveAgainst(location: string, rel: string): string | undefined {
  if (rel.startsWith(UP_TWO) && isTwoLevel(location)) return normalizeTreePath(rel.slice(UP_TWO.length));
  return normalizeTreePath(`${location}/${rel}`);
}

/** True when location is "category/package": then "../../x" means "x" whatever the package. */
function isTwoLevel(location: string): boolean {
  const slash = location.indexOf("/");
  return slash > 0 && location.indexOf("/", slash + 1) < 0;
}

/**
 * Block is a run of SCAN_DEPENDS entries under one top-level directory, such as
 * "../../devel/gettext-lib/buildlink3.mk ../../devel/zlib/buildlink3.mk", with the
 * locations whose SCAN_DEPENDS contain exactly that run.
 */
interface Block {
  readonly locations: string[];
}

/**
 * buildScanDependsIndex indexes the SCAN_DEPENDS of every package (the
 * space-separated value, as in a scan record). A location may appear in more than
 * one record (MULTI_VERSION packages); it is listed once per file.
 *
 * Why blocks: a full pkgsrc scan has about 4.4 million entries (138 MB), and
 * splitting and hashing each one costs about a second. But pbulk writes the
 * entries sorted, so a package's "../../mk/..." or "../../x11/..." entries form
 * one run, and the same run recurs in thousands of packages (29,022 records have
 * under 9,000 distinct runs). So each run is looked up whole, tokenized only the
 * first time it is seen, and a file maps to the runs that contain it. Unsorted
 * input is still indexed exactly, only in smaller runs. Entries that depend on the
 * package directory ("Makefile", "options.mk", absolute paths) are resolved one
 * by one.
 */
export function buildScanDependsIndex(
  packages: Iterable<{ readonly location: string; readonly scanDepends: string }>,
): ScanDependsIndex {
  const blocks = new Map<string, Block>();
  const blocksByFile = new Map<string, Block[]>();
  // Files named by entries that depend on the package directory.
  const locationsByFile = new Map<string, string[]>();

  const addBlock = (run: string): Block => {
    const block: Block = { locations: [] };
    blocks.set(run, block);
    const files = new Set<string>();
    for (const entry of run.split(" ")) {
      const file = normalizeTreePath(entry.slice(UP_TWO.length));
      if (file !== undefined) files.add(file);
    }
    for (const file of files) {
      const list = blocksByFile.get(file);
      if (list === undefined) blocksByFile.set(file, [block]);
      else list.push(block);
    }
    return block;
  };
  const addLocal = (file: string, location: string): void => {
    const list = locationsByFile.get(file);
    if (list === undefined) locationsByFile.set(file, [location]);
    else if (list[list.length - 1] !== location) list.push(location);
  };

  for (const { location, scanDepends: s } of packages) {
    const twoLevel = isTwoLevel(location);
    const n = s.length;
    let pos = 0;
    while (pos < n) {
      if (s.charCodeAt(pos) === 0x20) {
        pos++;
        continue;
      }
      let end = s.indexOf(" ", pos);
      if (end < 0) end = n;
      if (!twoLevel || !s.startsWith(UP_TWO, pos)) {
        const file = resolveScanDepend(location, s.slice(pos, end));
        if (file !== undefined) addLocal(file, location);
        pos = end;
        continue;
      }
      // Extend the run over the following entries under the same "../../<top>/".
      const slash = s.indexOf("/", pos + UP_TWO.length);
      if (slash > 0 && slash < end) {
        const prefix = s.slice(pos, slash + 1);
        while (end < n && s.startsWith(prefix, end + 1)) {
          const next = s.indexOf(" ", end + 1);
          end = next < 0 ? n : next;
        }
      }
      const run = s.slice(pos, end);
      const block = blocks.get(run) ?? addBlock(run);
      // Consecutive records of one location (MULTI_VERSION) stop here; the rest
      // are removed when a file is asked for.
      if (block.locations[block.locations.length - 1] !== location) block.locations.push(location);
      pos = end;
    }
  }

  // Sorting up front would cost as much as the index; only the few files that
  // actually change are ever asked for.
  const answers = new Map<string, readonly string[]>();
  return {
    locationsNeeding(treeFile: string): readonly string[] {
      const file = normalizeTreePath(treeFile);
      if (file === undefined) return NONE;
      let answer = answers.get(file);
      if (answer === undefined) {
        const all = new Set<string>(locationsByFile.get(file));
        for (const block of blocksByFile.get(file) ?? []) {
          for (const location of block.locations) all.add(location);
        }
        answer = all.size === 0 ? NONE : Object.freeze([...all].sort());
        answers.set(file, answer);
      }
      return answer;
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

/** Locations changed since the full index was built, past which it is built again. */
const MAX_OVERLAY_LOCATIONS = 2_000;

/**
 * LiveScanDependsIndex keeps a ScanDependsIndex current as locations are
 * rescanned, without indexing the whole tree again for each change (about
 * half a second on a full scan). Changed locations go into a small overlay
 * that overrides what the full index says of them.
 */
export class LiveScanDependsIndex implements ScanDependsIndex {
  private base: ScanDependsIndex | undefined;
  // Built when asked, not per update: a rescan of thousands of locations
  // arrives as dozens of updates.
  private overlay: ScanDependsIndex | undefined;
  private readonly overlaid = new Map<string, readonly { location: string; scanDepends: string }[]>();

  /** all reads every package of the tree, for when the full index must be built. */
  constructor(private readonly all: () => Iterable<{ readonly location: string; readonly scanDepends: string }>) {}

  /** update takes the current records of locations that changed (none: the location was removed). */
  update(changed: ReadonlyMap<string, readonly { location: string; scanDepends: string }[]>): void {
    if (this.base === undefined) return;
    for (const [location, records] of changed) this.overlaid.set(location, records);
    this.overlay = undefined;
    if (this.overlaid.size > MAX_OVERLAY_LOCATIONS) {
      this.base = undefined;
      this.overlaid.clear();
    }
  }

  /** True when the next lookup would have to index the whole tree first. */
  get cold(): boolean {
    return this.base === undefined;
  }

  /** warm indexes the whole tree now, so the next lookup need not (about half a second on a full scan). */
  warm(): ScanDependsIndex {
    return (this.base ??= buildScanDependsIndex(this.all()));
  }

  locationsNeeding(treeFile: string): readonly string[] {
    const fromBase = this.warm().locationsNeeding(treeFile);
    if (this.overlaid.size === 0) return fromBase;
    this.overlay ??= buildScanDependsIndex([...this.overlaid.values()].flat());
    const merged = new Set(fromBase.filter((location) => !this.overlaid.has(location)));
    for (const location of this.overlay.locationsNeeding(treeFile)) merged.add(location);
    return [...merged].sort();
  }
}
