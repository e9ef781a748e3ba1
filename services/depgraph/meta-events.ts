import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setImmediate, setTimeout as sleep } from "node:timers/promises";
import { AckPolicy, type JsMsg, type NatsConnection } from "nats";
import type { Logger } from "pino";
import { LiveScanDependsIndex, locationsToRescan } from "./core/changed-files.js";
import type { InvalidScanRecord } from "./core/errors.js";
import { createScanRecordParser, formatScanRecord, isValidLocation, type ScanRecord } from "./core/scan-record.js";
import type { DepGraph } from "./core/depgraph.js";
import { runScanHelper, type ScanHelperOptions } from "./scan-helper.js";

/** The JetStream stream of package-metadata changes and its subjects. */
export const META_STREAM = "PKGFARM_META";
export const META_SUBJECTS = "pkgfarm.meta.changed.>";
export const RECORDS_SUBJECT = "pkgfarm.meta.changed.records";
export const FILES_SUBJECT = "pkgfarm.meta.changed.files";
/** The durable consumer depgraph reads META_STREAM with, unless told another name. */
export const META_CONSUMER = "depgraph";
/** Publishes with the same message id within this window are stored once. */
const DUPLICATE_WINDOW_NS = 10 * 60 * 1e9;

/**
 * RecordsEvent replaces the packages of some locations with freshly scanned
 * records. A listed location without records has been removed from the tree.
 */
export interface RecordsEvent {
  readonly locations: readonly string[];
  readonly pbulkIndex: string;
  /** Platform whose tree the records are for; absent or "" for the shared tree. */
  readonly platform?: string;
}

/** FilesEvent names tree files that changed (as `git diff --name-only` prints them). */
export interface FilesEvent {
  readonly files: readonly string[];
}

/** Creates the stream if it is missing; safe to call from every publisher and consumer. */
export async function ensureMetaStream(nc: NatsConnection): Promise<void> {
  const jsm = await nc.jetstreamManager();
  try {
    await jsm.streams.info(META_STREAM);
  } catch {
    await jsm.streams.add({ name: META_STREAM, subjects: [META_SUBJECTS], duplicate_window: DUPLICATE_WINDOW_NS });
  }
}

/** The message id of an event: its content, so republishing the same change is a duplicate. */
export function eventId(subject: string, payload: string): string {
  return createHash("sha256").update(subject).update("\n").update(payload).digest("hex");
}

export async function publishMetaEvent(nc: NatsConnection, subject: string, event: RecordsEvent | FilesEvent): Promise<{ duplicate: boolean; seq: number }> {
  const payload = JSON.stringify(event);
  const ack = await nc.jetstream().publish(subject, payload, { msgID: eventId(subject, payload) });
  return { duplicate: ack.duplicate, seq: ack.seq };
}

/**
 * metaConsumerLag is how many change events the durable consumer has not
 * finished with: stored but not yet delivered (num_pending) plus delivered
 * but not yet acked (num_ack_pending, which includes those the client has
 * pulled and not applied yet). Rejects when NATS does not answer in timeoutMs.
 */
export async function metaConsumerLag(nc: NatsConnection, timeoutMs: number, durable = META_CONSUMER): Promise<number> {
  const jsm = await nc.jetstreamManager({ timeout: timeoutMs, checkAPI: false });
  const info = await jsm.consumers.info(META_STREAM, durable);
  return info.num_pending + info.num_ack_pending;
}

export interface MetaConsumerOptions {
  readonly nc: NatsConnection;
  readonly depgraph: DepGraph;
  /**
   * Resolves once the change just applied is stored, however long that takes
   * (NATS away): the event is acked only then, so a crash before it replays
   * the event instead of losing the change.
   */
  readonly durable?: () => Promise<unknown>;
  readonly logger: Logger;
  /** Rescans locations named by a files event; without it such events are refused. */
  readonly scanHelper: ScanHelperOptions | undefined;
  /** Durable consumer name; one per depgraph deployment. */
  readonly durableName?: string;
  /** Called after each applied change (for tests and metrics). */
  readonly onApplied?: (change: AppliedChange) => void;
}

/** AppliedChange is an event depgraph has applied, made durable, and acked. */
export interface AppliedChange {
  readonly subject: string;
  readonly seq: number;
  readonly locations: readonly string[];
}

export interface MetaConsumer {
  stop(): Promise<void>;
}

/** What a handled event changed, and its own publishes still in flight, which its ack waits for along with the state store. */
interface Handled {
  readonly locations: readonly string[];
  readonly publishing?: Promise<unknown>;
}

/** Most events applied before one wait for the store and their acks. */
const MAX_BATCH = 256;

/** How often a wait for the state store is logged while it lasts. */
const STORE_WAIT_WARN_MS = 2_000;

