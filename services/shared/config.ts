import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * ConfigReader reads one service's flags (which win) and PKGFARM_* variables,
 * collecting every problem so an operator fixes a deployment in one go.
 */
export interface ConfigReader {
  readonly errors: string[];
  string(flag: string, envName: string, fallback: string): string;
  int(flag: string, envName: string, fallback: number, min: number, max: number): number;
  /** Like int, for a setting that is off unless given: undefined when neither flag nor variable is set (or it is empty). */
  optionalInt(flag: string, envName: string, min: number, max: number): number | undefined;
  oneOf<T extends string>(flag: string, envName: string, fallback: T, allowed: readonly T[]): T;
  /** A command as a JSON argv array or a plain string split on spaces; never a shell string. */
  argv(flag: string, envName: string, fallback: readonly string[]): string[];
  /** The contents of the file a flag (or variable) names; undefined when neither is set. */
  file(flag: string, envName: string): Buffer | undefined;
  /**
   * A secret from the variable envName, or from the file its envName_FILE
   * names (as Kubernetes mounts a Secret); "" when neither is set. Never a
   * flag: command lines are visible to every user of the host.
   */
  secret(envName: string): string;
}

/** Shortest secret accepted: a guessable token is no token. */
export const MIN_SECRET_LENGTH = 16;

export function readConfig(argv: readonly string[], env: NodeJS.ProcessEnv, flags: readonly string[]): ConfigReader {
  const errors: string[] = [];
  let values: Record<string, string | undefined> = {};
  try {
    values = parseArgs({
      args: [...argv],
      options: Object.fromEntries(flags.map((f) => [f, { type: "string" as const }])),
      strict: true,
      allowPositionals: false,
    }).values as Record<string, string | undefined>;
  } catch (e) {
    errors.push((e as Error).message);
  }
  const pick = (flag: string, envName: string, fallback: string) => values[flag] ?? env[envName] ?? fallback;
  return {
    errors,
    string: pick,
    int(flag, envName, fallback, min, max) {
      const raw = pick(flag, envName, String(fallback));
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
        errors.push(`--${flag} (${envName}) must be a whole number from ${min} to ${max}, not "${raw}"`);
        return fallback;
      }
      return n;
    },
    optionalInt(flag, envName, min, max) {
      const raw = values[flag] ?? env[envName];
      if (raw === undefined || raw.trim() === "") return undefined;
      const n = Number(raw);
      if (!Number.isInteger(n) || n < min || n > max) {
        errors.push(`--${flag} (${envName}) must be a whole number from ${min} to ${max}, not "${raw}"`);
        return undefined;
      }
      return n;
    },
    oneOf(flag, envName, fallback, allowed) {
      const raw = pick(flag, envName, fallback);
      if (!(allowed as readonly string[]).includes(raw)) {
        errors.push(`--${flag} (${envName}) must be one of ${allowed.join(", ")}, not "${raw}"`);
        return fallback;
      }
      return raw as typeof fallback;
    },
    argv(flag, envName, fallback) {
      const raw = values[flag] ?? env[envName];
      if (raw === undefined || raw.trim() === "") return [...fallback];
      try {
        const parsed: unknown = raw.trim().startsWith("[") ? JSON.parse(raw) : raw.trim().split(/\s+/);
        if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((a) => typeof a === "string")) throw new Error("not a non-empty array of strings");
        return parsed as string[];
      } catch (e) {
        errors.push(`--${flag} (${envName}) must be a command or a JSON array of strings: ${(e as Error).message}`);
        return [...fallback];
      }
    },
    file(flag, envName) {
      const path = values[flag] ?? env[envName];
      if (path === undefined || path === "") return undefined;
      try {
        return readFileSync(path);
      } catch (e) {
        errors.push(`--${flag} (${envName}): cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        return undefined;
      }
    },
    secret(envName) {
      const fileVar = `${envName}_FILE`;
      const direct = env[envName];
      const path = env[fileVar];
      if (direct !== undefined && direct !== "" && path !== undefined && path !== "") {
        errors.push(`set ${envName} or ${fileVar}, not both`);
        return "";
      }
      let value: string;
      let source: string;
      if (path !== undefined && path !== "") {
        source = `${fileVar} (${path})`;
        try {
          value = readFileSync(path, "utf8").trim();
        } catch (e) {
          errors.push(`${fileVar}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
          return "";
        }
      } else if (direct !== undefined && direct !== "") {
        source = envName;
        value = direct.trim();
      } else {
        return "";
      }
      if (value.length < MIN_SECRET_LENGTH || /\s/.test(value)) {
        errors.push(`${source} must be at least ${MIN_SECRET_LENGTH} characters without white space (e.g. openssl rand -hex 32)`);
        return "";
      }
      return value;
    },
  };
}
