/**
 * ResourceBook knows what each package needs of a build host: what the
 * operator's constraints file says, and else what its earlier builds were
 * measured to use (peak memory, work-directory disk), kept per PKGNAME and
 * per location like the duration history, so a new version of a package is
 * expected to need what the old one did. It also keeps, per platform, the
 * agents the dispatcher last said it has, so a waiting job can be told why
 * it runs nowhere. Pure: no I/O, time passed in.
 */

import { NO_NEEDS, type Host, type Needs } from "../../shared/placement.js";
import { matchingRules, type ConstraintRule } from "./constraints.js";

/** NeedsWithOrigin is a package's needs and, for people, where each came from. */
export interface NeedsWithOrigin {
  readonly needs: Needs;
  /** e.g. "memory: constraints line 3 (www/firefox); disk: learnt from the last build"; "" when there are no needs. */
  readonly origin: string;
}

/** LearntPeak is what one package's builds were measured to use. */
export interface LearntPeak {
  readonly memoryBytes: number;
  readonly diskBytes: number;
}

/** How long an agent list from the dispatcher counts as the platform's agents (as long as a platform counts as served). */
export const FARM_VIEW_MS = 120_000;

export interface ResourceBook {
  needsOf(pkgname: string, location: string): NeedsWithOrigin;
  /**
   * Takes a build's measured peaks (0: not measured). A success replaces
   * what was learnt; a failure only raises it, since a build that failed
   * (say, out of memory) used at least that much.
   */
  record(pkgname: string, location: string, peak: LearntPeak, succeeded: boolean): void;
  /** What was learnt for a PKGNAME, for a store to keep. */
  learnt(pkgname: string): LearntPeak | undefined;
  /** The dispatcher's agents of a platform, as it sent them with NextReadyJob. */
  noteAgents(platform: string, hosts: readonly Host[], now: number): void;
  /** The platform's agents as last sent, unless that was more than FARM_VIEW_MS ago. */
  agentsOf(platform: string, now: number): readonly Host[] | undefined;
}

export function createResourceBook(rules: readonly ConstraintRule[] = []): ResourceBook {
  const byPkgname = new Map<string, LearntPeak>();
  const byLocation = new Map<string, LearntPeak>();
  const farms = new Map<string, { hosts: readonly Host[]; at: number }>();

  const learntFor = (pkgname: string, location: string): { peak: LearntPeak; how: string } | undefined => {
    const own = byPkgname.get(pkgname);
    if (own !== undefined) return { peak: own, how: "learnt from its last build" };
    const other = byLocation.get(location);
    return other === undefined ? undefined : { peak: other, how: `learnt from the last build at ${location}` };
  };

  return {
    needsOf(pkgname, location) {
      const applying = matchingRules(rules, pkgname, location);
      const learnt = learntFor(pkgname, location);
      let memoryBytes = learnt?.peak.memoryBytes ?? 0;
      let diskBytes = learnt?.peak.diskBytes ?? 0;
      let cpus = 0;
      let exclusive = "";
      let labels: Record<string, string> = {};
      const from = new Map<string, string>();
      if (memoryBytes > 0) from.set("memory", learnt!.how);
      if (diskBytes > 0) from.set("disk", learnt!.how);
      for (const rule of applying) {
        const where = `constraints line ${rule.line} (${rule.pattern})`;
        const n = rule.needs;
        if (n.memoryBytes !== undefined) {
          memoryBytes = n.memoryBytes;
          from.set("memory", where);
        }
        if (n.diskBytes !== undefined) {
          diskBytes = n.diskBytes;
          from.set("disk", where);
        }
        if (n.cpus !== undefined) {
          cpus = n.cpus;
          from.set("cpus", where);
        }
        if (n.exclusive !== undefined) {
          exclusive = n.exclusive;
          from.set("exclusive", where);
        }
        if (n.labels !== undefined) {
          labels = { ...labels, ...n.labels };
          from.set("labels", where);
        }
      }
      if (from.size === 0) return { needs: NO_NEEDS, origin: "" };
      return { needs: { memoryBytes, diskBytes, cpus, exclusive, labels }, origin: [...from].map(([k, v]) => `${k}: ${v}`).join("; ") };
    },
    record(pkgname, location, peak, succeeded) {
      if (peak.memoryBytes <= 0 && peak.diskBytes <= 0) return;
      const before = byPkgname.get(pkgname);
      const next = succeeded || before === undefined ? { memoryBytes: peak.memoryBytes, diskBytes: peak.diskBytes }
        : { memoryBytes: Math.max(before.memoryBytes, peak.memoryBytes), diskBytes: Math.max(before.diskBytes, peak.diskBytes) };
      byPkgname.set(pkgname, next);
      byLocation.set(location, next);
    },
    learnt: (pkgname) => byPkgname.get(pkgname),
    noteAgents(platform, hosts, now) {
      farms.set(platform, { hosts, at: now });
    },
    agentsOf(platform, now) {
      const farm = farms.get(platform);
      return farm === undefined || now - farm.at > FARM_VIEW_MS ? undefined : farm.hosts;
    },
  };
}