/** How long NATS waits before it delivers again an event whose handling hit NATS trouble. */
const REDELIVER_AFTER_MS = 5_000;

/** When the SCAN_DEPENDS index is built ahead of need: this long after start, and after a big change once the tree has not changed for this long. */
const WARM_AT_START_MS = 200;
const WARM_AFTER_QUIET_MS = 2_000;

/**
 * startMetaConsumer applies package-metadata change events to the tree with a
 * durable JetStream consumer. A message is acked only after the tree has
 * taken the change, so a crash replays it; applying is idempotent (records
 * replace whole locations), so a replay is harmless. While NATS is down the
 * loop waits and retries; the RPC services never depend on it.
 */
export function startMetaConsumer(options: MetaConsumerOptions): MetaConsumer {
  const { nc, depgraph, logger } = options;
  const tree = depgraph.tree;
  const durable = options.durableName ?? META_CONSUMER;
  // Platforms' own trees are rescanned by their agents: a files event
  // becomes a scan of the locations it touches on each of them.
  const platformIndexes = new Map<string, LiveScanDependsIndex>();
  const platformIndex = (platform: string) => {
    let index = platformIndexes.get(platform);
    if (index === undefined) {
      const own = depgraph.platformTree(platform);
      platformIndexes.set(platform, index = new LiveScanDependsIndex(() => [...own.values()].map((p) => p.record)));
    }
    return index;
  };
  let stopped = false;
  let current: { stop(): void } | undefined;
  // Wakes a retry wait at once when stop() is called.
  const stopping = new AbortController();
  const scanDependsIndex = new LiveScanDependsIndex(() => [...tree.values()].map((p) => p.record));
  // Indexing the whole tree's SCAN_DEPENDS takes about half a second on a
  // full scan: done ahead, not while a files event waits for it. Later
  // changes go to the index's small overlay, until a big one drops it; then
  // it is built again once changes have stopped for a while, so it does not
  // hold up the storing and acking of that big change.
  let warming: NodeJS.Timeout | undefined;
  const warmAfter = (ms: number) => {
    if (warming !== undefined) {
      warming.refresh();
      return;
    }
    warming = setTimeout(() => {
      warming = undefined;
      if (!stopped) scanDependsIndex.warm();
    }, ms);
    warming.unref();
  };
  const offTreeChange = depgraph.onTreeChange((notice) => {
    if (notice.platform !== "") {
      const own = depgraph.platformTree(notice.platform);
      const index = platformIndexes.get(notice.platform);
      if (index !== undefined && !index.cold) index.update(new Map(notice.locations.map((location) => [location, own.atLocation(location).map((name) => own.get(name)!.record)])));
      return;
    }
    scanDependsIndex.update(new Map(notice.locations.map((location) => [location, tree.atLocation(location).map((name) => tree.get(name)!.record)])));
    if (options.scanHelper !== undefined && scanDependsIndex.cold) warmAfter(WARM_AFTER_QUIET_MS);
  });
  if (options.scanHelper !== undefined) warmAfter(WARM_AT_START_MS);

  const applyRecords = (event: RecordsEvent): readonly string[] => {
    const records: ScanRecord[] = [];
    const problems: InvalidScanRecord[] = [];
    const parser = createScanRecordParser((r) => records.push(r), (p) => problems.push(p));
    parser.push(event.pbulkIndex);
    parser.end();
    for (const p of problems.slice(0, 20)) logger.warn({ line: p.line, location: p.location }, `change event record refused: ${p.problem}`);
    const scanned = new Set(records.map((r) => r.location));
    const removed = event.locations.filter((l) => !scanned.has(l));
    depgraph.applyLocations(records, removed, event.platform ?? "");
    return [...new Set([...event.locations, ...scanned])];
  };

  const handle = async (m: JsMsg): Promise<Handled> => {
    const event: unknown = JSON.parse(m.string());
    if (m.subject === RECORDS_SUBJECT) {
      if (!isRecordsEvent(event)) throw new Error("a records event needs locations (array of strings) and pbulkIndex (string)");
      const locations = applyRecords(event);
      logger.info({ seq: m.seq, locations: locations.length }, "metadata change applied");
      return { locations };
    }
    if (m.subject === FILES_SUBJECT) {
      if (!isFilesEvent(event)) throw new Error("a files event needs files (array of strings)");
      const scans = scanPlatforms(event.files);
      if (options.scanHelper === undefined) {
        if (depgraph.platforms().length === 0) throw new Error("a files event needs a scan helper (start depgraph with --scan-helper) or platforms whose agents scan");
        return { locations: scans };
      }
      const known = new Set<string>();
      for (const pkg of tree.values()) known.add(pkg.record.location);
      const { locations: affected, ignored } = locationsToRescan(event.files, known, scanDependsIndex);
      // A file in a directory the tree does not know, beside known packages
      // of its category, is most likely a new package: scan it too.
      const categories = new Set([...known].map((l) => l.slice(0, l.indexOf("/"))));
      const fresh = ignored.map(newPackageDirectory).filter((l): l is string => l !== undefined && categories.has(l.slice(0, l.indexOf("/"))));
      const locations = [...new Set([...affected, ...fresh])].sort();
      if (locations.length === 0) return { locations: scans };
      const started = performance.now();
      const outcome = await runScanHelper(options.scanHelper, locations);
      const scanMs = Math.round(performance.now() - started);
      for (const p of outcome.problems.slice(0, 20)) logger.warn({ location: p.location }, `rescan problem: ${p.problem}`);
      // Locations whose rescan failed keep their old records: a broken
      // helper run must not delete packages. A package directory that is
      // gone from the tree, though, is a package removed.
      const scanHelper = options.scanHelper;
      const failed = new Set(outcome.problems.map((p) => p.location).filter((l) => existsSync(join(scanHelper.treeDir, l))));
      const rescanned = locations.filter((l) => !failed.has(l));
      const texts = new Map<string, string[]>(rescanned.map((l) => [l, []]));
      const records = outcome.records.filter((r) => texts.has(r.location));
      for (const r of records) texts.get(r.location)!.push(formatScanRecord(r));
      // Applied here as one change (a rescan of thousands of locations would
      // otherwise wait for dozens of events one after the other), and also
      // published as records events, so the change itself is in the stream:
      // replayable and visible to others. Applying them again here is a no-op.
      depgraph.applyLocations(records, rescanned.filter((l) => texts.get(l)!.length === 0));
      const applyMs = Math.round(performance.now() - started) - scanMs;
      // Distinct locations per event, so their order does not matter and
      // their publishes can all be in flight at once, and with the writes
      // of the state store.
      const publishing = Promise.all(recordsEvents(texts).map((e) => publishMetaEvent(nc, RECORDS_SUBJECT, e)));
      logger.info({ seq: m.seq, files: event.files.length, locations: rescanned.length, scanMs, applyMs }, "changed files rescanned");
      return { locations: [...rescanned, ...scans], publishing };
    }
    throw new Error(`unknown subject ${m.subject}`);
  };

  /**
   * scanPlatforms starts, on every platform with a tree of its own, a scan
   * of the locations the files touch (their directories and every location
   * whose SCAN_DEPENDS names one). Returns the platform:location pairs.
   */
  const scanPlatforms = (files: readonly string[]): string[] => {
    const started: string[] = [];
    for (const platform of depgraph.platforms()) {
      const own = depgraph.platformTree(platform);
      const known = new Set<string>();
      for (const pkg of own.values()) known.add(pkg.record.location);
      const { locations } = locationsToRescan(files, known, platformIndex(platform));
      if (locations.length === 0) continue;
      const scan = depgraph.startScan({ platform, scope: "locations", locations: [...locations].sort(), reuse: false, locationsPerJob: 0 });
      logger.info({ platform, scanId: scan.id, files: files.length, locations: locations.length }, "changed files: rescan started on the platform's agents");
      started.push(...locations.map((l) => `${platform}:${l}`));
    }
    return started;
  };

  /** Waits for the store, saying so while it is away; false when stopped first. */
  const untilStored = async (stored: Promise<unknown>, events: number): Promise<boolean> => {
    let done = false;
    let onStop: (() => void) | undefined;
    const warn = setInterval(() => logger.warn({ events }, "the state store has not taken the applied change yet; its events stay unacked"), STORE_WAIT_WARN_MS);
    try {
      await Promise.race([
        stored.then(() => (done = true)),
        new Promise<void>((resolve) => {
          onStop = () => resolve();
          if (stopping.signal.aborted) resolve();
          else stopping.signal.addEventListener("abort", onStop, { once: true });
        }),
      ]);
    } finally {
      clearInterval(warn);
      stopping.signal.removeEventListener("abort", onStop!);
    }
    return done;
  };

  const loop = async () => {
    let failures = 0;
    while (!stopped) {
      try {
        await ensureMetaStream(nc);
        const jsm = await nc.jetstreamManager();
        await jsm.consumers.add(META_STREAM, { durable_name: durable, ack_policy: AckPolicy.Explicit, ack_wait: 5 * 60 * 1e9 });
        const consumer = await nc.jetstream().consumers.get(META_STREAM, durable);
        const messages = await consumer.consume({ max_messages: 256 });
        current = messages;
        // stop() may have come while the consumer was being set up.
        if (stopped) {
          messages.stop();
          break;
        }
        failures = 0;
        // Events already delivered are applied one by one but share one
        // wait for the store before they are acked: a burst is stored in
        // batches, not an event at a time.
        const batch: { m: JsMsg; handled: Handled }[] = [];
        const settleBatch = async () => {
          const taken = batch.splice(0);
          const stored = options.durable?.();
          const published = await Promise.allSettled(taken.map(({ handled }) => handled.publishing));
          if (stored !== undefined && !(await untilStored(stored, taken.length))) {
            // Stopping with the change applied but not stored: the events go
            // back unacked, to the next depgraph, which applies them again.
            for (const { m } of taken) m.nak();
            return;
          }
          taken.forEach(({ m, handled }, i) => {
            const outcome = published[i]!;
            if (outcome.status === "rejected") {
              // NATS trouble, not a bad event: the change is applied, and
              // taking the event again later republishes what did not go out.
              logger.warn({ err: String(outcome.reason), subject: m.subject, seq: m.seq }, "republishing a rescan failed; the event will be redelivered");
              m.nak(REDELIVER_AFTER_MS);
              return;
            }
            m.ack();
            options.onApplied?.({ subject: m.subject, seq: m.seq, locations: handled.locations });
          });
        };
        const iterator = messages[Symbol.asyncIterator]();
        let next = iterator.next();
        for (;;) {
          const result = await next;
          if (result.done === true) break;
          const m = result.value;
          try {
            batch.push({ m, handled: await handle(m) });
          } catch (e) {
            // A malformed event would fail forever: drop it, loudly.
            logger.error({ err: e, subject: m.subject, seq: m.seq }, "metadata change event refused; dropping it");
            m.term();
          }
          // An event already delivered comes within the same turn of the
          // event loop; when none does, the batch is complete.
          next = iterator.next();
          next.catch(() => {});
          const more = await Promise.race([next.then(() => true, () => false), setImmediate(false)]);
          if (batch.length > 0 && (stopped || batch.length >= MAX_BATCH || !more)) await settleBatch();
          if (stopped) break;
        }
      } catch (e) {
        if (stopped) break;
        failures++;
        const delay = Math.min(10_000, 200 * 2 ** Math.min(failures, 6));
        logger.warn({ err: e instanceof Error ? e.message : String(e), retryInMs: delay }, "metadata change consumer interrupted; retrying");
        await sleep(delay, undefined, { signal: stopping.signal }).catch(() => {});
      }
    }
  };
  const running = loop();

  return {
    async stop() {
      stopped = true;
      stopping.abort();
      clearTimeout(warming);
      offTreeChange();
      current?.stop();
      await running;
    },
  };
}

