// depgraph's Prometheus series. Every value is read from live state when
// Prometheus scrapes (collect() callbacks), so there is no polling timer and
// nothing to keep in step with the core.
import type { NatsConnection } from "nats";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { JOB_STATES } from "./core/build.js";
import type { DepGraph } from "./core/depgraph.js";
import type { JobEventPublisher } from "./job-events.js";
import { META_CONSUMER, META_STREAM, metaConsumerLag } from "./meta-events.js";

/** How long a scrape waits for JetStream's consumer info; well inside Prometheus' default 10 s scrape timeout. */
const CONSUMER_INFO_TIMEOUT_MS = 2_000;

/**
 * registerDepGraphMetrics adds the build and tree series. Jobs are labelled
 * by build only for running builds, so the number of series stays bounded
 * by the builds in progress, not by every build since start-up.
 */
export function registerDepGraphMetrics(registry: Registry, depgraph: DepGraph): void {
  new Gauge({
    name: "pkgfarm_jobs",
    help: "Jobs of each running build by pbulk state (pending, ready, leased, succeeded, failed, prefailed, indirect-failed, cycle, up-to-date, cancelled); a build's series disappear once it has finished or been cancelled.",
    labelNames: ["build", "state"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const build of depgraph.listBuilds()) {
        if (build.state !== "running") continue;
        for (const state of JOB_STATES) this.set({ build: build.id, state }, build.countOf(state));
      }
    },
  });
  new Gauge({
    name: "pkgfarm_builds",
    help: "Builds known to depgraph by state (running, finished, cancelled).",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const counts = { running: 0, finished: 0, cancelled: 0 };
      for (const build of depgraph.listBuilds()) counts[build.state]++;
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: "pkgfarm_ready_jobs",
    help: "Ready-queue depth: jobs of running builds whose dependencies are all built, waiting for NextReadyJob, by platform.",
    labelNames: ["platform"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const build of depgraph.listBuilds()) {
        if (build.state === "running") this.inc({ platform: build.options.platform }, build.readyCount);
      }
    },
  });
  new Gauge({
    name: "pkgfarm_tree_packages",
    help: "Packages in depgraph's tree (one per PKGNAME, MULTI_VERSION variants counted separately).",
    registers: [registry],
    collect() {
      this.set(depgraph.tree.summary().packages);
    },
  });
  new Gauge({
    name: "pkgfarm_tree_revision",
    help: "Revision of the package tree: it goes up by one with every import or applied change event.",
    registers: [registry],
    collect() {
      this.set(depgraph.tree.revision);
    },
  });
}

/**
 * registerEventMetrics adds the NATS series: how far the durable consumer of
 * change events is behind, and how the job-event publisher is doing.
 */
export function registerEventMetrics(registry: Registry, options: { nc: NatsConnection; publisher: JobEventPublisher; logger: Logger }): void {
  const { nc, publisher, logger } = options;
  new Gauge({
    name: "pkgfarm_nats_consumer_lag",
    help: `Change events on the ${META_STREAM} stream that the durable consumer has not applied yet: not yet delivered plus delivered and not yet acked (JetStream num_pending + num_ack_pending). Absent while NATS does not answer.`,
    labelNames: ["stream", "consumer"] as const,
    registers: [registry],
    async collect() {
      try {
        const lag = await metaConsumerLag(nc, CONSUMER_INFO_TIMEOUT_MS);
        this.set({ stream: META_STREAM, consumer: META_CONSUMER }, lag);
      } catch (e) {
        // A stale number would look like progress stopped; no number says "unknown".
        this.reset();
        logger.debug({ err: e instanceof Error ? e.message : String(e) }, "consumer lag not read");
      }
    },
  });
  new Gauge({
    name: "pkgfarm_job_events_buffered",
    help: "Job transition events kept while NATS is unreachable, waiting to be published on reconnect (the publisher's backlog).",
    registers: [registry],
    collect() {
      this.set(publisher.buffered);
    },
  });
  // The publisher keeps its own totals; a counter mirrors them on scrape.
  new Counter({
    name: "pkgfarm_job_events_published_total",
    help: "Job transition events handed to the NATS connection.",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(publisher.published);
    },
  });
  new Counter({
    name: "pkgfarm_job_events_failed_total",
    help: "Job transition events lost: refused by the connection, or dropped from a full or abandoned buffer.",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(publisher.failed);
    },
  });
}
