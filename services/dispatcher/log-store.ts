/**
 * LogStore keeps build logs, one file per job of a build, at
 * `<root>/logs/<buildId>/<pkgname>.log`. Output is appended as agents stream
 * it in, and people read it while it grows (`pkgfarm log -f`), so reading
 * and following are first-class: a follower sleeps until an append() or
 * finish() in this process wakes it, and never polls the disk.
 *
 * A job that is retried keeps one log: each attempt starts with a header
 * line rather than truncating, so the output of the attempt that killed an
 * agent is still there to explain why it was retried.
 *
 * Output that names its build phase ("configure", "build", ...) also goes to
 * that phase's own log, `<root>/logs/<buildId>/<pkgname>/<phase>.log`, as
 * pbulk keeps one log per phase: the job's whole log still gets every chunk.
 * A phase's log is complete once the next phase starts, or the job ends.
 */

import { mkdir, open, readdir, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";

export interface LogChunkAt {
  /** Byte offset of `data` within the log. */
  readonly offset: bigint;
  readonly data: Uint8Array;
}

export interface ReadLogOptions {
  /** Byte offset to start from; default 0. */
  readonly offset?: bigint;
  /** Keep yielding new output until finish(), close() or the signal. */
  readonly follow?: boolean;
  /** Ends the read quietly, like ^C on tail -f: what was yielded is still correct. */
  readonly signal?: AbortSignal;
  /** One phase's log instead of the job's whole log. */
  readonly phase?: string;
}

/** StoredLog is one log file of a job: its whole log (phase "") or a phase's. */
export interface StoredLog {
  /** "" for the job's whole log, else the phase ("checksum", "build", ...). */
  readonly phase: string;
  /** Absolute path of the file. */
  readonly file: string;
}

export interface LogStore {
  /** Relative reference recorded in depgraph, e.g. "logs/<buildId>/<pkgname>.log". */
  logRef(buildId: string, pkgname: string): string;
  /**
   * Starts an attempt of a job: writes the line `=== <header> ===`, e.g.
   * begin(b, "gmake-4.4.1", "attempt 2 on agent builder-7"). The attempt
   * number comes from the caller because depgraph, not this store, knows
   * how many attempts there were. Earlier output is kept, and the header
   * starts on a line of its own even if the last attempt died mid-line.
   */
  begin(buildId: string, pkgname: string, header: string): Promise<void>;
  /**
   * Appends output. Calls for one job land in call order even when not
   * awaited. A log appended to without begin() (e.g. after a dispatcher
   * restart, mid-job) is opened as it is. With a phase, the chunk also goes
   * to that phase's log (which starts with the attempt's header line), and
   * the phase before it is complete.
   */
  append(buildId: string, pkgname: string, chunk: Uint8Array, phase?: string): Promise<void>;
  /** Marks the job's log and its phase logs complete for now (followers reading with follow=true then end) and closes their files. */
  finish(buildId: string, pkgname: string): Promise<void>;
  /**
   * Reads from a byte offset; with follow, keeps yielding new data until
   * finish() or the signal aborts (like tail -f). Throws LogNotFound for a
   * log never begun. Each yielded item carries its start offset. A log not
   * active in this process (finished, or written before a restart) is read
   * to its end even with follow.
   */
  read(buildId: string, pkgname: string, options: ReadLogOptions): AsyncIterable<LogChunkAt>;
  /**
   * The job's logs on disk: its whole log first (when it has one), then its
   * phase logs in file-name order (the store does not know phase order).
   */
  listLogs(buildId: string, pkgname: string): Promise<StoredLog[]>;
  /** Finishes every active log, waits for queued writes, and ends all followers. */
  close(): Promise<void>;
}

export interface LogStoreOptions {
  readonly root: string;
}

// ---------------------------------------------------------------------------
// Errors. The gRPC layer maps each to a code; nothing here knows about codes.

/** InvalidLogName: a build id or PKGNAME that cannot be used as a path segment. */
export class InvalidLogName extends Error {
  override readonly name = "InvalidLogName";
  constructor(
    readonly field: "buildId" | "pkgname" | "phase",
    readonly value: string,
    readonly problem: string,
  ) {
    super(`invalid ${field} ${JSON.stringify(value.length > 300 ? `${value.slice(0, 300)}...` : value)}: ${problem}`);
  }
}

/** InvalidLogOffset: a read from a negative offset. */
export class InvalidLogOffset extends Error {
  override readonly name = "InvalidLogOffset";
  constructor(readonly offset: bigint) {
    super(`log offset ${offset} is negative`);
  }
}

/** LogNotFound: no job of this build has written a log (yet). */
export class LogNotFound extends Error {
  override readonly name = "LogNotFound";
  constructor(
    readonly buildId: string,
    readonly pkgname: string,
    readonly phase = "",
  ) {
    super(phase === ""
      ? `build ${buildId} has no log for ${pkgname} (the job has not started, or never ran in this build)`
      : `build ${buildId} has no ${phase} log for ${pkgname} (the job has not reached that phase, or has no such phase)`);
  }
}

/** LogStoreClosed: a write after close(), i.e. during shutdown. */
export class LogStoreClosed extends Error {
  override readonly name = "LogStoreClosed";
  constructor(
    readonly buildId: string,
    readonly pkgname: string,
  ) {
    super(`cannot write the log of ${pkgname} in build ${buildId}: the log store is closed`);
  }
}

// ---------------------------------------------------------------------------

const CHUNK_BYTES = 256 * 1024;
const NEWLINE = 0x0a;
// Like platform names in the package store, plus '+': PKGNAMEs such as
// "libsigc++-2.12.1" and "gtk2+-2.24.33" are real.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const SUFFIX = ".log";

function checkName(field: "buildId" | "pkgname" | "phase", value: string): void {
  if (!NAME_RE.test(value)) {
    throw new InvalidLogName(field, value, "must start with a letter or digit and hold only letters, digits, '.', '_', '+' and '-'");
  }
  if (value.includes("..")) throw new InvalidLogName(field, value, "must not contain '..'");
  if (Buffer.byteLength(value) + SUFFIX.length > 255) throw new InvalidLogName(field, value, `is longer than ${255 - SUFFIX.length} bytes`);
}

/**
 * ActiveLog is one job's log while this process writes it. It lives from the
 * first begin()/append() until finish() has run and nothing else is queued.
 */
interface ActiveLog {
  readonly key: string;
  readonly file: string;
  /** Open (read + append) from the first write until finish(). */
  handle: FileHandle | undefined;
  /** Bytes in the file once every completed write is counted. */
  size: bigint;
  endsWithNewline: boolean;
  finished: boolean;
  /** Bumped on every write and on finish, so a follower can tell it missed nothing. */
  version: number;
  /** Followers asleep until the next bump. */
  readonly waiters: Set<() => void>;
  /** Writes run one after another in call order. */
  tail: Promise<unknown>;
  queued: number;
}

/** JobPhases is what the store knows of a running job's phase logs. */
interface JobPhases {
  /** The current attempt's header, written at the top of each phase log it opens. */
  readonly header: string | undefined;
  /** Phases that have a log in this attempt. */
  readonly seen: Set<string>;
  /** The phase output last came for; its log is complete once another starts. */
  current: string | undefined;
}

export function createLogStore(options: LogStoreOptions): LogStore {
  const root = path.resolve(options.root);
  const active = new Map<string, ActiveLog>();
  const phasesByJob = new Map<string, JobPhases>();
  let closed = false;

  // A PKGNAME holds no "/", so a phase's key never equals a job's.
  const locate = (buildId: string, pkgname: string, phase?: string) => {
    checkName("buildId", buildId);
    checkName("pkgname", pkgname);
    if (phase === undefined || phase === "") return { key: `${buildId}/${pkgname}`, file: path.join(root, "logs", buildId, pkgname + SUFFIX) };
    checkName("phase", phase);
    return { key: `${buildId}/${pkgname}/${phase}`, file: path.join(root, "logs", buildId, pkgname, phase + SUFFIX) };
  };

  const bump = (log: ActiveLog) => {
    log.version += 1;
    const waiters = [...log.waiters];
    log.waiters.clear();
    for (const wake of waiters) wake();
  };

  /** Runs `op` after every earlier operation on the same log. */
  const enqueue = (buildId: string, pkgname: string, op: (log: ActiveLog) => Promise<void>, phase?: string): Promise<void> => {
    if (closed) return Promise.reject(new LogStoreClosed(buildId, pkgname));
    let where: { key: string; file: string };
    try {
      where = locate(buildId, pkgname, phase);
    } catch (error) {
      return Promise.reject(error);
    }
    let log = active.get(where.key);
    if (log === undefined) {
      log = { ...where, handle: undefined, size: 0n, endsWithNewline: true, finished: false, version: 0, waiters: new Set(), tail: Promise.resolve(), queued: 0 };
      active.set(where.key, log);
    }
    const current = log;
    current.queued += 1;
    const result = current.tail.then(() => op(current));
    current.tail = result
      .catch(() => {})
      .then(() => {
        current.queued -= 1;
        // Forget a finished log once nothing more is queued on it, so the
        // map holds only the jobs running now, not every job of every build.
        if (current.queued === 0 && current.finished && active.get(current.key) === current) active.delete(current.key);
      });
    return result;
  };

  const write = async (log: ActiveLog, data: Uint8Array) => {
    if (log.handle === undefined) {
      await mkdir(path.dirname(log.file), { recursive: true });
      // "a+": appends always land at the end, and the last byte stays readable.
      log.handle = await open(log.file, "a+", 0o644);
      log.size = (await log.handle.stat({ bigint: true })).size;
      log.endsWithNewline = log.size === 0n || (await lastByte(log.handle, log.size)) === NEWLINE;
    }
    log.finished = false;
    if (data.byteLength === 0) return;
    let offset = 0;
    while (offset < data.byteLength) {
      const { bytesWritten } = await log.handle.write(data, offset, data.byteLength - offset, null);
      offset += bytesWritten;
    }
    log.size += BigInt(data.byteLength);
    log.endsWithNewline = data[data.byteLength - 1] === NEWLINE;
    bump(log);
  };

  /** Starts an attempt in a log: `=== header ===` on a line of its own. */
  const writeHeader = async (log: ActiveLog, header: string) => {
    await write(log, Buffer.alloc(0)); // opens the file and learns how it ends
    const line = `${log.endsWithNewline ? "" : "\n"}=== ${header.replace(/[\r\n]+/g, " ")} ===\n`;
    await write(log, Buffer.from(line));
  };

  const finish = async (log: ActiveLog) => {
    const handle = log.handle;
    log.handle = undefined;
    log.finished = true;
    // Wake followers even if the close fails: they must not hang on it.
    bump(log);
    // No fsync: a log is diagnostics, and the page cache outlives a
    // dispatcher crash; paying a disk flush per job is not worth it.
    await handle?.close();
  };

  return {
    logRef(buildId, pkgname) {
      checkName("buildId", buildId);
      checkName("pkgname", pkgname);
      return `logs/${buildId}/${pkgname}${SUFFIX}`;
    },

    begin(buildId, pkgname, header) {
      const done = enqueue(buildId, pkgname, (log) => writeHeader(log, header));
      if (!closed) phasesByJob.set(`${buildId}/${pkgname}`, { header, seen: new Set(), current: undefined });
      return done;
    },

    append(buildId, pkgname, chunk, phase) {
      if (phase === undefined || phase === "") return enqueue(buildId, pkgname, (log) => write(log, chunk));
      try {
        checkName("phase", phase);
      } catch (error) {
        return Promise.reject(error);
      }
      const whole = enqueue(buildId, pkgname, (log) => write(log, chunk));
      if (closed) return whole;
      const jobKey = `${buildId}/${pkgname}`;
      let job = phasesByJob.get(jobKey);
      if (job === undefined) phasesByJob.set(jobKey, job = { header: undefined, seen: new Set(), current: undefined });
      const steps = [whole];
      if (job.current !== undefined && job.current !== phase) steps.push(enqueue(buildId, pkgname, finish, job.current));
      job.current = phase;
      const header = job.seen.has(phase) ? undefined : job.header;
      job.seen.add(phase);
      steps.push(enqueue(buildId, pkgname, async (log) => {
        if (header !== undefined) await writeHeader(log, header);
        await write(log, chunk);
      }, phase));
      return Promise.all(steps).then(() => {});
    },

    finish(buildId, pkgname) {
      // close() already finished every log; shutdown code need not care.
      if (closed) return Promise.resolve();
      const jobKey = `${buildId}/${pkgname}`;
      const phases = [...(phasesByJob.get(jobKey)?.seen ?? [])];
      phasesByJob.delete(jobKey);
      return Promise.all([enqueue(buildId, pkgname, finish), ...phases.map((phase) => enqueue(buildId, pkgname, finish, phase))]).then(() => {});
    },

    read(buildId, pkgname, readOptions) {
      // Checked here, not in the generator, so a bad request fails at the call.
      const phase = readOptions.phase ?? "";
      const { key, file } = locate(buildId, pkgname, phase);
      const offset = readOptions.offset ?? 0n;
      if (offset < 0n) throw new InvalidLogOffset(offset);
      return follow({ buildId, pkgname, phase, key, file, offset, follow: readOptions.follow ?? false, signal: readOptions.signal });
    },

    async listLogs(buildId, pkgname) {
      const whole = locate(buildId, pkgname).file;
      const out: StoredLog[] = [];
      if (await isFile(whole)) out.push({ phase: "", file: whole });
      const phaseDir = whole.slice(0, -SUFFIX.length);
      let names: string[] = [];
      try {
        names = await readdir(phaseDir);
      } catch (error) {
        if (!(error instanceof Error && ["ENOENT", "ENOTDIR"].includes((error as NodeJS.ErrnoException).code ?? ""))) throw error;
      }
      for (const name of names.sort()) {
        if (name.endsWith(SUFFIX) && NAME_RE.test(name)) out.push({ phase: name.slice(0, -SUFFIX.length), file: path.join(phaseDir, name) });
      }
      return out;
    },

    async close() {
      closed = true;
      phasesByJob.clear();
      const logs = [...active.values()];
      await Promise.all(
        logs.map((log) => {
          const result = log.tail.then(() => finish(log));
          log.tail = result.catch(() => {});
          return result;
        }),
      );
      active.clear();
    },
  };

  async function* follow(r: {
    buildId: string;
    pkgname: string;
    phase: string;
    key: string;
    file: string;
    offset: bigint;
    follow: boolean;
    signal: AbortSignal | undefined;
  }): AsyncGenerator<LogChunkAt> {
    let handle: FileHandle | undefined;
    let position = r.offset;
    const scratch = Buffer.allocUnsafe(CHUNK_BYTES);
    try {
      for (;;) {
        if (r.signal?.aborted) return;
        // Looked up each round: the log may have finished (and been
        // forgotten), or a new attempt may have begun, since the last one.
        const log = active.get(r.key);
        const live = r.follow && log !== undefined && !log.finished;
        const version = log?.version;

        // No file is fine for a log that is active here: begin() was called
        // but nothing has reached the disk yet.
        handle ??= await openForRead(r.file);
        if (handle === undefined && log === undefined) throw new LogNotFound(r.buildId, r.pkgname, r.phase);
        // Drain what is on disk now.
        while (handle !== undefined) {
          if (r.signal?.aborted) return;
          const { bytesRead } = await handle.read(scratch, 0, CHUNK_BYTES, Number(position));
          if (bytesRead === 0) break;
          const data = Buffer.copyBytesFrom(scratch, 0, bytesRead);
          yield { offset: position, data };
          position += BigInt(bytesRead);
        }

        if (!live) return;
        // Something was written or finished while we read: go round again
        // rather than sleep through it.
        if (log.version !== version) continue;
        if (!(await nextChange(log, r.signal))) return;
      }
    } finally {
      await handle?.close();
    }
  }
}

/** Resolves true on the log's next write or finish, false if the signal aborts first. */
function nextChange(log: ActiveLog, signal: AbortSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onChange = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    };
    const onAbort = () => {
      log.waiters.delete(onChange);
      resolve(false);
    };
    log.waiters.add(onChange);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Opens a log for reading; undefined if there is no file (yet). */
async function openForRead(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, "r");
  } catch (error) {
    if (error instanceof Error && ["ENOENT", "ENOTDIR"].includes((error as NodeJS.ErrnoException).code ?? "")) return undefined;
    throw error;
  }
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch (error) {
    if (error instanceof Error && ["ENOENT", "ENOTDIR"].includes((error as NodeJS.ErrnoException).code ?? "")) return false;
    throw error;
  }
}

async function lastByte(handle: FileHandle, size: bigint): Promise<number | undefined> {
  const one = Buffer.alloc(1);
  const { bytesRead } = await handle.read(one, 0, 1, Number(size - 1n));
  return bytesRead === 1 ? one[0] : undefined;
}
