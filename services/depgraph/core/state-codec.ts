import { Buffer } from "node:buffer";
import type { Build, BuildOptions, Job, RestoredJob } from "./build.js";
import type { RestoredBuild } from "./depgraph.js";
import type { DurationSnapshot, ObservedDuration } from "./duration-model.js";
import type { BuildHistoryRow } from "./history.js";
import { policies } from "./priority.js";

// The durable state is a flat key/value map, one key per thing that changes
// on its own (a location's records, a build, a job, a package's last
// duration), so a write is small and two writes never race on one value.
// Key tokens are base64url: PKGNAMEs and locations hold '+' and '/', which
// key-value stores such as JetStream KV refuse.

const TREE = "tree.";
const BUILD = "build.";
const JOB = "job.";
const HISTORY = "hist.";
const CHANGED = "changed.";
/** A package's last duration on a platform: "dur.<platform>.<pkgname>" (see durationKey). */
const DURATION = "dur.";
/** A build host's speed samples on a platform: "hspeed.<platform>.<host>". */
const HOST_SPEED = "hspeed.";
/** The token of the imported table's platform (""): one character is no base64url of anything, and an empty token would make ".." in a key. */
const NO_PLATFORM = "-";
/** A platform's own tree: "ptree.<platform>.<location>". */
const PLATFORM_TREE = "ptree.";
/** When a platform's location was last scanned by a scan job: "pscanned.<platform>.<location>". */
const PLATFORM_SCANNED = "pscanned.";

function token(s: string): string {
  return Buffer.from(s, "utf8").toString("base64url");
}

function untoken(t: string): string {
  return Buffer.from(t, "base64url").toString("utf8");
}

/** isLocationKey tells a tree location's key from the others. */
export function isLocationKey(key: string): boolean {
  return key.startsWith(TREE) || key.startsWith(PLATFORM_TREE);
}

/** The key of a location's records in the shared tree (platform ""), or in a platform's own tree. */
export function locationKey(location: string, platform = ""): string {
  return platform === "" ? TREE + token(location) : `${PLATFORM_TREE}${token(platform)}.${token(location)}`;
}

/** When a location of a platform's tree was last scanned, in ms since the epoch. */
export function scannedKey(platform: string, location: string): string {
  return `${PLATFORM_SCANNED}${token(platform)}.${token(location)}`;
}

export function buildKey(buildId: string): string {
  return BUILD + token(buildId);
}

export function jobKey(buildId: string, pkgname: string): string {
  return `${JOB}${token(buildId)}.${token(pkgname)}`;
}

/** jobKeysOf matches every job key of a build (see StateStore.forget). */
export function jobKeysOf(buildId: string): string {
  return `${JOB}${token(buildId)}.>`;
}

export function historyKey(pkgname: string): string {
  return HISTORY + token(pkgname);
}

function platformToken(platform: string): string {
  return platform === "" ? NO_PLATFORM : token(platform);
}

function untokenPlatform(t: string): string {
  return t === NO_PLATFORM ? "" : untoken(t);
}

/** durationKey holds the duration model's last observation of a package on a platform ("" for an imported table). */
export function durationKey(platform: string, pkgname: string): string {
  return `${DURATION}${platformToken(platform)}.${token(pkgname)}`;
}

/** hostSpeedKey holds the speed samples the duration model keeps for a build host of a platform. */
export function hostSpeedKey(platform: string, host: string): string {
  return `${HOST_SPEED}${platformToken(platform)}.${token(host)}`;
}

export function encodeDuration(observation: ObservedDuration): string {
  return JSON.stringify(observation);
}

export function encodeHostSamples(samples: readonly number[]): string {
  return JSON.stringify({ samples });
}

/** changedKey holds when a package's metadata last changed, in ms since the epoch. */
export function changedKey(pkgname: string): string {
  return CHANGED + token(pkgname);
}

interface BuildDoc {
  readonly options: BuildOptions;
  readonly cancelled: boolean;
  readonly finishedAt: number | null;
}

export function encodeBuild(build: Build): string {
  const doc: BuildDoc = { options: build.options, cancelled: build.state === "cancelled", finishedAt: build.state === "cancelled" ? build.finishedAt ?? null : null };
  return JSON.stringify(doc);
}

/**
 * encodeJob returns what must survive a restart of this job, or undefined
 * when nothing does: a job that never started is rebuilt from the tree and
 * its dependencies' outcomes.
 */