/**
 * Most bytes of pbulk-index text one records event carries. NATS refuses
 * messages over its max_payload (1 MiB by default); a SCAN_DEPENDS-heavy
 * rescan of thousands of locations is tens of megabytes.
 */
const MAX_EVENT_TEXT = 512 * 1024;

/** recordsEvents splits rescanned locations (with their records' text) into events of whole locations. */
export function recordsEvents(texts: ReadonlyMap<string, readonly string[]>): RecordsEvent[] {
  const events: RecordsEvent[] = [];
  let locations: string[] = [];
  let parts: string[] = [];
  let size = 0;
  for (const [location, records] of texts) {
    const bytes = records.reduce((n, t) => n + t.length, 0);
    if (locations.length > 0 && size + bytes > MAX_EVENT_TEXT) {
      events.push({ locations, pbulkIndex: parts.join("") });
      locations = [];
      parts = [];
      size = 0;
    }
    locations.push(location);
    parts.push(...records);
    size += bytes;
  }
  if (locations.length > 0) events.push({ locations, pbulkIndex: parts.join("") });
  return events;
}

/** The category/package directory a changed file lies in, if it has that shape. */
function newPackageDirectory(file: string): string | undefined {
  const parts = file.split("/");
  if (parts.length < 3 || parts.some((p) => p === "" || p === "." || p === "..")) return undefined;
  const location = `${parts[0]}/${parts[1]}`;
  return isValidLocation(location) ? location : undefined;
}

function isRecordsEvent(e: unknown): e is RecordsEvent {
  const o = e as RecordsEvent;
  return typeof o === "object" && o !== null && Array.isArray(o.locations) && o.locations.every((l) => typeof l === "string") && typeof o.pbulkIndex === "string"
    && (o.platform === undefined || typeof o.platform === "string");
}

function isFilesEvent(e: unknown): e is FilesEvent {
  const o = e as FilesEvent;
  return typeof o === "object" && o !== null && Array.isArray(o.files) && o.files.every((f) => typeof f === "string");
}
