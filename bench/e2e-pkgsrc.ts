// e2e:pkgsrc: `pkgfarm up --executor pkgsrc` over the whole limited list of
// ../shared/pkgsrc (92 packages), with 1 slot and then with 2 (fresh data
// directories each), each package's final state and failing phase compared
// with what pbulk did on this machine (expected/outcomes.tsv). Prints one
// JSON object: outcomesEqual, outcomesTotal, mismatches, wall seconds per
// slot count, and pbulk's wall time for the same list: measured in the same
// run with --pbulk (pbulk installed in /usr/pbulk as ../shared/pkgsrc/README.md
// says; bench/pbulk/bulkbuild.sh runs it before each pkgfarm run, so the
// ratios pair runs made minutes apart), else the README's 15 min 17 s.
//
//   npm run e2e:pkgsrc [-- --slots 1,2] [-- --keep] [-- --pbulk]
//
// It runs the CLI as an operator would (a child process), so what it
// measures includes the closure scan, every build and the repository.

import { execFileSync, spawn } from "node:child_process";
import { chmodSync, createWriteStream, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BOOTSTRAP_KIT, EXPECTED_DIR, LIMITED_LIST, pkgsrcTree, pkgsrcUnavailable } from "../test/support/pkgsrc.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist", "services", "cli", "main.js");
/** pbulk 0.51's bulkbuild of the same list on this machine, one slot (../shared/pkgsrc/README.md). */
const PBULK_SECONDS = 917;
const PBULK_SCRIPT = join(ROOT, "bench", "pbulk", "bulkbuild.sh");
/** A run longer than this is stuck, not slow (pbulk took 15 min). */
const RUN_TIMEOUT_MS = 90 * 60_000;

interface Outcome {
  readonly state: string;
  readonly phase: string;
}

interface Mismatch {
  readonly slots: number;
  readonly pkgname: string;
  readonly expected: Outcome | null;
  readonly actual: Outcome | null;
  readonly reason?: string;
}

/** Rows of a TSV with a header line, as objects keyed by the header. */
function readTsv(path: string): Array<Record<string, string>> {
  const [header, ...lines] = readFileSync(path, "utf8").split("\n").filter((l) => l !== "");
  const names = header!.split("\t");
  return lines.map((line) => {
    const cells = line.split("\t");
    return Object.fromEntries(names.map((n, i) => [n, cells[i] ?? ""]));
  });
}

/** Runs `pkgfarm up` once; its output goes to <dataDir>/up.out. Resolves with the wall time and the jobs file it named. */
async function runUp(tree: string, slots: number, dataDir: string): Promise<{ seconds: number; jobsFile: string; code: number }> {
  const args = [CLI, "up", "--tree", tree, "--executor", "pkgsrc", "--bootstrap-kit", BOOTSTRAP_KIT, "--limit", LIMITED_LIST,
    "--agents", "1", "--slots", String(slots), "--data-dir", dataDir];
  const output = createWriteStream(join(dataDir, "up.out"));
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    output.write(chunk);
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output.write(chunk);
    process.stderr.write(chunk);
  });
  const timer = setTimeout(() => child.kill("SIGTERM"), RUN_TIMEOUT_MS);
  const code = await new Promise<number>((done) => child.on("close", (c) => done(c ?? 1)));
  clearTimeout(timer);
  output.end();
  const seconds = (performance.now() - t0) / 1000;
  const jobsFile = /^jobs: (.+)$/m.exec(stdout)?.[1] ?? "";
  return { seconds, jobsFile, code };
}

