import { createHash, randomUUID } from "node:crypto";
import type { KV, NatsConnection } from "nats";
import type { Logger } from "pino";
import { isLocationKey, type StoredValue } from "./core/state-codec.js";
import { matchesKeyPattern, type StateStore } from "./state-store.js";

export const DEFAULT_STATE_BUCKET = "pkgfarm-depgraph";
const WRITER_KEY = "writer";
/** Writes in flight at once; more wait their turn, so a full import cannot flood the connection. */
const MAX_IN_FLIGHT = 512;
/** Reading the bucket at start gives up after this long without a key arriving. */
const LOAD_STALL_MS = 20_000;

/** KvLoadStalled: the bucket's keys stopped arriving while depgraph read its state at start. */
export class KvLoadStalled extends Error {
  override readonly name = "KvLoadStalled";
  constructor(bucket: string, stallMs: number, keysRead: number) {
    super(`reading KV bucket ${bucket} made no progress for ${stallMs / 1000} s (${keysRead} keys read); is NATS up?`);
  }
}

export interface KvStateStoreOptions {
  readonly nc: NatsConnection;
  readonly logger: Logger;
  readonly bucket?: string;
  /**
   * Called once if another depgraph took over the bucket: this one must stop
   * (its writes are refused from then on, so it can no longer change state).
   */
  readonly onFenced: (writer: string) => void;
}

/** FencedError: another depgraph is the writer now. */
export class FencedError extends Error {
  override readonly name = "FencedError";
}

/**
 * openKvStateStore keeps depgraph's state in a JetStream KV bucket. depgraph
 * is its single writer: at start it claims the `writer` key, and every write
 * names the revision it expects the key to be at. A write refused for its
 * revision means someone else wrote: if the writer key is still ours that was
 * a stale writer's last gasp, and we re-read and write again; if not, we are
 * the stale one, and we stop.
 */
