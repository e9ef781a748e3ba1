import { execFile } from "node:child_process";
import { InvalidScanRecord } from "./core/errors.js";
import { createScanRecordParser, type ScanRecord } from "./core/scan-record.js";

/** ScanHelperOptions configures the command that prints pbulk-index records for one location. */
export interface ScanHelperOptions {
  /**
   * argv of the helper; the location is appended as the last argument and
   * also given as PKGFARM_LOCATION. Never run through a shell, so a location
   * cannot inject anything. Example: ["/usr/pkgsrc/mk/pbulk/scan-one", "--tree", "/usr/pkgsrc"].
   */
  readonly command: readonly string[];
  /** Root of the package tree, given to the helper as PKGFARM_TREE and as its working directory. */
  readonly treeDir: string;
  readonly timeoutMs: number;
  /** Helpers run at once. */
  readonly concurrency: number;
  /**
   * Locations given to one run of the helper (default 1, as pbulk's scan
   * runs one bmake per location). A helper that can scan many at once (one
   * that reads a prepared scan, or a pbulk client) saves a process per
   * location; PKGFARM_LOCATION is then unset.
   */
  readonly batchSize?: number;
}

/** The search path a helper gets when depgraph itself has none. */
const DEFAULT_PATH = "/usr/bin:/bin:/usr/sbin:/sbin";

/**
 * scanHelperEnv is the whole environment a scan helper runs with. The
 * helper runs Makefiles from the tree (`bmake pbulk-index`), so it gets what
 * a scan needs and nothing else: never depgraph's secrets (the operator
 * token, TLS keys) or settings. LC_ALL=C unless depgraph's own LC_ALL says
 * otherwise, so a scan prints the same on every host.
 */
export function scanHelperEnv(parent: NodeJS.ProcessEnv, treeDir: string, locations: readonly string[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: parent["PATH"] || DEFAULT_PATH,
    LC_ALL: parent["LC_ALL"] || "C",
    TMPDIR: parent["TMPDIR"] || "/tmp",
    PKGFARM_TREE: treeDir,
  };
  if (parent["HOME"]) env["HOME"] = parent["HOME"];
  if (locations.length === 1) env["PKGFARM_LOCATION"] = locations[0];
  return env;
}

export interface ScanOutcome {
  readonly records: ScanRecord[];
  readonly problems: InvalidScanRecord[];
}

/** runScanHelper scans the locations (each once), in parallel up to the configured concurrency. */
export async function runScanHelper(options: ScanHelperOptions, locations: readonly string[], signal?: AbortSignal): Promise<ScanOutcome> {
  const records: ScanRecord[] = [];
  const problems: InvalidScanRecord[] = [];
  const unique = [...new Set(locations)];
  const size = Math.max(1, options.batchSize ?? 1);
  const queue: string[][] = [];
  for (let i = 0; i < unique.length; i += size) queue.push(unique.slice(i, i + size));
  const worker = async (): Promise<void> => {
    for (let batch = queue.shift(); batch !== undefined; batch = queue.shift()) {
      const outcome = await scanBatch(options, batch, signal);
      records.push(...outcome.records);
      problems.push(...outcome.problems);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));
  return { records, problems };
}

function scanBatch(options: ScanHelperOptions, locations: readonly string[], signal?: AbortSignal): Promise<ScanOutcome> {
  const [file, ...args] = options.command;
  const failAll = (why: string): ScanOutcome => ({ records: [], problems: locations.map((location) => new InvalidScanRecord(0, location, "", why)) });
  const asked = new Set(locations);
  const where = locations.length === 1 ? locations[0]! : `${locations[0]} and ${locations.length - 1} more`;
  return new Promise((resolve) => {
    if (file === undefined) {
      resolve(failAll("no scan helper is configured (--scan-helper)"));
      return;
    }
    const env = scanHelperEnv(process.env, options.treeDir, locations);
    execFile(
      file,
      [...args, ...locations],
      {
        cwd: options.treeDir,
        env,
        timeout: options.timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
        ...(signal === undefined ? {} : { signal }),
      },
      (error, stdout, stderr) => {
        if (error !== null) {
          const detail = stderr.trim().split("\n").slice(-3).join(" / ") || error.message;
          resolve(failAll(`scan helper failed: ${detail}`));
          return;
        }
        const records: ScanRecord[] = [];
        const problems: InvalidScanRecord[] = [];
        const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
        parser.push(stdout);
        parser.end();
        for (const r of records) {
          if (!asked.has(r.location)) {
            problems.push(new InvalidScanRecord(r.line, where, r.pkgname, `scan of ${where} printed a record for ${r.location}`));
          }
        }
        resolve({ records: records.filter((r) => asked.has(r.location)), problems });
      },
    );
  });
}
