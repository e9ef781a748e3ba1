// The NATS adapter that announces job transitions for dashboards and
// notifications (DESIGN.md, "NATS subjects": pkgfarm.build.<build>.job.<state>),
// and builds starting and ending (pkgfarm.build.<build>.started / .ended).
//
// This is core NATS, not JetStream: an event is a notification, not a record.
// The durable truth is depgraph's own state (WatchJobs, GetBuild); a dashboard
// that was away catches up from there, so at-most-once delivery is enough and
// a slow or absent NATS must never slow down or break scheduling.
import { toJsonString } from "@bufbuild/protobuf";
import { Events, type NatsConnection } from "nats";
import type { Logger } from "pino";
import { WatchJobsResponseSchema } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { buildEventToWire, watchBuildEvents, type BuildEvent } from "./build-events.js";
import { buildToWire, transitionToWire } from "./convert.js";
import type { JobState, JobTransition } from "./core/build.js";
import type { DepGraph } from "./core/depgraph.js";

export interface JobEventPublisherOptions {
  /**
   * The connection to publish on, connected. The publisher does not own it:
   * stop() leaves it open. Connect it with reconnect enabled (e.g.
   * maxReconnectAttempts: -1) so an outage delays events instead of ending them.
   */
  readonly nc: NatsConnection;
  readonly depgraph: DepGraph;
  readonly logger: Logger;
  /** First subject tokens, used as given (it may hold dots, e.g. "acme.pkgfarm"); default "pkgfarm". */
  readonly subjectPrefix?: string;
  /** Events kept while NATS is unreachable; beyond it the oldest are dropped. Default 10000. */
  readonly maxBufferedEvents?: number;
}

/** JobEventPublisher is a running subscription of depgraph transitions to NATS. */
export interface JobEventPublisher {
  /**
   * Stops listening; resolves when queued events (those kept during an outage
   * too) are flushed to the server, or after timeoutMs (default 5000) if it
   * stays unreachable. Never rejects.
   */
  stop(timeoutMs?: number): Promise<void>;
  /** Events handed to the connection. */
  readonly published: number;
  /** Events kept while disconnected, waiting for the reconnect. */
  readonly buffered: number;
  /** Events lost: refused by the connection, or dropped from a full or abandoned buffer. */
  readonly failed: number;
}

const DEFAULT_PREFIX = "pkgfarm";
const DEFAULT_STOP_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_BUFFERED = 10_000;
// One warning per interval: a NATS that is gone for good would otherwise log
// once per transition, thousands a minute in a large build.
const WARN_INTERVAL_MS = 10_000;
// Characters that would split a subject token or act as a wildcard.
const UNSAFE_TOKEN = /[.*>\s]/g;

/** subjectToken makes s one safe subject token: '.', '*', '>' and whitespace become '_'. */
function subjectToken(s: string): string {
  return s === "" ? "_" : s.replace(UNSAFE_TOKEN, "_");
}

/**
 * jobEventSubject is the subject a transition into state is published on,
 * `<prefix>.build.<buildId>.job.<state>`. Subscribers use it (or
 * `<prefix>.build.*.job.failed`, `<prefix>.build.<id>.>`) to pick what they watch.
 */
export function jobEventSubject(prefix: string, buildId: string, state: JobState): string {
  return `${prefix}.build.${subjectToken(buildId)}.job.${subjectToken(state)}`;
}

/**
 * buildEventSubject is the subject a build's start or end is published on,
 * `<prefix>.build.<buildId>.started` or `.ended`; `<prefix>.build.*.ended`
 * picks every build's end.
 */
export function buildEventSubject(prefix: string, buildId: string, kind: BuildEvent["kind"]): string {
  return `${prefix}.build.${subjectToken(buildId)}.${kind}`;
}

interface JobEvent {
  readonly subject: string;
  readonly payload: string;
}

/**
 * startJobEventPublisher publishes every job transition of depgraph on NATS,
 * with the WatchJobsResponse message as protobuf JSON for payload, so a
 * dashboard reads it with JSON.parse and no protobuf library.
 *
 * It never throws into depgraph: the listener runs inside depgraph's state
 * changes, so a failure here would leave a build half-updated. A lost event is
 * counted and logged instead.
 *
 * Outages: the events of an outage should arrive late rather than not at all,
 * and depgraph must never wait for NATS. nats.js (2.x) does not give us that by
 * itself: it resets its outbound buffer on every reconnect attempt
 * (ProtocolHandler.prepare), so whatever was published while disconnected is
 * silently dropped. So the publisher keeps events itself between the
 * connection's Disconnect and Reconnect status events, bounded by
 * maxBufferedEvents, and sends them in order once reconnected. Core NATS stays
 * at-most-once: bytes written to a socket the server has just dropped, before
 * the client notices, are still lost.
 */
