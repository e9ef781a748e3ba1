import { setImmediate as nextTurn } from "node:timers/promises";
import type { Steps } from "./core/steps.js";

/**
 * Longest the event loop is held by one run of slices. A call that comes in
 * meanwhile needs a few turns of the loop (the request read, the handler,
 * the response written), each behind one run: at 20 ms a health check took
 * 100 ms; at 8 ms it takes about 40.
 */
export const DEFAULT_SLICE_MS = 8;

/**
 * runSliced does the core's steps a slice at a time: it runs steps for up to
 * sliceMs, then lets every pending I/O callback and call run (setImmediate)
 * before going on. An abort (the call was cancelled, the server is closing)
 * stops the work between slices; the core's steps are written so that
 * stopping early leaves nothing half-done.
 */
export async function runSliced<T>(steps: Steps<T>, signal?: AbortSignal, sliceMs = DEFAULT_SLICE_MS): Promise<T> {
  try {
    for (;;) {
      const end = performance.now() + sliceMs;
      do {
        const step = steps.next();
        if (step.done) return step.value;
      } while (performance.now() < end);
      await nextTurn();
      signal?.throwIfAborted();
    }
  } finally {
    steps.return(undefined as never);
  }
}

// Characters of text handed to a parser at once by pushInSlices (about 1 ms of parsing).
const PIECE_CHARS = 64 * 1024;

/**
 * pushInSlices feeds text to push a piece at a time, cut after a newline so
 * no line and no character is split, and lets other work run whenever a
 * slice's time is used up. An ImportScan message can be 16 MiB, and parsing
 * one megabyte takes 50-100 ms.
 */
export async function pushInSlices(push: (piece: string) => void, text: string, signal?: AbortSignal, sliceMs = DEFAULT_SLICE_MS): Promise<void> {
  let at = 0;
  let end = performance.now() + sliceMs;
  while (at < text.length) {
    const newline = text.indexOf("\n", at + PIECE_CHARS);
    const next = newline < 0 ? text.length : newline + 1;
    push(at === 0 && next === text.length ? text : text.slice(at, next));
    at = next;
    if (at < text.length && performance.now() >= end) {
      await nextTurn();
      signal?.throwIfAborted();
      end = performance.now() + sliceMs;
    }
  }
}