export function encodeJob(job: Job): string | undefined {
  let state: RestoredJob["state"];
  switch (job.state) {
    case "leased":
    case "succeeded":
    case "failed":
    case "up-to-date":
      state = job.state;
      break;
    case "ready":
    case "pending":
      if (job.attempts === 0) return undefined;
      state = "ready";
      break;
    default:
      return undefined;
  }
  const doc: RestoredJob = {
    state,
    reason: job.reason,
    attempts: job.attempts,
    losses: job.losses,
    agentId: job.agentId,
    lease: job.lease,
    durationMs: job.durationMs,
    binaryPackage: job.binaryPackage,
    logRef: job.logRef,
    ...(job.failedPhase === "" ? {} : { failedPhase: job.failedPhase }),
    ...(job.host === "" ? {} : { host: job.host }),
    ...(job.startedAt === undefined ? {} : { startedAt: job.startedAt }),
  };
  return JSON.stringify(doc);
}

export function encodeHistory(location: string, durationMs: number): string {
  return JSON.stringify({ location, durationMs });
}

/** DecodedState is everything a store held, ready for the core to take back. */
export interface DecodedState {
  /** pbulk-index text of every location, one chunk per location, each ending in a newline. */
  readonly pbulkIndex: readonly (string | Uint8Array)[];
  readonly locations: number;
  readonly builds: RestoredBuild[];
  /** Durations from before the duration model (one per PKGNAME, no platform). */
  readonly history: BuildHistoryRow[];
  /** What the duration model learnt: observations per platform and host speed samples. */
  readonly durations: DurationSnapshot;
  /** When packages last changed, by PKGNAME. */
  readonly changedAt: [string, number][];
  /** Platforms' own trees: pbulk-index chunks by platform, as pbulkIndex is for the shared tree. */
  readonly platformTrees: ReadonlyMap<string, (string | Uint8Array)[]>;
  /** When platforms' locations were last scanned: platform → [location, ms]. */
  readonly scannedAt: ReadonlyMap<string, [string, number][]>;
  /** Keys that could not be read, with why; they are skipped, never fatal. */
  readonly problems: string[];
}

/**
 * decodeState turns a store's keys back into builds, jobs, history and
 * scan records. An empty value is a deleted key. Jobs of a build the store
 * does not hold are dropped (a build's own key is written first).
 */