export function startJobEventPublisher(options: JobEventPublisherOptions): JobEventPublisher {
  const { nc, depgraph, logger } = options;
  const prefix = options.subjectPrefix ?? DEFAULT_PREFIX;
  const maxBuffered = options.maxBufferedEvents ?? DEFAULT_MAX_BUFFERED;
  let published = 0;
  let failed = 0;
  // Whether publishes reach a socket; cleared between Disconnect and Reconnect.
  let connected = true;
  const queue: JobEvent[] = [];
  let drained: (() => void) | undefined;
  let stopped = false;
  let stopping: Promise<void> | undefined;

  let lastWarnAt = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  const warnRateLimited = (fields: Record<string, unknown>, msg: string): void => {
    const now = Date.now();
    if (now - lastWarnAt < WARN_INTERVAL_MS) {
      suppressed++;
      return;
    }
    lastWarnAt = now;
    logger.warn({ ...fields, failed, suppressed }, msg);
    suppressed = 0;
  };

  const send = (event: JobEvent): void => {
    try {
      nc.publish(event.subject, event.payload);
      published++;
    } catch (err) {
      failed++;
      warnRateLimited({ err, subject: event.subject }, "job event not published");
    }
  };

  const flushQueue = (): void => {
    for (const event of queue.splice(0)) send(event);
    drained?.();
  };

  const abandonQueue = (why: string): void => {
    if (queue.length > 0) {
      failed += queue.length;
      logger.warn({ events: queue.length, failed }, `job events dropped: ${why}`);
      queue.length = 0;
    }
    drained?.();
  };

  const onTransition = (t: JobTransition): void => {
    let event: JobEvent;
    try {
      event = { subject: jobEventSubject(prefix, t.buildId, t.to), payload: toJsonString(WatchJobsResponseSchema, transitionToWire(t)) };
    } catch (err) {
      failed++;
      warnRateLimited({ err, buildId: t.buildId, pkgname: t.pkgname }, "job event not encoded");
      return;
    }
    enqueue(event);
  };

  const onBuildEvent = (e: BuildEvent): void => {
    let event: JobEvent;
    try {
      const build = buildToWire(e.build);
      build.problem = depgraph.buildProblem(e.build.id);
      build.scanId = depgraph.buildScan(e.build.id);
      event = { subject: buildEventSubject(prefix, e.build.id, e.kind), payload: toJsonString(WatchJobsResponseSchema, buildEventToWire(e, build)) };
    } catch (err) {
      failed++;
      warnRateLimited({ err, buildId: e.build.id }, "build event not encoded");
      return;
    }
    enqueue(event);
  };

  const enqueue = (event: JobEvent): void => {
    // A closed connection will not come back: send, so the refusal is counted.
    if (connected || nc.isClosed()) {
      send(event);
      return;
    }
    if (queue.length >= maxBuffered) {
      queue.shift();
      failed++;
      warnRateLimited({ maxBufferedEvents: maxBuffered }, "job event buffer full while NATS is unreachable; dropping the oldest");
    }
    queue.push(event);
  };

  // nc.status() is typed AsyncIterable but is a nats.js QueuedIterator, whose
  // stop() ends the loop below without waiting for another status event.
  const status = nc.status();
  const watching = (async () => {
    for await (const s of status) {
      if (s.type === Events.Disconnect) {
        connected = false;
        logger.info({ server: s.data }, "NATS disconnected; keeping job events until it is back");
      } else if (s.type === Events.Reconnect) {
        connected = true;
        if (queue.length > 0) logger.info({ server: s.data, events: queue.length }, "NATS reconnected; sending kept job events");
        flushQueue();
      }
    }
    // The iterator ends when the connection closes for good (or on stop()).
    connected = false;
    if (!stopped) abandonQueue("the NATS connection is closed");
  })().catch((err: unknown) => {
    logger.error({ err }, "watching the NATS connection status failed");
  });

  const offTransitions = depgraph.onTransition(onTransition);
  const offBuildEvents = watchBuildEvents(depgraph, Date.now, onBuildEvent);
  const unsubscribe = () => {
    offTransitions();
    offBuildEvents();
  };

  const stop = async (timeoutMs: number): Promise<void> => {
    unsubscribe();
    stopped = true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      if (queue.length > 0 && !nc.isClosed()) {
        const emptied = new Promise<"drained">((resolve) => {
          drained = () => resolve("drained");
        });
        if ((await Promise.race([emptied, timedOut])) === "timeout") return;
      }
      if (nc.isClosed()) return;
      // flush() resolves on the server's PONG, which follows every PUB sent
      // before it. Its rejection (a disconnect) is handled here, since it may
      // come after the timeout won.
      const flushed = nc.flush().then(
        () => "flushed" as const,
        (err: unknown) => {
          logger.warn({ err, published }, "job events not confirmed flushed: connection lost");
          return "lost" as const;
        },
      );
      if ((await Promise.race([flushed, timedOut])) === "timeout") {
        logger.warn({ timeoutMs, published }, "job events not confirmed flushed before the stop timeout");
      }
    } finally {
      clearTimeout(timer);
      (status as { stop?: () => void }).stop?.();
      abandonQueue("stopped while NATS was unreachable");
      await watching;
    }
  };

  return {
    stop(timeoutMs = DEFAULT_STOP_TIMEOUT_MS) {
      stopping ??= stop(timeoutMs);
      return stopping;
    },
    get published() {
      return published;
    },
    get buffered() {
      return queue.length;
    },
    get failed() {
      return failed;
    },
  };
}
