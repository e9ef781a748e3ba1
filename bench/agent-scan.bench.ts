// node dist/bench/agent-scan.bench.js [N [ROUNDS]] — prints one JSON object: what the
// agent's built-in pkgsrc scan costs beyond `bmake pbulk-index` itself, on
// the real tree with real bmake (../shared/pkgsrc), one slot.
//
//   direct:       N locations, `bmake -C LOC pbulk-index` in a shell loop,
//                 all inside one namespace sandbox (the floor)
//   scanLocations: the same N through scanLocations (one sandbox, the driver
//                 script, framing, PKG_LOCATION), concurrency 1
//   perLocation:  the same N with a fresh sandbox per location (what the
//                 driver avoids)
//   machinery:    a stand-in bmake printing a real record at once, 300
//                 locations: what the driver, pipes and parsing cost per location
//   sandboxSetup: a sandbox running /bin/true vs a plain spawn of /bin/true
// Rounds alternate the order of the modes so drift in the machine's load hits all alike.

import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { scanLocations, type PkgsrcHost } from "../services/builder-agent/pkgsrc/scan.js";
import { resetPrefix, sandboxCommand, slotDirs } from "../services/builder-agent/sandbox.js";
import { BOOTSTRAP_KIT, limitedList, pkgsrcTree, pkgsrcUnavailable } from "../test/support/pkgsrc.js";

const ROUNDS = Number(process.argv[3] ?? 3);
const SETUP_RUNS = 20;
const FAKE_LOCATIONS = 300;

function phase(what: string): void {
  process.stderr.write(`[${new Date().toISOString()}] ${what}\n`);
}

function run(argv: readonly string[], onStderr?: (text: string) => void): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], env: { PATH: "/usr/pkg/bin:/usr/sbin:/usr/bin:/sbin:/bin" } });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    child.once("error", reject);
    child.once("close", (code) => {
      onStderr?.(stderr);
      resolve(code);
    });
  });
}

