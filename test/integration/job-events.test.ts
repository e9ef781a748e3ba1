import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { connect, Events, type Msg, type NatsConnection, type Subscription } from "nats";
import { pino, type Logger } from "pino";
import { DepGraph } from "../../services/depgraph/core/depgraph.js";
import { buildEventSubject, jobEventSubject, startJobEventPublisher } from "../../services/depgraph/job-events.js";
import { record, testDepGraphOptions, type RecordSpec } from "../support/records.js";
import { startNatsServer, type TestNatsServer } from "../support/nats-server.js";

const PLATFORM = "NetBSD-10.0-x86_64";
const WAIT_MS = 3_000;

// zlib <- curl <- app: building zlib makes curl ready; failing curl fails app indirectly.
const TREE: RecordSpec[] = [
  { pkgname: "zlib-1.3.1", location: "devel/zlib" },
  { pkgname: "curl-8.11.1", location: "www/curl", deps: ["zlib>=1.2 devel/zlib"] },
  { pkgname: "app-1.0", location: "misc/app", deps: ["curl>=8 www/curl"] },
];

const BINARY = { fileName: "x.tgz", sha256: "0".repeat(64), sizeBytes: 1 };

let ns: TestNatsServer;
before(async () => {
  ns = await startNatsServer();
});
after(async () => {
  await ns.stop();
});

/** newDepGraph is the in-process core; buildIds lets a test choose the build's id. */
function newDepGraph(buildIds: () => string = randomUUID): DepGraph {
  let first = true;
  const depgraph = new DepGraph(testDepGraphOptions({
    // The first id is the build's; later ones are leases.
    newId: () => (first ? ((first = false), buildIds()) : randomUUID()),
  }));
  depgraph.tree.replace(TREE.map(record), "tree");
  return depgraph;
}

function createBuild(depgraph: DepGraph): string {
  return depgraph.createBuild({ platform: PLATFORM, mode: "full", policy: undefined, limitTo: [], packagesDir: "", binaryPackages: new Map() }).id;
}

/** leaseOne leases the next ready job and returns its lease reference. */
function leaseOne(depgraph: DepGraph, pkgname: string) {
  const [a] = depgraph.nextReadyJobs(PLATFORM, "agent-1", 1, undefined);
  assert.ok(a !== undefined, `a job is ready for ${pkgname}`);
  assert.equal(a.job.pkgname, pkgname);
  return { buildId: a.build.id, pkgname, leaseId: a.lease.id };
}

function markDone(depgraph: DepGraph, ref: ReturnType<typeof leaseOne>, succeeded: boolean): void {
  depgraph.markDone([{
    ...ref,
    succeeded,
    durationMs: 1000,
    logRef: "log",
    binaryPackage: succeeded ? BINARY : undefined,
    failureReason: succeeded ? "" : "configure failed",
  }]);
}

/** Inbox collects a subscription's messages so a test can wait for the next n. */
class Inbox {
  private readonly messages: Msg[] = [];
  private wake: (() => void) | undefined;
  readonly sub: Subscription;

