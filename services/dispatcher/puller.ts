import type { Logger } from "pino";
import type { Assignment } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { AgentRegistry } from "./core/registry.js";
import type { DepGraphLink } from "./depgraph-link.js";
import { capacityToWire } from "./resources-wire.js";

export interface PullersOptions {
  readonly registry: AgentRegistry;
  readonly depgraph: DepGraphLink;
  readonly logger: Logger;
  /** Ends every pull loop (the dispatcher shuts down). */
  readonly signal: AbortSignal;
  /** Hands the jobs of one NextReadyJob answer to agents of the platform. */
  readonly place: (platform: string, assignments: readonly Assignment[]) => void;
}

/** Pullers runs one pull loop per platform that has agents. */
export interface Pullers {
  /** Slots of the platform changed (an agent came, a job ended): the loop re-counts, starting if needed. */
  wake(platform: string): void;
}

// Several NextReadyJob calls may be out at once for a platform, together
// asking for no more jobs than there are free slots: one call at a time
// would leave slots that free up during its round trip idle until it returns.
const MAX_PULLS_IN_FLIGHT = 4;

/**
 * The longest wait before asking a failing depgraph again. A restart of
 * depgraph takes seconds, and every second of wait after it is back leaves
 * the whole farm idle; one call per platform every 5 s is no load on a
 * depgraph that is down.
 */
export const MAX_PULL_RETRY_MS = 5_000;

/** pullRetryDelayMs is the wait after the failures-th NextReadyJob failure in a row: 500 ms, doubling, at most MAX_PULL_RETRY_MS. */
export function pullRetryDelayMs(failures: number): number {
  return Math.min(MAX_PULL_RETRY_MS, 250 * 2 ** Math.min(Math.max(failures, 1), 7));
}

/**
 * createPullers asks depgraph for as many jobs as a platform's agents have
 * free slots, and keeps asking while slots are free. A loop ends when its
 * platform has no agents and no call out; the next agent starts a new one.
 * A failing depgraph is retried with exponential backoff (pullRetryDelayMs);
 * once one platform's call succeeds depgraph is back, and the others waiting
 * out a backoff ask at once.
 */
export function createPullers(options: PullersOptions): Pullers {
  const { registry, depgraph, logger, signal, place } = options;
  const pullers = new Map<string, { wake: () => void; depgraphBack: () => void }>();

  const start = (platform: string) => {
    let wake: () => void = () => {};
    let woken = false;
    const puller = {
      wake: () => {
        woken = true;
        wake();
      },
      depgraphBack: () => {
        if (retryAt === 0) return;
        failures = 0;
        retryAt = 0;
        puller.wake();
      },
    };
    pullers.set(platform, puller);
    let requested = 0;
    let inFlight = 0;
    let failures = 0;
    let retryAt = 0;
    const pull = async (want: number) => {
      requested += want;
      inFlight++;
      let assignments: Assignment[] = [];
      try {
        // Scan jobs come first in the answer: ask for them only while an
        // agent that scans has a slot, or they would go straight back.
        // With the agents and what is free on them, depgraph leases only
        // jobs that fit (a job too big for every free agent waits, and does
        // not hold up the ones behind it).
        const agents = registry.hostsFor(platform).map(capacityToWire);
        assignments = await depgraph.nextReadyJobs(platform, want, signal, registry.freeScanSlotsFor(platform) > 0, agents);
        failures = 0;
        retryAt = 0;
        for (const other of pullers.values()) if (other !== puller) other.depgraphBack();
      } catch (e) {
        if (!signal.aborted) {
          failures++;
          const delay = pullRetryDelayMs(failures);
          const thisRetry = Date.now() + delay;
          retryAt = thisRetry;
          // The timer, not the clock, ends the backoff: a timer may fire a
          // millisecond before Date.now() reaches retryAt, and a loop that
          // then found the backoff still running would wait for a wake that
          // never comes.
          setTimeout(() => {
            if (retryAt === thisRetry) retryAt = 0;
            puller.wake();
          }, delay).unref();
          logger.warn({ err: e, platform, retryInMs: delay }, "NextReadyJob failed; retrying");
        }
      } finally {
        requested -= want;
        inFlight--;
      }
      if (assignments.length > 0) place(platform, assignments);
      puller.wake();
    };
    void (async () => {
      while (!signal.aborted) {
        const want = registry.freeSlotsFor(platform) - requested;
        if (want > 0 && inFlight < MAX_PULLS_IN_FLIGHT && retryAt === 0) {
          woken = false;
          void pull(want);
          continue;
        }
        if (inFlight === 0 && !registry.platforms().has(platform)) break;
        if (!woken) await new Promise<void>((resolve) => (wake = resolve));
        woken = false;
      }
      pullers.delete(platform);
    })();
  };

  return {
    wake(platform) {
      const existing = pullers.get(platform);
      if (existing !== undefined) existing.wake();
      else start(platform);
    },
  };
}
