/**
 * Channel is an unbounded async queue: producers push, one consumer iterates.
 * A server stream's handler yields from it, so messages can be sent from
 * anywhere (assignment loop, drain RPC, timers) in the order they were pushed.
 */
export interface Channel<T> extends AsyncIterable<T> {
  push(item: T): void;
  /** Ends the iteration after the queued items. */
  close(): void;
  /** Ends the iteration with an error, dropping queued items. */
  fail(error: unknown): void;
  readonly closed: boolean;
}

export function createChannel<T>(): Channel<T> {
  const queue: T[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  let failure: { error: unknown } | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    get closed() {
      return closed;
    },
    push(item) {
      if (closed) return;
      queue.push(item);
      notify();
    },
    close() {
      closed = true;
      notify();
    },
    fail(error) {
      if (failure === undefined) failure = { error };
      closed = true;
      notify();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (failure !== undefined) throw failure.error;
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        if (closed) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}
