import type { Logger } from "pino";
import type { DepGraph } from "./core/depgraph.js";
import type { DurationModel } from "./core/duration-model.js";
import { createScanRecordParser, formatScanRecord, type ScanRecord } from "./core/scan-record.js";
import {
  buildKey, changedKey, scannedKey, decodeState, durationKey, encodeBuild, encodeDuration, encodeHistory, encodeHostSamples, encodeJob, historyKey, hostSpeedKey,
  jobKey, jobKeysOf, locationKey,
} from "./core/state-codec.js";
import { runSliced } from "./slices.js";
import type { StateStore } from "./state-store.js";

/**
 * restoreState loads a store into an empty depgraph: the tree, the durations
 * learnt, then every build against that tree. Returns what it found.
 */
export async function restoreState(store: StateStore, depgraph: DepGraph, history: DurationModel, logger: Logger): Promise<{ locations: number; builds: number; keys: number; ms: number }> {
  const started = performance.now();
  const entries = await store.load();
  const loadMs = Math.round(performance.now() - started);
  const state = decodeState(entries);
  for (const problem of state.problems.slice(0, 20)) logger.warn({ problem }, "state key skipped");
  if (state.pbulkIndex.length > 0) {
    const records: ScanRecord[] = [];
    const parser = createScanRecordParser((r) => records.push(r), (p) => logger.warn({ location: p.location }, `stored record skipped: ${p.problem}`));
    for (const chunk of state.pbulkIndex) parser.push(chunk);
    parser.end();
    await runSliced(depgraph.tree.applyTreeSteps(records));
  }
  for (const [platform, chunks] of state.platformTrees) {
    const records: ScanRecord[] = [];
    const parser = createScanRecordParser((r) => records.push(r), (p) => logger.warn({ platform, location: p.location }, `stored record skipped: ${p.problem}`));
    for (const chunk of chunks) parser.push(chunk);
    parser.end();
    depgraph.platformTree(platform).replace(records, "tree");
  }
  for (const [platform, times] of state.scannedAt) depgraph.restoreScanTimes(platform, times);
  const treeMs = Math.round(performance.now() - started) - loadMs;
  for (const row of state.history) history.record(row.pkgname, row.location, row.durationMs);
  // After the old per-PKGNAME keys, so what the model learnt since wins.
  history.restore(state.durations);
  depgraph.restoreChangeTimes(state.changedAt);
  // In slices, as CreateBuild: a restart restores whole-tree builds.
  for (const build of state.builds) await runSliced(depgraph.restoreBuildSteps(build));
  const ms = Math.round(performance.now() - started);
  logger.info({ keys: entries.size, locations: state.locations, builds: state.builds.length, ms, loadMs, treeMs }, "state restored");
  return { locations: state.locations, builds: state.builds.length, keys: entries.size, ms };
}

/**
 * persistState writes every durable change of the core to the store: tree
 * locations as they change, builds as they start or are cancelled, jobs as
 * they are leased, given back or finish, and learnt durations: with a
 * duration model, what it learns (per platform, with host speeds), else the
 * last duration per PKGNAME. Returns an unsubscribe function.
 */
export function persistState(store: StateStore, depgraph: DepGraph, durations?: DurationModel): () => void {
  const offTree = depgraph.onTreeChange((notice) => {
    const tree = depgraph.platformTree(notice.platform);
    for (const location of notice.locations) {
      const records = tree.atLocation(location).map((name) => tree.get(name)!.record);
      store.set(locationKey(location, notice.platform), records.length === 0 ? null : records.map(formatScanRecord).join(""));
      if (notice.platform !== "") {
        const at = depgraph.lastScanned(notice.platform, location);
        if (at !== undefined) store.set(scannedKey(notice.platform, location), records.length === 0 ? null : String(at));
      }
    }
    for (const name of notice.packages.changed) store.set(changedKey(name), String(notice.time));
    for (const name of notice.packages.removed) store.set(changedKey(name), null);
  });
  const offBuild = depgraph.onBuildChange((build) => {
    store.set(buildKey(build.id), encodeBuild(build));
    // Up-to-date is decided from packages/All when a build starts; a
    // restart must not decide it again from a directory that has moved on.
    for (const job of build.jobs) if (job.state === "up-to-date") store.set(jobKey(build.id, job.pkgname), encodeJob(job)!);
  });
  const offJobs = depgraph.onTransition((t) => {
    if (t.to !== "leased" && t.to !== "succeeded" && t.to !== "failed" && !(t.to === "ready" && t.from === "leased")) return;
    const job = depgraph.getBuild(t.buildId).byPkgname.get(t.pkgname)!;
    const doc = encodeJob(job);
    if (doc !== undefined) store.set(jobKey(t.buildId, t.pkgname), doc);
    if (t.to === "succeeded" && durations === undefined) store.set(historyKey(t.pkgname), encodeHistory(t.location, job.durationMs));
  });
  const offDurations = durations?.onLearn((learnt) => {
    store.set(durationKey(learnt.platform, learnt.pkgname), encodeDuration(learnt.observation));
    if (learnt.host !== undefined) store.set(hostSpeedKey(learnt.platform, learnt.host.name), encodeHostSamples(learnt.host.samples));
  });
  const offForgotten = depgraph.onBuildForgotten((build) => store.forget([buildKey(build.id), jobKeysOf(build.id)]));
  return () => {
    offTree();
    offBuild();
    offJobs();
    offForgotten();
    offDurations?.();
  };
}

/** settledWithin waits for the store, but no longer than ms: an answer late is better than none while NATS is away. */
export async function settledWithin(store: StateStore, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const result = await Promise.race([store.settled().then(() => true as const), timedOut]);
  clearTimeout(timer);
  return result;
}

/**
 * ackWhenStored is how the change-event consumer waits for the store: with
 * no time limit, unlike an RPC's settledWithin. An ack tells NATS never to
 * deliver the event again, so it may only go out once the change is stored;
 * a crash before then replays the event instead of losing the change.
 */
export function ackWhenStored(store: StateStore): () => Promise<void> {
  return () => store.settled();
}
