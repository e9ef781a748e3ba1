// ScanRun is one scan of a platform's tree as jobs for the build hosts, as
// pbulk's master hands scan work to its clients: the whole tree (one job
// enumerates the locations, then the locations go out in batches), a list of
// locations, or a limited list closed over its dependencies.
//
// A closure scan does not wait for a whole round before the next: each
// finished job's records name dependency locations, and those the tree lacks
// are queued at once as the next round's. That keeps every agent busy where
// pbulk's limited_list loop (scan a round, resolve, scan the missing) idles
// all but the slowest client at the end of each round; the rounds counted
// are the same.

import type { Lease } from "./build.js";
import { InvalidScanRecord } from "./errors.js";
import type { ScanRecord } from "./scan-record.js";

export type ScanScope = "tree" | "locations" | "closure";
export type ScanState = "running" | "finished" | "failed";
export type ScanJobState = "ready" | "leased" | "done" | "failed";

/** ScanJob is one lease's worth of scanning: some locations, or the enumeration. */
export interface ScanJob {
  readonly name: string;
  readonly locations: readonly string[];
  readonly enumerate: boolean;
  readonly round: number;
  state: ScanJobState;
  attempts: number;
  losses: number;
  lease: Lease | undefined;
  agentId: string;
  reason: string;
}

/** What an agent found for one location. */
export interface ScannedLocation {
  readonly location: string;
  readonly records: readonly ScanRecord[];
  /** Not scanned: nothing its SCAN_DEPENDS names changed since the last scan. */
  readonly reused: boolean;
  /** Why the scan of it failed; "" when it did not. */
  readonly error: string;
}

export interface ScanRunOptions {
  readonly id: string;
  readonly platform: string;
  readonly scope: ScanScope;
  readonly locations: readonly string[];
  readonly reuse: boolean;
  readonly locationsPerJob: number;
  readonly createdAt: number;
  /** The limited build waiting for this scan, if any. */
  readonly buildId: string;
}

/** What the tree knows of a location, for reuse and for the closure. */
export interface ScanTreeView {
  /** Whether the tree has records for the location. */
  hasLocation(location: string): boolean;
}

/** ScanResultEffect is what the owner must do with a finished job's output. */
export interface ScanResultEffect {
  /** Records to apply to the tree now (locations and closure scopes): replaces exactly these locations. */
  readonly apply: readonly ScanRecord[];
  /** Locations whose records are replaced by apply (those scanned without error). */
  readonly replaced: readonly string[];
}

export const MAX_SCAN_PROBLEMS = 100;

export class ScanRun {
  readonly jobs: ScanJob[] = [];
  readonly byName = new Map<string, ScanJob>();
  state: ScanState = "running";
  finishedAt: number | undefined;
  rounds = 0;
  locationsScanned = 0;
  locationsReused = 0;
  locationsFailed = 0;
  records = 0;
  readonly problems: InvalidScanRecord[] = [];
  /** Every location the scan has queued, so none is scanned twice. */
  private readonly queued = new Set<string>();
  /** A whole-tree scan's records, applied all at once when it ends (the tree becomes what the scan found). */
  private readonly treeRecords: ScanRecord[] = [];
  /** Whole-tree scan: locations kept as they were (reused, or failed to scan). */
  private readonly keptLocations: string[] = [];
  private jobsDone = 0;
  private readonly ready: ScanJob[] = [];

  constructor(readonly options: ScanRunOptions, private readonly tree: ScanTreeView) {
    if (options.scope === "tree") this.addJob([], true, 1);
    else this.queue(options.locations, 1);
    this.settle(options.createdAt);
  }

  get id(): string {
    return this.options.id;
  }

  get locationsTotal(): number {
    return this.queued.size;
  }

  get jobsTotal(): number {
    return this.jobs.length;
  }

  get jobsEnded(): number {
    return this.jobsDone;
  }

  get readyCount(): number {
    return this.ready.length;
  }

  /** Every location queued so far (for a tree scan, those the enumeration found). */
  queuedLocations(): IterableIterator<string> {
    return this.queued.values();
  }

  /** Takes the next ready job and leases it. */
  leaseNext(lease: Lease): ScanJob | undefined {
    const job = this.ready.shift();
    if (job === undefined) return undefined;
    job.state = "leased";
    job.lease = lease;
    job.agentId = lease.agentId;
    job.attempts++;
    return job;
  }

  /**
   * Gives a leased job back: ready again, or failed once it has been lost
   * maxLosses times (a location that kills every agent it reaches).
   */
  requeue(job: ScanJob, reason: string, counts: boolean, maxLosses: number, now: number): "requeued" | "failed" {
    job.lease = undefined;
    job.reason = reason;
    if (counts) job.losses++;
    if (counts && job.losses >= maxLosses) {
      this.failJob(job, `given up after ${job.losses} lost leases (${reason})`, now);
      return "failed";
    }
    job.state = "ready";
    this.ready.unshift(job);
    return "requeued";
  }

  /** An enumeration job's answer: the tree's locations. */
  enumerated(job: ScanJob, locations: readonly string[], now: number): void {
    this.endJob(job, "done", "");
    this.queue(locations, job.round + 1);
    this.settle(now);
  }