export async function openKvStateStore(options: KvStateStoreOptions): Promise<StateStore & { readonly writerId: string }> {
  const { logger } = options;
  const bucket = options.bucket ?? DEFAULT_STATE_BUCKET;
  const kv: KV = await options.nc.jetstream().views.kv(bucket, { history: 1 });
  const writerId = randomUUID();
  const revisions = new Map<string, number>();
  // Digests of what each tree key holds, so rewriting an unchanged location
  // (a re-import of the same tree) costs no write. Jobs and durations are
  // written when they change; hashing them would only slow restarts and
  // MarkDone.
  const stored = new Map<string, string>();
  const pending = new Map<string, string>();
  const inFlight = new Set<string>();
  const waiters: { remaining: Set<string>; resolve: () => void }[] = [];
  let fenced = false;
  let closed = false;
  let flushScheduled = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let failures = 0;
  let writerWatch: { stop(): void } | undefined;
  let forgetting = Promise.resolve();

  const fence = (writer: string) => {
    if (fenced) return;
    fenced = true;
    pending.clear();
    logger.error({ writer, us: writerId }, "another depgraph took over the state bucket; this one stops writing");
    for (const w of waiters.splice(0)) w.resolve();
    options.onFenced(writer);
  };

  const done = (key: string) => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      if (w.remaining.delete(key) && w.remaining.size === 0) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  };

  const scheduleFlush = () => {
    if (flushScheduled || fenced) return;
    flushScheduled = true;
    setImmediate(flush);
  };

  const write = async (key: string, value: string) => {
    try {
      // Deletes are written as empty values: a KV delete returns no revision,
      // and the next fenced write to the key needs one.
      const revision = await kv.put(key, value, { previousSeq: revisions.get(key) ?? 0 });
      revisions.set(key, revision);
      if (isLocationKey(key)) stored.set(key, digest(value));
      failures = 0;
      inFlight.delete(key);
      if (!pending.has(key)) done(key);
    } catch (e) {
      inFlight.delete(key);
      if (!pending.has(key)) pending.set(key, value);
      if (fenced || closed) return;
      if (isWrongRevision(e)) {
        const writer = (await kv.get(WRITER_KEY).catch(() => null))?.string() ?? "";
        if (writer !== writerId) {
          fence(writer);
          return;
        }
        const current = await kv.get(key).catch(() => null);
        revisions.set(key, current?.revision ?? 0);
        logger.warn({ key }, "state key was written by a stale writer; overwriting");
      } else {
        failures++;
        if (failures === 1 || failures % 100 === 0) logger.warn({ err: e instanceof Error ? e.message : String(e), backlog: pending.size }, "state write failed; retrying");
        // While NATS is away every write fails the same way: back off rather than spin.
        if (retryTimer === undefined) {
          retryTimer = setTimeout(() => {
            retryTimer = undefined;
            scheduleFlush();
          }, Math.min(5_000, 50 * 2 ** Math.min(failures, 7)));
        }
        return;
      }
    }
    scheduleFlush();
  };

  const flush = () => {
    flushScheduled = false;
    if (fenced || retryTimer !== undefined) return;
    for (const [key, value] of pending) {
      if (inFlight.size >= MAX_IN_FLIGHT) break;
      if (inFlight.has(key)) continue;
      pending.delete(key);
      inFlight.add(key);
      void write(key, value);
    }
  };

  const load = async (): Promise<Map<string, StoredValue>> => {
    const entries = new Map<string, StoredValue>();
    let initialized!: () => void;
    let failed!: (e: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      initialized = resolve;
      failed = reject;
    });
    const watch = await kv.watch({ key: ">", initializedFn: () => initialized() });
    // A NATS restart in the middle of the read can leave the watch waiting
    // for ever, with depgraph neither serving nor exiting: give up once it
    // stops making progress, so a supervisor starts depgraph again.
    let lastProgress = Date.now();
    const stall = setInterval(() => {
      if (Date.now() - lastProgress > LOAD_STALL_MS) failed(new KvLoadStalled(bucket, LOAD_STALL_MS, revisions.size));
    }, 1000);
    void (async () => {
      for await (const entry of watch) {
        lastProgress = Date.now();
        revisions.set(entry.key, entry.revision);
        if (entry.key === WRITER_KEY) continue;
        // Kept as bytes: most of it is scan text, which is parsed as bytes.
        const value = entry.operation === "PUT" ? entry.value : EMPTY;
        if (isLocationKey(entry.key)) stored.set(entry.key, digest(value));
        if (value.length > 0) entries.set(entry.key, value);
        else entries.delete(entry.key);
      }
    })().catch((e: unknown) => failed(e instanceof Error ? e : new Error(String(e))));
    try {
      await ready;
    } finally {
      clearInterval(stall);
      watch.stop();
    }
    // Claim the bucket only after reading it, so our revisions are the latest.
    const claimed = await kv.put(WRITER_KEY, writerId, { previousSeq: revisions.get(WRITER_KEY) ?? 0 });
    revisions.set(WRITER_KEY, claimed);
    const watchWriter = await kv.watch({ key: WRITER_KEY, include: "updates" as never });
    writerWatch = watchWriter;
    void (async () => {
      for await (const entry of watchWriter) {
        const writer = entry.operation === "PUT" ? entry.string() : "";
        if (writer !== writerId) fence(writer);
      }
    })();
    return entries;
  };

  const writesSettled = (): Promise<void> => {
    const remaining = new Set([...pending.keys(), ...inFlight]);
    if (remaining.size === 0 || fenced) return Promise.resolve();
    return new Promise((resolve) => waiters.push({ remaining, resolve }));
  };
  const settled = async (): Promise<void> => {
    const forgotten = forgetting;
    await writesSettled();
    await forgotten;
  };

  const forget = (patterns: readonly string[]) => {
    if (fenced || closed) return;
    for (const key of [...pending.keys()]) {
      if (!matchesKeyPattern(patterns, key)) continue;
      pending.delete(key);
      done(key);
    }
    forgetting = forgetting.then(async () => {
      // A write still in flight would bring a key back after the purge.
      await writesSettled();
      if (fenced) return;
      // A purge by subject leaves no delete markers, which a restart would
      // still have to read.
      const jsm = await options.nc.jetstreamManager();
      for (const pattern of patterns) await jsm.streams.purge(`KV_${bucket}`, { filter: `$KV.${bucket}.${pattern}` });
      for (const key of [...revisions.keys()]) {
        if (!matchesKeyPattern(patterns, key)) continue;
        revisions.delete(key);
        stored.delete(key);
      }
    }).catch((e: unknown) => {
      // The keys stay; the next start restores the build and forgets it again.
      logger.warn({ err: e instanceof Error ? e.message : String(e), patterns }, "forgetting state keys failed");
    });
  };

  return {
    writerId,
    load,
    forget,
    set(key, value) {
      if (fenced || closed) return;
      const text = value ?? "";
      if (isLocationKey(key) && !pending.has(key) && !inFlight.has(key) && stored.get(key) === digest(text)) return;
      if (text === "" && !revisions.has(key)) return;
      pending.set(key, text);
      scheduleFlush();
    },
    settled,
    get backlog() {
      return pending.size + inFlight.size;
    },
    async close() {
      const flushed = settled();
      await Promise.race([flushed, new Promise((r) => setTimeout(r, 2_000).unref())]);
      closed = true;
      clearTimeout(retryTimer);
      writerWatch?.stop();
      for (const w of waiters.splice(0)) w.resolve();
    },
  };
}

const EMPTY = new Uint8Array(0);

/** digest is the same for a text and its UTF-8 bytes. */
function digest(value: StoredValue): string {
  return createHash("sha1").update(value).digest("base64");
}

function isWrongRevision(e: unknown): boolean {
  const message = e instanceof Error ? e.message : String(e);
  return /wrong last sequence|key exists/i.test(message);
}