// dash's `times`: "0m0.01s 0m0.00s\n0m9.87s 0m1.23s" (shell, then children: user system).
function childrenCpuMs(timesOutput: string): number {
  const line = timesOutput.trim().split("\n").at(-1) ?? "";
  return line.split(/\s+/).reduce((sum, t) => {
    const m = /^(\d+)m([\d.]+)s$/.exec(t);
    return m === null ? sum : sum + (Number(m[1]) * 60 + Number(m[2])) * 1000;
  }, 0);
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round = (x: number, digits = 1): number => Number(x.toFixed(digits));

async function main(): Promise<void> {
  const unavailable = pkgsrcUnavailable();
  if (unavailable !== undefined) {
    process.stdout.write(`${JSON.stringify({ skipped: unavailable })}\n`);
    return;
  }
  const n = Number(process.argv[2] ?? 24);
  const tree = pkgsrcTree();
  const work = mkdtempSync(join("/var/tmp", "pkgfarm-agent-scan-bench-"));
  try {
    const prefix = slotDirs(work, 0).prefix;
    const resetMs: number[] = [];
    for (let i = 0; i < 5; i++) resetMs.push(await timed(() => resetPrefix(prefix, BOOTSTRAP_KIT)));
    mkdirSync("/usr/pkg", { recursive: true });
    const binds = [{ source: prefix, target: "/usr/pkg" }];
    const host: PkgsrcHost = { treeDir: tree, bmake: "/usr/pkg/bin/bmake", sandbox: "namespace", binds, timeoutMs: 300_000 };
    const locations = limitedList().slice(0, n);
    const loop = 'tree=$1 make=$2; shift 2; for loc; do "$make" -C "$tree/$loc" pbulk-index >/dev/null 2>&1 </dev/null; done; times >&2';
    const bmakeCpuMs: number[] = [];
    const direct = (): Promise<unknown> => run(sandboxCommand("namespace", { binds }, ["/bin/sh", "-c", loop, "loop", tree, host.bmake, ...locations]),
      (stderr) => bmakeCpuMs.push(childrenCpuMs(stderr)));
    let failures = 0;
    const nodeCpuMs: number[] = [];
    const viaScan = async (): Promise<unknown> => {
      const cpu = process.cpuUsage();
      const scans = await scanLocations(host, locations);
      const used = process.cpuUsage(cpu);
      nodeCpuMs.push((used.user + used.system) / 1000);
      failures = scans.filter((s) => s.error !== "").length;
      return scans;
    };
    const perLocation = async (): Promise<unknown> => {
      for (const loc of locations) await run(sandboxCommand("namespace", { binds }, [host.bmake, "-C", `${tree}/${loc}`, "pbulk-index"]));
      return undefined;
    };
    phase(`warming up (${locations.length} locations)`);
    await direct();
    const times = { direct: [] as number[], scanLocations: [] as number[], perLocation: [] as number[] };
    const modes: [keyof typeof times, () => Promise<unknown>][] = [["direct", direct], ["scanLocations", viaScan], ["perLocation", perLocation]];
    for (let r = 0; r < ROUNDS; r++) {
      // Odd rounds run the modes in reverse, so a trend in the load favours none.
      for (const [name, f] of r % 2 === 0 ? modes : [...modes].reverse()) {
        phase(`round ${r + 1}: ${name}`);
        times[name].push(await timed(f));
      }
    }
    phase("sandbox setup");
    const sandboxed: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < SETUP_RUNS; i++) {
      sandboxed.push(await timed(() => run(sandboxCommand("namespace", { binds }, ["/bin/true"]))));
      plain.push(await timed(() => run(["/bin/true"])));
    }
    // The machinery alone: a stand-in bmake that prints a real record (pkglint's,
    // 4 KB) at once, so nothing but the driver, the pipes and the agent's
    // parsing is timed, over many locations, beside the same stand-in in a loop.
    phase("machinery (stand-in bmake)");
    const record = join(work, "record.txt");
    const standIn = join(work, "fake-bmake");
    await run(sandboxCommand("namespace", { binds }, ["/bin/sh", "-c", '"$1" -C "$2" pbulk-index > "$3"', "rec", host.bmake, `${tree}/pkgtools/pkglint`, record]));
    writeFileSync(standIn, `#!/bin/sh\nexec cat ${record}\n`);
    chmodSync(standIn, 0o755);
    const fakeLocations = Array.from({ length: FAKE_LOCATIONS }, (_, i) => `cat/p${i}`);
    const fakeHost = { ...host, bmake: standIn };
    const fakeDirect: number[] = [];
    const fakeScan: number[] = [];
    const fakeCpu: number[] = [];
    for (let r = 0; r < 3; r++) {
      fakeDirect.push(await timed(() => run(sandboxCommand("namespace", { binds }, ["/bin/sh", "-c", loop, "loop", tree, standIn, ...fakeLocations]))));
      const cpu = process.cpuUsage();
      fakeScan.push(await timed(() => scanLocations(fakeHost, fakeLocations)));
      const used = process.cpuUsage(cpu);
      fakeCpu.push((used.user + used.system) / 1000);
    }
    phase("concurrency 2");
    const two = await timed(() => scanLocations({ ...host, concurrency: 2 }, locations));
    const best = (xs: number[]): number => Math.min(...xs);
    const perLoc = (ms: number): number => round(ms / locations.length / 1000, 3);
    process.stdout.write(`${JSON.stringify({
      locations: locations.length,
      rounds: ROUNDS,
      scanErrors: failures,
      secondsPerLocation: {
        direct: perLoc(best(times.direct)),
        scanLocations: perLoc(best(times.scanLocations)),
        perLocationSandbox: perLoc(best(times.perLocation)),
        scanLocationsConcurrency2: perLoc(two),
      },
      wallMs: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.map((x) => Math.round(x))])),
      overheadPercent: {
        scanLocationsVsDirect: round((best(times.scanLocations) / best(times.direct) - 1) * 100),
        scanLocationsVsDirectMedian: round((median(times.scanLocations) / median(times.direct) - 1) * 100),
        perLocationSandboxVsDirect: round((best(times.perLocation) / best(times.direct) - 1) * 100),
      },
      cpuMsPerLocation: {
        bmake: round(median(bmakeCpuMs) / locations.length, 1),
        agent: round(median(nodeCpuMs) / locations.length, 2),
        agentPercentOfBmake: round((median(nodeCpuMs) / median(bmakeCpuMs)) * 100, 2),
      },
      machinery: {
        locations: FAKE_LOCATIONS,
        msPerLocationDirectLoop: round(median(fakeDirect) / FAKE_LOCATIONS, 2),
        msPerLocationScanLocations: round(median(fakeScan) / FAKE_LOCATIONS, 2),
        agentCpuMsPerLocation: round(median(fakeCpu) / FAKE_LOCATIONS, 3),
      },
      sandboxSetupMs: { medianSandboxedTrue: round(median(sandboxed)), medianPlainTrue: round(median(plain)), extraPerSandbox: round(median(sandboxed) - median(plain)) },
      resetPrefixMs: { median: round(median(resetMs)), min: round(Math.min(...resetMs)), max: round(Math.max(...resetMs)) },
    })}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
