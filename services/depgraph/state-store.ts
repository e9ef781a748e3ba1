import type { StoredValue } from "./core/state-codec.js";

/**
 * StateStore keeps depgraph's durable state as flat string keys (see
 * core/state-codec.ts). depgraph reads it once at start and then only
 * writes; writes are queued and coalesced per key, so the core never waits
 * on storage, and callers that must not answer before a change is durable
 * (MarkDone, an acked change event) await settled().
 */
export interface StateStore {
  /** Every key with its value, as text or UTF-8 bytes; an empty value is a deleted key. */
  load(): Promise<Map<string, StoredValue>>;
  /** Queues a write; null deletes. A later write to the same key replaces a queued one. */
  set(key: string, value: string | null): void;
  /**
   * Removes keys for good, with no trace left for a restart to read: each
   * pattern is a key, or "<prefix>.>" for every key under the prefix. For
   * keys that are never written again (a forgotten build's).
   */
  forget(patterns: readonly string[]): void;
  /** Resolves once every write queued before the call is durable. */
  settled(): Promise<void>;
  /** Writes still queued or in flight. */
  readonly backlog: number;
  /** Flushes what it can within a grace period, then stops. */
  close(): Promise<void>;
}

/**
 * createMemoryStateStore is the embedded default: state lives as long as the
 * process. It keeps the keys it was given so a test can read them back.
 */
export function createMemoryStateStore(initial: ReadonlyMap<string, string> = new Map()): StateStore & { readonly entries: ReadonlyMap<string, string> } {
  const entries = new Map(initial);
  return {
    entries,
    async load() {
      return new Map(entries);
    },
    set(key, value) {
      if (value === null) entries.delete(key);
      else entries.set(key, value);
    },
    forget(patterns) {
      for (const key of [...entries.keys()]) if (matchesKeyPattern(patterns, key)) entries.delete(key);
    },
    async settled() {},
    backlog: 0,
    async close() {},
  };
}

/** matchesKeyPattern tells whether key is one of patterns, or under one ending in ".>" (as NATS subjects match). */
export function matchesKeyPattern(patterns: readonly string[], key: string): boolean {
  return patterns.some((p) => (p.endsWith(".>") ? key.startsWith(p.slice(0, -1)) : key === p));
}
