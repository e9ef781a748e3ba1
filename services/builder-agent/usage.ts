// UsageMeter measures what one job uses while it runs, so depgraph learns
// what the package needs of a build host: the peak resident memory of its
// processes, and the most disk its work directories held.
//
// Memory: every process a job's executor starts leads a process group of
// its own (runner.ts), and everything it forks stays in that group unless it
// leaves on purpose. Each second the meter reads /proc/<pid>/stat of every
// process, sums the resident memory of those in the job's groups (Pss, shared
// pages split between their sharers; VmRSS where the kernel has no
// smaps_rollup, which errs high), and keeps the largest sum. Where there is
// no /proc (not Linux) memory is not measured (0).
//
// Disk: the directories the executor names (the job's work directory, the
// slot's WRKOBJDIR) are walked now and then and when the executor asks
// (before it cleans up); the size is allocated blocks, what the file system
// really gives.

import { readdir, readFile, lstat } from "node:fs/promises";
import { join } from "node:path";

/** Peak is what a job used at most; 0 for what was not measured. */
export interface Peak {
  readonly memoryBytes: number;
  readonly diskBytes: number;
}

export interface UsageMeter {
  /** A process the job started (a process-group leader): it and its group count. */
  track(pid: number): void;
  /** A directory whose size counts toward the job's disk use. */
  watch(dir: string): void;
  /** Measures the watched directories now (the executor is about to clean them). */
  sampleDisk(): Promise<void>;
  /** Stops measuring, measures the directories a last time, and says the peaks. */
  stop(): Promise<Peak>;
}

export interface UsageMeterOptions {
  /** Between memory samples; default 1000 ms. */
  readonly memoryEveryMs?: number;
  /** Between disk walks; default 30 s (walking a big WRKDIR costs). */
  readonly diskEveryMs?: number;
  /** Where the process table is; default /proc. */
  readonly procRoot?: string;
}

export function startUsageMeter(options: UsageMeterOptions = {}): UsageMeter {
  const procRoot = options.procRoot ?? "/proc";
  const groups = new Set<number>();
  const dirs = new Set<string>();
  let peakMemory = 0;
  let peakDisk = 0;
  let sampling: Promise<void> | undefined;
  let stopped: Promise<Peak> | undefined;

  const sampleMemory = async () => {
    if (groups.size === 0) return;
    const rss = await groupsRss(procRoot, groups);
    if (rss > peakMemory) peakMemory = rss;
  };
  const sampleDisk = async () => {
    let total = 0;
    for (const dir of dirs) total += await diskUse(dir);
    if (total > peakDisk) peakDisk = total;
  };
  // One sample at a time: a slow /proc or walk must not pile up behind the timer.
  const once = (sample: () => Promise<void>) => () => {
    if (sampling !== undefined) return;
    sampling = sample().catch(() => {}).finally(() => (sampling = undefined));
  };
  const memoryTimer = setInterval(once(sampleMemory), options.memoryEveryMs ?? 1000);
  const diskTimer = setInterval(once(sampleDisk), options.diskEveryMs ?? 30_000);
  memoryTimer.unref();
  diskTimer.unref();

  return {
    track(pid) {
      groups.add(pid);
      // Catch a short build too: one sample right after the start.
      once(sampleMemory)();
    },
    watch(dir) {
      dirs.add(dir);
    },
    async sampleDisk() {
      await sampling;
      await sampleDisk().catch(() => {});
    },
    stop() {
      // Once: the agent stops a meter when the job ends and again when its slot is freed.
      stopped ??= (async () => {
        clearInterval(memoryTimer);
        clearInterval(diskTimer);
        await sampling;
        await sampleDisk().catch(() => {});
        return { memoryBytes: peakMemory, diskBytes: peakDisk };
      })();
      return stopped;
    },
  };
}

/** groupsRss sums the resident memory (bytes, Pss or else RSS) of every process whose process group is one of groups. */
export async function groupsRss(procRoot: string, groups: ReadonlySet<number>): Promise<number> {
  let entries: string[];
  try {
    entries = await readdir(procRoot);
  } catch {
    return 0;
  }
  let total = 0;
  await Promise.all(entries.filter((e) => /^\d+$/.test(e)).map(async (pid) => {
    try {
      const stat = await readFile(join(procRoot, pid, "stat"), "utf8");
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (!groups.has(Number(fields[2]))) return;
      total += await residentBytes(join(procRoot, pid));
    } catch {
      // The process ended between the listing and the read.
    }
  }));
  return total;
}

/**
 * residentBytes is a process's proportional set size (Pss: its shared pages
 * split between the processes sharing them, so thirty compilers do not count
 * their libraries thirty times), or its VmRSS where smaps_rollup is missing.
 */
async function residentBytes(procDir: string): Promise<number> {
  const rollup = await readFile(join(procDir, "smaps_rollup"), "utf8").catch(() => "");
  const pss = /^Pss:\s+(\d+)\s+kB/m.exec(rollup);
  if (pss !== null) return Number(pss[1]) * 1024;
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(await readFile(join(procDir, "status"), "utf8"));
  return rss === null ? 0 : Number(rss[1]) * 1024;
}

/** diskUse is the space a directory tree takes (allocated blocks), not following links; 0 when it is gone. */
export async function diskUse(dir: string): Promise<number> {
  let total = 0;
  const walk = async (path: string): Promise<void> => {
    let info;
    try {
      info = await lstat(path);
    } catch {
      return;
    }
    total += info.blocks * 512;
    if (!info.isDirectory()) return;
    let names: string[];
    try {
      names = await readdir(path);
    } catch {
      return;
    }
    for (const name of names) await walk(join(path, name));
  };
  await walk(dir);
  return total;
}