export function decodeState(entries: Iterable<readonly [string, StoredValue]>): DecodedState {
  const chunks: (string | Uint8Array)[] = [];
  const builds = new Map<string, { doc: BuildDoc; jobs: Map<string, RestoredJob> }>();
  const jobs: [string, string, RestoredJob][] = [];
  const history: BuildHistoryRow[] = [];
  const observations: [string, string, ObservedDuration][] = [];
  const hostSamples: [string, string, number[]][] = [];
  const changedAt: [string, number][] = [];
  const problems: string[] = [];
  const platformTrees = new Map<string, (string | Uint8Array)[]>();
  const scannedAt = new Map<string, [string, number][]>();
  let locations = 0;
  for (const [key, stored] of entries) {
    if (stored.length === 0) continue;
    try {
      if (key.startsWith(PLATFORM_TREE)) {
        const [platformToken] = key.slice(PLATFORM_TREE.length).split(".");
        if (platformToken === undefined) throw new Error("not a platform location");
        const platform = untoken(platformToken);
        let list = platformTrees.get(platform);
        if (list === undefined) platformTrees.set(platform, list = []);
        list.push(stored);
        locations++;
        if (!endsWithNewline(stored)) list.push("\n");
        continue;
      }
      if (key.startsWith(TREE)) {
        // Left as stored: the scan parser reads bytes, and a whole tree
        // decoded to text and back costs a restart about a third of a second.
        chunks.push(stored);
        locations++;
        if (!endsWithNewline(stored)) chunks.push("\n");
        continue;
      }
      const value = typeof stored === "string" ? stored : utf8(stored);
      if (key.startsWith(BUILD)) {
        const doc = JSON.parse(value) as BuildDoc;
        if (!isBuildDoc(doc)) throw new Error("not a build");
        builds.set(doc.options.id, { doc, jobs: new Map() });
      } else if (key.startsWith(JOB)) {
        const [buildToken, pkgToken] = key.slice(JOB.length).split(".");
        const doc = JSON.parse(value) as RestoredJob;
        if (buildToken === undefined || pkgToken === undefined || !isJobDoc(doc)) throw new Error("not a job");
        jobs.push([untoken(buildToken), untoken(pkgToken), doc]);
      } else if (key.startsWith(HISTORY)) {
        const doc = JSON.parse(value) as { location: string; durationMs: number };
        if (typeof doc.location !== "string" || !(doc.durationMs >= 0)) throw new Error("not a duration");
        history.push({ pkgname: untoken(key.slice(HISTORY.length)), location: doc.location, succeeded: true, durationMs: doc.durationMs });
      } else if (key.startsWith(DURATION)) {
        const [platformPart, namePart] = key.slice(DURATION.length).split(".");
        const doc = JSON.parse(value) as ObservedDuration;
        if (platformPart === undefined || namePart === undefined || !isObservation(doc)) throw new Error("not a duration observation");
        observations.push([untokenPlatform(platformPart), untoken(namePart), { location: doc.location, durationMs: doc.durationMs, normalizedMs: doc.normalizedMs, host: doc.host }]);
      } else if (key.startsWith(HOST_SPEED)) {
        const [platformPart, hostPart] = key.slice(HOST_SPEED.length).split(".");
        const doc = JSON.parse(value) as { samples: unknown };
        if (platformPart === undefined || hostPart === undefined || !Array.isArray(doc.samples) || !doc.samples.every((x) => typeof x === "number" && Number.isFinite(x))) {
          throw new Error("not host speed samples");
        }
        hostSamples.push([untokenPlatform(platformPart), untoken(hostPart), doc.samples as number[]]);
      } else if (key.startsWith(PLATFORM_SCANNED)) {
        const [platformToken, locationToken] = key.slice(PLATFORM_SCANNED.length).split(".");
        const time = Number(value);
        if (platformToken === undefined || locationToken === undefined || !Number.isFinite(time)) throw new Error("not a scan time");
        const platform = untoken(platformToken);
        let list = scannedAt.get(platform);
        if (list === undefined) scannedAt.set(platform, list = []);
        list.push([untoken(locationToken), time]);
      } else if (key.startsWith(CHANGED)) {
        const time = Number(value);
        if (!Number.isFinite(time)) throw new Error("not a time");
        changedAt.push([untoken(key.slice(CHANGED.length)), time]);
      }
    } catch (e) {
      problems.push(`${key}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  for (const [buildId, pkgname, doc] of jobs) builds.get(buildId)?.jobs.set(pkgname, doc);
  return {
    pbulkIndex: chunks,
    locations,
    builds: [...builds.values()]
      .sort((a, b) => a.doc.options.createdAt - b.doc.options.createdAt)
      .map(({ doc, jobs }) => ({ options: doc.options, cancelled: doc.cancelled, finishedAt: doc.finishedAt ?? undefined, jobs })),
    history,
    durations: { observations, hostSamples },
    changedAt,
    platformTrees,
    scannedAt,
    problems,
  };
}

/** StoredValue is a value as a store holds it: text, or its UTF-8 bytes. */
export type StoredValue = string | Uint8Array;

function endsWithNewline(value: StoredValue): boolean {
  return typeof value === "string" ? value.endsWith("\n") : value[value.length - 1] === 0x0a;
}

function utf8(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}

function isBuildDoc(doc: BuildDoc): boolean {
  const o = doc?.options;
  return typeof o === "object" && o !== null && typeof o.id === "string" && typeof o.platform === "string"
    && (o.mode === "full" || o.mode === "incremental") && Object.hasOwn(policies, o.policy) && Array.isArray(o.limitTo) && typeof o.packagesDir === "string"
    && typeof o.createdAt === "number" && typeof doc.cancelled === "boolean";
}

function isObservation(doc: ObservedDuration): boolean {
  return typeof doc === "object" && doc !== null && typeof doc.location === "string" && typeof doc.host === "string"
    && doc.durationMs >= 0 && doc.normalizedMs >= 0;
}

const RESTORED_STATES = new Set(["leased", "succeeded", "failed", "up-to-date", "ready"]);

function isJobDoc(doc: RestoredJob): boolean {
  return typeof doc === "object" && doc !== null && RESTORED_STATES.has(doc.state) && typeof doc.attempts === "number"
    && typeof doc.losses === "number"
    && (doc.host === undefined || typeof doc.host === "string") && (doc.startedAt === undefined || typeof doc.startedAt === "number")
    && (doc.state !== "leased" || (typeof doc.lease?.id === "string" && typeof doc.lease.agentId === "string"
      // Jobs stored before leases kept their length have none (the default applies).
      && (doc.lease.lengthMs === undefined || (typeof doc.lease.lengthMs === "number" && doc.lease.lengthMs > 0))));
}