  /** A job that could not be run at all (the agent said why). */
  failJob(job: ScanJob, reason: string, now: number): void {
    this.endJob(job, "failed", reason);
    for (const location of job.locations) {
      this.locationsFailed++;
      this.problem(new InvalidScanRecord(0, location, "", reason));
      if (this.options.scope === "tree") this.keptLocations.push(location);
    }
    if (job.enumerate) {
      this.problem(new InvalidScanRecord(0, "", "", `enumerating the tree failed: ${reason}`));
      this.state = "failed";
      this.finishedAt = now;
      return;
    }
    this.settle(now);
  }

  /**
   * A scan job's answer. Returns the records to apply to the tree at once
   * (not for a whole-tree scan, which applies everything when it ends).
   */
  scanned(job: ScanJob, results: readonly ScannedLocation[], problems: readonly InvalidScanRecord[], now: number): ScanResultEffect {
    this.endJob(job, "done", "");
    for (const p of problems) this.problem(p);
    const asked = new Set(job.locations);
    const answered = new Set<string>();
    const apply: ScanRecord[] = [];
    const replaced: string[] = [];
    for (const result of results) {
      if (!asked.has(result.location) || answered.has(result.location)) {
        this.problem(new InvalidScanRecord(0, result.location, "", `scan job ${job.name} answered for ${result.location}, which it was not given`));
        continue;
      }
      answered.add(result.location);
      if (result.error !== "") {
        this.locationsFailed++;
        this.problem(new InvalidScanRecord(0, result.location, "", result.error));
        if (this.options.scope === "tree") this.keptLocations.push(result.location);
        continue;
      }
      if (result.reused) {
        this.locationsReused++;
        this.locationsScanned++;
        if (this.options.scope === "tree") this.keptLocations.push(result.location);
        continue;
      }
      const own = result.records.filter((r) => {
        if (r.location === result.location) return true;
        this.problem(new InvalidScanRecord(r.line, result.location, r.pkgname, `the scan of ${result.location} printed a record for ${r.location}`));
        return false;
      });
      if (own.length === 0) {
        this.locationsFailed++;
        this.problem(new InvalidScanRecord(0, result.location, "", "the scan printed no record"));
        if (this.options.scope === "tree") this.keptLocations.push(result.location);
        continue;
      }
      this.locationsScanned++;
      this.records += own.length;
      if (this.options.scope === "tree") this.treeRecords.push(...own);
      else {
        apply.push(...own);
        replaced.push(result.location);
      }
      if (this.options.scope === "closure") {
        this.queue(own.flatMap((r) => r.dependencies.map((d) => d.location)).filter((l) => !this.tree.hasLocation(l)), job.round + 1);
      }
    }
    for (const location of job.locations) {
      if (answered.has(location)) continue;
      this.locationsFailed++;
      this.problem(new InvalidScanRecord(0, location, "", `scan job ${job.name} brought nothing back for ${location}`));
      if (this.options.scope === "tree") this.keptLocations.push(location);
    }
    this.settle(now);
    return { apply, replaced };
  }

  /**
   * For a whole-tree scan that finished: the records the tree becomes, and
   * the locations whose current records are kept (reused or failed).
   */
  treeResult(): { records: readonly ScanRecord[]; kept: readonly string[] } {
    return { records: this.treeRecords, kept: this.keptLocations };
  }

  /** Ends the scan where it stands (its platform's tree was replaced, or it was cancelled). */
  abandon(reason: string, now: number): Lease[] {
    const leases: Lease[] = [];
    for (const job of this.jobs) {
      if (job.state === "leased" && job.lease !== undefined) leases.push(job.lease);
      if (job.state === "ready" || job.state === "leased") this.endJob(job, "failed", reason);
    }
    this.ready.length = 0;
    if (this.state === "running") {
      this.state = "failed";
      this.finishedAt = now;
      this.problem(new InvalidScanRecord(0, "", "", reason));
    }
    return leases;
  }

  private queue(locations: readonly string[], round: number): void {
    const fresh = [...new Set(locations)].filter((l) => !this.queued.has(l));
    for (const l of fresh) this.queued.add(l);
    const size = Math.max(1, this.options.locationsPerJob);
    for (let i = 0; i < fresh.length; i += size) this.addJob(fresh.slice(i, i + size), false, round);
  }

  private addJob(locations: readonly string[], enumerate: boolean, round: number): void {
    const job: ScanJob = {
      name: `scan-${String(this.jobs.length + 1).padStart(4, "0")}`,
      locations, enumerate, round, state: "ready", attempts: 0, losses: 0, lease: undefined, agentId: "", reason: "",
    };
    this.jobs.push(job);
    this.byName.set(job.name, job);
    this.ready.push(job);
    this.rounds = Math.max(this.rounds, round);
  }

  private endJob(job: ScanJob, state: "done" | "failed", reason: string): void {
    if (job.state === "done" || job.state === "failed") return;
    const i = this.ready.indexOf(job);
    if (i >= 0) this.ready.splice(i, 1);
    job.state = state;
    job.reason = reason;
    job.lease = undefined;
    this.jobsDone++;
  }

  private settle(now: number): void {
    if (this.state === "running" && this.jobsDone === this.jobs.length) {
      this.state = "finished";
      this.finishedAt = now;
    }
  }

  private problem(p: InvalidScanRecord): void {
    if (this.problems.length < MAX_SCAN_PROBLEMS) this.problems.push(p);
  }
}