function compare(slots: number, expectedRows: ReadonlyArray<Record<string, string>>, jobsFile: string): Mismatch[] {
  const actual = new Map(readTsv(jobsFile).map((r) => [r["pkgname"]!, r]));
  const mismatches: Mismatch[] = [];
  for (const row of expectedRows) {
    const pkgname = row["pkgname"]!;
    const expected = { state: row["pkgfarm_state"]!, phase: row["failed_phase"] ?? "" };
    const got = actual.get(pkgname);
    actual.delete(pkgname);
    if (got === undefined) {
      mismatches.push({ slots, pkgname, expected, actual: null });
      continue;
    }
    const outcome = { state: got["state"]!, phase: got["failed_phase"] ?? "" };
    if (outcome.state !== expected.state || outcome.phase !== expected.phase) {
      mismatches.push({ slots, pkgname, expected, actual: outcome, reason: got["reason"] ?? "" });
    }
  }
  for (const [pkgname, got] of actual) mismatches.push({ slots, pkgname, expected: null, actual: { state: got["state"]!, phase: got["failed_phase"] ?? "" } });
  return mismatches;
}

async function main(): Promise<void> {
  const why = pkgsrcUnavailable();
  if (why !== undefined) throw new Error(why);
  const { values } = parseArgs({ options: { slots: { type: "string", default: "1,2" }, keep: { type: "boolean", default: false }, pbulk: { type: "boolean", default: false } } });
  const slotCounts = values.slots!.split(",").map(Number);
  if (slotCounts.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) throw new Error(`--slots must be whole numbers from 1 to 64 separated by commas, not "${values.slots}"`);
  const tree = pkgsrcTree();
  const expectedRows = readTsv(join(EXPECTED_DIR, "outcomes.tsv"));
  const mismatches: Mismatch[] = [];
  const wallSeconds: Record<string, number> = {};
  const exitCodes: Record<string, number> = {};
  const dataDirs: Record<string, string> = {};
  const pbulkRuns: number[] = [];
  const ratios: Record<string, number> = {};
  for (const slots of slotCounts) {
    if (values.pbulk) {
      process.stderr.write(`e2e:pkgsrc: pbulk's bulkbuild before the ${slots}-slot run\n`);
      const pbulkRun = `/var/tmp/pkgfarm-e2e-pbulk-${slots}`;
      const out = execFileSync("bash", [PBULK_SCRIPT, tree, pbulkRun], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
      const seconds = +(JSON.parse(out.trim().split("\n").pop()!) as { pbulkSeconds: number }).pbulkSeconds.toFixed(1);
      pbulkRuns.push(seconds);
      wallSeconds[`pbulkBefore${slots}`] = seconds;
    }
    const dataDir = mkdtempSync(`/var/tmp/pkgfarm-e2e-${slots}slot-`);
    chmodSync(dataDir, 0o755);
    process.stderr.write(`e2e:pkgsrc: ${slots} slot(s), data in ${dataDir}\n`);
    try {
      const run = await runUp(tree, slots, dataDir);
      wallSeconds[`slots${slots}`] = +run.seconds.toFixed(1);
      if (values.pbulk) ratios[`slots${slots}OverPbulk`] = +(run.seconds / pbulkRuns.at(-1)!).toFixed(3);
      exitCodes[`slots${slots}`] = run.code;
      if (run.jobsFile === "") mismatches.push({ slots, pkgname: "*", expected: null, actual: null, reason: `pkgfarm up exited ${run.code} without a jobs file; see ${join(dataDir, "up.out")}` });
      else mismatches.push(...compare(slots, expectedRows, run.jobsFile));
    } finally {
      if (values.keep) dataDirs[`slots${slots}`] = dataDir;
      else rmSync(dataDir, { recursive: true, force: true });
    }
  }
  process.stdout.write(`${JSON.stringify({
    outcomesEqual: mismatches.length === 0,
    outcomesTotal: expectedRows.length,
    mismatches,
    wallSeconds,
    pbulkSeconds: values.pbulk ? pbulkRuns : PBULK_SECONDS,
    ...(values.pbulk ? { ratios } : {}),
    exitCodes,
    ...(values.keep ? { dataDirs } : {}),
  })}\n`);
}

await main();
