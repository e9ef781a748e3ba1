// UsageMeter measures what one job uses while it runs, so depgraph learns
// what the package needs of a build host: the peak resident memory of its
// processes, and the most disk its work directories held.
//
// Memory: every process a job's executor starts leads a process group of
// its own (runner.ts), and everything it forks stays in that group unless it
// leaves on purpose. Each second the agent's ProcessSampler reads
// /proc/<pid>/stat of every process once for all its running jobs, sums for
// each job the resident memory of the processes in its groups (Pss, shared
// pages split between their sharers; VmRSS where the kernel has no
// smaps_rollup, which errs high), and keeps the largest sum. Where there is
// no /proc (not Linux) memory is not measured (0).
//
// Disk: the directories the executor names (the job's work directory, the
// slot's WRKOBJDIR) are walked now and then and when the executor asks
// (before it cleans up); the size is allocated blocks, what the file system
// really gives.

import { readdirSync, readFileSync } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
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

/** Extra passes after a process starts, before the sampler's once a second takes over. */
const EARLY_SAMPLES_MS = [50, 250];

export interface UsageMeterOptions {
  /** The agent's one reader of the process table; without it the meter reads it on its own each second. */
  readonly sampler?: ProcessSampler;
  /** Between disk walks; default 30 s (walking a big WRKDIR costs). */
  readonly diskEveryMs?: number;
}

export function startUsageMeter(options: UsageMeterOptions = {}): UsageMeter {
  const ownSampler = options.sampler === undefined;
  const sampler = options.sampler ?? createProcessSampler();
  const groups = new Set<number>();
  const dirs = new Set<string>();
  let peakMemory = 0;
  let peakDisk = 0;
  let walking: Promise<void> | undefined;
  let stopped: Promise<Peak> | undefined;
  let unfollow: (() => void) | undefined;
  const early: NodeJS.Timeout[] = [];

  const sampleDisk = async () => {
    let total = 0;
    for (const dir of dirs) total += await diskUse(dir);
    if (total > peakDisk) peakDisk = total;
  };
  // One walk at a time: a slow walk must not pile up behind the timer.
  const walk = () => {
    walking ??= sampleDisk().catch(() => {}).finally(() => (walking = undefined));
    return walking;
  };
  const diskTimer = setInterval(() => void walk(), options.diskEveryMs ?? 30_000);
  diskTimer.unref();

  return {
    track(pid) {
      groups.add(pid);
      unfollow ??= sampler.follow(groups, (bytes) => {
        if (bytes > peakMemory) peakMemory = bytes;
      });
      // Catch a short build too: passes soon after the start (the first may
      // come before the process has even become its group's leader).
      sampler.sampleSoon();
      for (const ms of EARLY_SAMPLES_MS) {
        const timer = setTimeout(() => sampler.sampleSoon(), ms);
        timer.unref();
        early.push(timer);
      }
    },
    watch(dir) {
      dirs.add(dir);
    },
    async sampleDisk() {
      await walking;
      await walk();
    },
    stop() {
      // Once: the agent stops a meter when the job ends and again when its slot is freed.
      stopped ??= (async () => {
        // A pass under way may be the only one that saw a short build.
        for (const timer of early) clearTimeout(timer);
        if (unfollow !== undefined) await sampler.idle();
        unfollow?.();
        if (ownSampler) sampler.close();
        clearInterval(diskTimer);
        await walking;
        await walk();
        return { memoryBytes: peakMemory, diskBytes: peakDisk };
      })();
      return stopped;
    },
  };
}

/**
 * ProcessSampler reads the process table for every running job of an agent
 * at once: one pass over /proc each second, not one per job, each job given
 * the resident memory of its own process groups.
 */
export interface ProcessSampler {
  /** Calls onSample with the groups' resident bytes after every pass, until the returned function is called. */
  follow(groups: ReadonlySet<number>, onSample: (bytes: number) => void): () => void;
  /** A pass now, or right after the one under way (a build just started). */
  sampleSoon(): void;
  /** Resolves once no pass is under way or asked for (its samples delivered). */
  idle(): Promise<void>;
  /** Stops the timer. */
  close(): void;
}

export interface ProcessSamplerOptions {
  /** Between passes; default 1000 ms. */
  readonly everyMs?: number;
  /** Where the process table is; default /proc. */
  readonly procRoot?: string;
}

export function createProcessSampler(options: ProcessSamplerOptions = {}): ProcessSampler {
  const procRoot = options.procRoot ?? "/proc";
  const followers = new Set<{ readonly groups: ReadonlySet<number>; readonly onSample: (bytes: number) => void }>();
  let passing: Promise<void> | undefined;
  // Asked for while a pass was under way: one more right after it, or a
  // build that started meanwhile and ends within a second is never seen.
  let again = false;
  const pass = () => {
    if (passing !== undefined) {
      again = true;
      return;
    }
    if (followers.size === 0) return;
    const now = [...followers];
    // After the caller's code (a microtask), so sampleSoon returns first.
    passing = Promise.resolve()
      .then(() => groupsResident(procRoot, now.map((f) => f.groups)))
      .then((sums) => now.forEach((f, i) => f.onSample(sums[i]!)))
      .catch(() => {})
      .finally(() => {
        passing = undefined;
        if (again) {
          again = false;
          pass();
        }
      });
  };
  const timer = setInterval(pass, options.everyMs ?? 1000);
  timer.unref();
  return {
    follow(groups, onSample) {
      const follower = { groups, onSample };
      followers.add(follower);
      return () => followers.delete(follower);
    },
    sampleSoon: pass,
    async idle() {
      while (passing !== undefined) await passing;
    },
    close: () => clearInterval(timer),
  };
}

/** groupsRss sums the resident memory (bytes, Pss or else RSS) of every process whose process group is one of groups. */
export function groupsRss(procRoot: string, groups: ReadonlySet<number>): number {
  return groupsResident(procRoot, [groups])[0]!;
}

/**
 * groupsResident is groupsRss for several sets of groups in one pass over
 * the process table. The reads are synchronous: /proc files are made by the
 * kernel on read, a few microseconds each, and a pass of a few hundred
 * processes then takes a millisecond or two, where the same reads through
 * the thread pool took ten and came too late for a process that lives a
 * quarter of a second.
 */
function groupsResident(procRoot: string, sets: readonly ReadonlySet<number>[]): number[] {
  const sums = sets.map(() => 0);
  const owner = new Map<number, number>();
  sets.forEach((groups, i) => {
    for (const g of groups) owner.set(g, i);
  });
  let entries: string[];
  try {
    entries = readdirSync(procRoot);
  } catch {
    return sums;
  }
  for (const pid of entries) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(join(procRoot, pid, "stat"), "utf8");
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const at = owner.get(Number(fields[2]));
      if (at !== undefined) sums[at]! += residentBytes(join(procRoot, pid));
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return sums;
}

/**
 * residentBytes is a process's proportional set size (Pss: its shared pages
 * split between the processes sharing them, so thirty compilers do not count
 * their libraries thirty times), or its VmRSS where smaps_rollup is missing.
 */
function residentBytes(procDir: string): number {
  let rollup = "";
  try {
    rollup = readFileSync(join(procDir, "smaps_rollup"), "utf8");
  } catch {
    // Older kernels have none; status has VmRSS.
  }
  const pss = /^Pss:\s+(\d+)\s+kB/m.exec(rollup);
  if (pss !== null) return Number(pss[1]) * 1024;
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(join(procDir, "status"), "utf8"));
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
