/**
 * Constraints are the operator's word on what packages need of a build
 * host, as OBS's _constraints files are, but for a whole tree in one small
 * file (depgraph --constraints FILE). One rule per line:
 *
 *   # PATTERN        needs...
 *   www/firefox      memory=16G disk=40G cpus=8 exclusive=heavy
 *   lang/rust*       memory=12G exclusive=heavy
 *   *-webkit*        label:arch=fast
 *
 * PATTERN is a glob (`*` any characters, `?` one) matched against the
 * package's location, its PKGNAME and its PKGBASE (PKGNAME without the
 * version). Needs: memory=SIZE, disk=SIZE (K, M, G, T: binary units; a
 * bare number is bytes), cpus=N, exclusive=CLASS (at most one job of the
 * class per agent at a time), label:KEY=VALUE (the agent must have it).
 * Every rule that matches applies, later lines overriding earlier ones key
 * by key, as in mk.conf.
 */

import { parseSize } from "../../shared/sizes.js";

/** ConstraintNeeds is what one rule sets; an absent key leaves the need to earlier rules or to what was learnt. */
export interface ConstraintNeeds {
  readonly memoryBytes?: number;
  readonly diskBytes?: number;
  readonly cpus?: number;
  readonly exclusive?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** ConstraintRule is one line of a constraints file. */
export interface ConstraintRule {
  readonly pattern: string;
  readonly line: number;
  readonly needs: ConstraintNeeds;
  readonly matcher: RegExp;
}

/** InvalidConstraint is a line of a constraints file that does not parse. */
export class InvalidConstraint extends Error {
  override readonly name = "InvalidConstraint";
  constructor(readonly line: number, message: string) {
    super(`constraints line ${line}: ${message}`);
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** parseConstraints reads a constraints file; every bad line is one error, and no rule is taken from a file with any. */
export function parseConstraints(text: string): { rules: ConstraintRule[]; errors: InvalidConstraint[] } {
  const rules: ConstraintRule[] = [];
  const errors: InvalidConstraint[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = i + 1;
    const words = raw.replace(/#.*/, "").trim().split(/\s+/).filter((w) => w !== "");
    if (words.length === 0) return;
    const [pattern, ...settings] = words as [string, ...string[]];
    if (settings.length === 0) {
      errors.push(new InvalidConstraint(line, `"${pattern}" sets nothing: add needs such as memory=16G disk=40G cpus=8 exclusive=heavy`));
      return;
    }
    const needs: { memoryBytes?: number; diskBytes?: number; cpus?: number; exclusive?: string; labels?: Record<string, string> } = {};
    for (const setting of settings) {
      const eq = setting.indexOf("=");
      const key = eq < 0 ? setting : setting.slice(0, eq);
      const value = eq < 0 ? "" : setting.slice(eq + 1);
      const bad = (why: string) => errors.push(new InvalidConstraint(line, `${setting}: ${why}`));
      if (eq < 0 || value === "") {
        bad("expected KEY=VALUE (memory=, disk=, cpus=, exclusive=, label:KEY=)");
      } else if (key === "memory" || key === "disk") {
        const size = parseSize(value);
        if (size === undefined || size <= 0) bad(`${key} must be a size such as 16G, 512M or 40GiB`);
        else if (key === "memory") needs.memoryBytes = size;
        else needs.diskBytes = size;
      } else if (key === "cpus") {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 1 || n > 4096) bad("cpus must be a whole number from 1 to 4096");
        else needs.cpus = n;
      } else if (key === "exclusive") {
        if (!NAME.test(value)) bad("exclusive must be a class name of letters, digits, '.', '_' or '-'");
        else needs.exclusive = value;
      } else if (key.startsWith("label:") && NAME.test(key.slice(6))) {
        needs.labels = { ...needs.labels, [key.slice(6)]: value };
      } else {
        bad(`unknown need "${key}": use memory=, disk=, cpus=, exclusive= or label:KEY=`);
      }
    }
    rules.push({ pattern, line, needs, matcher: globToRegExp(pattern) });
  });
  return errors.length > 0 ? { rules: [], errors } : { rules, errors };
}

/** The rules that apply to a package, in file order. */
export function matchingRules(rules: readonly ConstraintRule[], pkgname: string, location: string): ConstraintRule[] {
  const pkgbase = pkgname.replace(/-[^-]*$/, "");
  return rules.filter((r) => r.matcher.test(location) || r.matcher.test(pkgname) || r.matcher.test(pkgbase));
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}
