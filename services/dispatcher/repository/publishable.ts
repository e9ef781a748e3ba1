/**
 * Which built packages may be published. pbulk leaves out of the upload every
 * package whose scan has a non-empty NO_BIN_ON_FTP, and everything that
 * depends on one, directly or not (scripts/compute-packages.awk,
 * mark_restricted over the reverse DEPENDS). RESTRICTED is treated the same:
 * pkgsrc sets NO_BIN_ON_FTP for restricted packages by convention, and one
 * that forgot must not end up on a mirror either.
 */

/** PublishCandidate is what the choice needs to know of one package of the build. */
export interface PublishCandidate {
  readonly pkgname: string;
  /** The resolved dependencies (PKGNAMEs), as the scan's DEPENDS. */
  readonly dependencies: readonly string[];
  /** The package's other scan variables; NO_BIN_ON_FTP and RESTRICTED are read. */
  readonly scanVars: Readonly<Record<string, string>> | ReadonlyMap<string, string>;
}

/** Withheld is a built package left out, with the reason shown to operators. */
export interface Withheld {
  readonly pkgname: string;
  /** "NO_BIN_ON_FTP: <value>", "RESTRICTED: <value>" or "depends on withheld <pkgname>". */
  readonly reason: string;
}

export interface PublishSelection {
  /** Built packages to publish, sorted by PKGNAME (bytewise). */
  readonly publish: readonly string[];
  /** Built packages left out, sorted by PKGNAME. */
  readonly withheld: readonly Withheld[];
}

/**
 * selectPublishable picks, from the packages built (`built`), those that may
 * be published. A built package the candidates do not describe is published:
 * nothing says it is restricted.
 */
export function selectPublishable(candidates: Iterable<PublishCandidate>, built: Iterable<string>): PublishSelection {
  const dependents = new Map<string, string[]>();
  const reasons = new Map<string, string>();
  const roots: string[] = [];
  for (const c of candidates) {
    for (const dep of c.dependencies) {
      let list = dependents.get(dep);
      if (list === undefined) dependents.set(dep, (list = []));
      list.push(c.pkgname);
    }
    const own = restriction(c.scanVars);
    if (own !== undefined && !reasons.has(c.pkgname)) {
      reasons.set(c.pkgname, own);
      roots.push(c.pkgname);
    }
  }
  // Breadth first, so a package reached from two withheld ones names the nearer.
  const queue = [...roots];
  for (let i = 0; i < queue.length; i++) {
    const from = queue[i]!;
    for (const up of dependents.get(from) ?? []) {
      if (reasons.has(up)) continue;
      reasons.set(up, `depends on withheld ${from}`);
      queue.push(up);
    }
  }
  const publish: string[] = [];
  const withheld: Withheld[] = [];
  for (const pkgname of new Set(built)) {
    const reason = reasons.get(pkgname);
    if (reason === undefined) publish.push(pkgname);
    else withheld.push({ pkgname, reason });
  }
  publish.sort(bytewise);
  withheld.sort((a, b) => bytewise(a.pkgname, b.pkgname));
  return { publish, withheld };
}

function restriction(vars: PublishCandidate["scanVars"]): string | undefined {
  const get = (name: string) => (vars instanceof Map ? vars.get(name) : (vars as Readonly<Record<string, string>>)[name]);
  for (const name of ["NO_BIN_ON_FTP", "RESTRICTED"]) {
    const value = get(name)?.trim();
    if (value !== undefined && value !== "") return `${name}: ${value}`;
  }
  return undefined;
}

/** Byte order, as sort(1) in the C locale: what pbulk's file lists come out in. */
export function bytewise(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