  constructor(nc: NatsConnection, subject: string) {
    this.sub = nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err === null) this.messages.push(msg);
        this.wake?.();
      },
    });
  }

  async take(n: number, timeoutMs = WAIT_MS): Promise<{ subject: string; json: Record<string, unknown> }[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`expected ${n} messages within ${timeoutMs} ms, got ${this.messages.length}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.messages.splice(0, n).map((m) => ({ subject: m.subject, json: m.json<Record<string, unknown>>() }));
  }

  get pending(): number {
    return this.messages.length;
  }
}

/** statusSeen resolves at the connection's next status event of type. */
function statusSeen(nc: NatsConnection, type: string): Promise<void> {
  const status = nc.status();
  return (async () => {
    for await (const s of status) if (s.type === type) return;
  })();
}

function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

test("each transition is published on <prefix>.build.<build>.job.<state> as protobuf JSON", async () => {
  const pubNc = await connect({ servers: ns.url });
  const subNc = await connect({ servers: ns.url });
  const inbox = new Inbox(subNc, "pkgfarm.build.*.job.>");
  await subNc.flush(); // the SUB is in place before anything is published
  const depgraph = newDepGraph();
  const { logger } = captureLogger();
  const publisher = startJobEventPublisher({ nc: pubNc, depgraph, logger });
  try {
    const buildId = createBuild(depgraph);
    markDone(depgraph, leaseOne(depgraph, "zlib-1.3.1"), true);
    await publisher.stop();

    const events = await inbox.take(3);
    assert.deepEqual(events.map((e) => e.subject), [
      `pkgfarm.build.${buildId}.job.leased`,
      `pkgfarm.build.${buildId}.job.succeeded`,
      `pkgfarm.build.${buildId}.job.ready`,
    ]);
    assert.deepEqual(events.map((e) => [e.json["pkgname"], e.json["fromState"], e.json["toState"]]), [
      ["zlib-1.3.1", "JOB_STATE_READY", "JOB_STATE_LEASED"],
      ["zlib-1.3.1", "JOB_STATE_LEASED", "JOB_STATE_SUCCEEDED"],
      ["curl-8.11.1", "JOB_STATE_PENDING", "JOB_STATE_READY"],
    ]);
    const leased = events[0]!.json;
    assert.equal(leased["buildId"], buildId);
    assert.equal(leased["location"], "devel/zlib");
    assert.equal(leased["agentId"], "agent-1");
    assert.equal(typeof leased["time"], "string", "a Timestamp is an RFC 3339 string in JSON");
    assert.equal(publisher.published, 4, "the three transitions and the build's start");
    assert.equal(publisher.failed, 0);

    // Stopped: later transitions are not published.
    leaseOne(depgraph, "curl-8.11.1");
    await pubNc.flush();
    await subNc.flush();
    assert.equal(inbox.pending, 0);
    assert.equal(publisher.published, 4);
  } finally {
    await pubNc.close();
    await subNc.close();
  }
});

test("a subject prefix is used as given, and unsafe build id characters become '_'", async () => {
  const pubNc = await connect({ servers: ns.url });
  const inbox = new Inbox(pubNc, "farm2.build.*.job.>");
  await pubNc.flush();
  const depgraph = newDepGraph(() => "odd.id *>x");
  const publisher = startJobEventPublisher({ nc: pubNc, depgraph, logger: captureLogger().logger, subjectPrefix: "farm2" });
  try {
    createBuild(depgraph);
    leaseOne(depgraph, "zlib-1.3.1");
    const [event] = await inbox.take(1);
    assert.equal(event!.subject, "farm2.build.odd_id___x.job.leased");
    assert.equal(event!.json["buildId"], "odd.id *>x", "the payload keeps the real id");
    assert.equal(jobEventSubject("pkgfarm", "b", "indirect-failed"), "pkgfarm.build.b.job.indirect-failed");
    await publisher.stop();
  } finally {
    await pubNc.close();
  }
});

test("events raised while NATS is down arrive after it comes back", async () => {
  const pubNc = await connect({ servers: ns.url, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  // The observer shares the publisher's connection: on reconnect nats.js re-sends
  // its SUBs before the publisher sends the kept events, so they cannot slip past
  // a subscriber that has not reconnected yet (a separate observer could race).
  const inbox = new Inbox(pubNc, "pkgfarm.build.*.job.>");
  await pubNc.flush();
  const depgraph = newDepGraph();
  const publisher = startJobEventPublisher({ nc: pubNc, depgraph, logger: captureLogger().logger });
  try {
    const buildId = createBuild(depgraph);
    markDone(depgraph, leaseOne(depgraph, "zlib-1.3.1"), true);
    await inbox.take(3);

    const disconnected = statusSeen(pubNc, Events.Disconnect);
    await ns.kill();
    await disconnected; // so the publishes below are buffered, not written to a dead socket
    const curl = leaseOne(depgraph, "curl-8.11.1");
    markDone(depgraph, curl, false);
    assert.equal(depgraph.listBuilds()[0]!.byPkgname.get("app-1.0")!.state, "indirect-failed", "depgraph went on");
    // The build's end is announced once the call that ended it is over.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(publisher.published, 4, "three transitions and the build's start");
    assert.equal(publisher.buffered, 4, "the outage's events are kept: three transitions and the build's end");

    const reconnected = statusSeen(pubNc, Events.Reconnect);
    await ns.restart();
    await reconnected;
    const events = await inbox.take(3);
    assert.deepEqual(events.map((e) => [e.subject, e.json["pkgname"], e.json["fromState"], e.json["toState"]]), [
      [`pkgfarm.build.${buildId}.job.leased`, "curl-8.11.1", "JOB_STATE_READY", "JOB_STATE_LEASED"],
      [`pkgfarm.build.${buildId}.job.failed`, "curl-8.11.1", "JOB_STATE_LEASED", "JOB_STATE_FAILED"],
      [`pkgfarm.build.${buildId}.job.indirect-failed`, "app-1.0", "JOB_STATE_PENDING", "JOB_STATE_INDIRECT_FAILED"],
    ]);
    assert.equal(publisher.published, 8);
    assert.equal(publisher.buffered, 0);
    assert.equal(publisher.failed, 0);
    await publisher.stop(2_000);
  } finally {
    await pubNc.close();
  }
});

test("stop() gives up on kept events after its timeout while NATS stays down", async () => {
  const pubNc = await connect({ servers: ns.url, reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const depgraph = newDepGraph();
  const { logger, lines } = captureLogger();
  const publisher = startJobEventPublisher({ nc: pubNc, depgraph, logger });
  try {
    createBuild(depgraph);
    const disconnected = statusSeen(pubNc, Events.Disconnect);
    await ns.kill();
    await disconnected;
    leaseOne(depgraph, "zlib-1.3.1");
    assert.equal(publisher.buffered, 1);
    const started = Date.now();
    await publisher.stop(300);
    assert.ok(Date.now() - started < 2_000, "stop() keeps to its timeout");
    assert.equal(publisher.buffered, 0);
    assert.equal(publisher.failed, 1);
    assert.ok(lines.some((l) => l["msg"] === "job events dropped: stopped while NATS was unreachable"));
  } finally {
    await ns.restart();
    await pubNc.close();
  }
});

test("a refused publish is counted and logged at most once per 10 s, never thrown into depgraph", async () => {
  const nc = await connect({ servers: ns.url });
  await nc.close(); // publish on a closed connection throws
  const depgraph = newDepGraph();
  const { logger, lines } = captureLogger();
  const publisher = startJobEventPublisher({ nc, depgraph, logger });
  createBuild(depgraph);
  markDone(depgraph, leaseOne(depgraph, "zlib-1.3.1"), true);
  assert.equal(depgraph.listBuilds()[0]!.byPkgname.get("zlib-1.3.1")!.state, "succeeded");
  assert.equal(publisher.published, 0);
  assert.equal(publisher.failed, 4, "the build's start and three transitions");
  const warnings = lines.filter((l) => l["msg"] === "job event not published");
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]!["subject"], buildEventSubject("pkgfarm", depgraph.listBuilds()[0]!.id, "started"));
  await publisher.stop(100); // resolves on a closed connection
});

test("a build's start and end are published on <prefix>.build.<build>.started and .ended, with its state and counts", async () => {
  const nc = await connect({ servers: ns.url });
  const inbox = new Inbox(nc, "pkgfarm.build.*.*");
  await nc.flush();
  const depgraph = newDepGraph();
  const publisher = startJobEventPublisher({ nc, depgraph, logger: captureLogger().logger });
  try {
    const buildId = createBuild(depgraph);
    const [started] = await inbox.take(1);
    assert.equal(started!.subject, `pkgfarm.build.${buildId}.started`);
    const startedEvent = started!.json["buildEvent"] as { kind: string; build: { id: string; state: string; totalJobs: number } };
    assert.equal(startedEvent.kind, "BUILD_EVENT_KIND_STARTED");
    assert.equal(startedEvent.build.id, buildId);
    assert.equal(startedEvent.build.state, "BUILD_STATE_RUNNING");
    assert.equal(startedEvent.build.totalJobs, 3);
    assert.equal(started!.json["pkgname"], undefined, "a build event carries no job");

    markDone(depgraph, leaseOne(depgraph, "zlib-1.3.1"), true);
    markDone(depgraph, leaseOne(depgraph, "curl-8.11.1"), false);
    const [ended] = await inbox.take(1);
    assert.equal(ended!.subject, `pkgfarm.build.${buildId}.ended`);
    const endedEvent = ended!.json["buildEvent"] as { kind: string; build: { state: string; jobCounts: Record<string, number> } };
    assert.equal(endedEvent.kind, "BUILD_EVENT_KIND_ENDED");
    assert.equal(endedEvent.build.state, "BUILD_STATE_FINISHED");
    assert.deepEqual([endedEvent.build.jobCounts["JOB_STATE_SUCCEEDED"], endedEvent.build.jobCounts["JOB_STATE_FAILED"], endedEvent.build.jobCounts["JOB_STATE_INDIRECT_FAILED"]], [1, 1, 1]);
    await publisher.stop();
    assert.equal(publisher.published, 8, "the start, six transitions and the end");
  } finally {
    await nc.close();
  }
});

test("a cancelled build's end is published once, after its jobs' cancellations", async () => {
  const nc = await connect({ servers: ns.url });
  const inbox = new Inbox(nc, "pkgfarm.build.>");
  await nc.flush();
  const depgraph = newDepGraph();
  const publisher = startJobEventPublisher({ nc, depgraph, logger: captureLogger().logger });
  try {
    const buildId = createBuild(depgraph);
    depgraph.cancelBuild(buildId);
    depgraph.cancelBuild(buildId);
    const events = await inbox.take(5);
    assert.deepEqual(events.map((e) => e.subject), [
      `pkgfarm.build.${buildId}.started`,
      `pkgfarm.build.${buildId}.job.cancelled`,
      `pkgfarm.build.${buildId}.job.cancelled`,
      `pkgfarm.build.${buildId}.job.cancelled`,
      `pkgfarm.build.${buildId}.ended`,
    ]);
    assert.equal((events[4]!.json["buildEvent"] as { build: { state: string } }).build.state, "BUILD_STATE_CANCELLED");
    await publisher.stop();
    await nc.flush();
    assert.equal(inbox.pending, 0, "the second cancel announced nothing");
  } finally {
    await nc.close();
  }
});
