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
}

export interface ScanOutcome {
  readonly records: ScanRecord[];
  readonly problems: InvalidScanRecord[];
}

/** runScanHelper scans the locations (each once), in parallel up to the configured concurrency. */
export async function runScanHelper(options: ScanHelperOptions, locations: readonly string[], signal?: AbortSignal): Promise<ScanOutcome> {
  const records: ScanRecord[] = [];
  const problems: InvalidScanRecord[] = [];
  const queue = [...new Set(locations)];
  const worker = async (): Promise<void> => {
    for (let location = queue.shift(); location !== undefined; location = queue.shift()) {
      const outcome = await scanOne(options, location, signal);
      records.push(...outcome.records);
      problems.push(...outcome.problems);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));
  return { records, problems };
}

function scanOne(options: ScanHelperOptions, location: string, signal?: AbortSignal): Promise<ScanOutcome> {
  const [file, ...args] = options.command;
  return new Promise((resolve) => {
    if (file === undefined) {
      resolve({ records: [], problems: [new InvalidScanRecord(0, location, "", "no scan helper is configured (--scan-helper)")] });
      return;
    }
    execFile(
      file,
      [...args, location],
      {
        cwd: options.treeDir,
        env: { ...process.env, PKGFARM_LOCATION: location, PKGFARM_TREE: options.treeDir },
        timeout: options.timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
        ...(signal === undefined ? {} : { signal }),
      },
      (error, stdout, stderr) => {
        if (error !== null) {
          const detail = stderr.trim().split("\n").slice(-3).join(" / ") || error.message;
          resolve({ records: [], problems: [new InvalidScanRecord(0, location, "", `scan helper failed: ${detail}`)] });
          return;
        }
        const records: ScanRecord[] = [];
        const problems: InvalidScanRecord[] = [];
        const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
        parser.push(stdout);
        parser.end();
        for (const r of records) {
          if (r.location !== location) {
            problems.push(new InvalidScanRecord(r.line, location, r.pkgname, `scan of ${location} printed a record for ${r.location}`));
          }
        }
        resolve({ records: records.filter((r) => r.location === location), problems });
      },
    );
  });
}
