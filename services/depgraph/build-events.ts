// Build starts and ends, for WatchJobs and the NATS job events: a dashboard
// that follows transitions otherwise has to guess when a build begins (a new
// id appears) and when it is over (it would have to count every job).
//
// The core tells us when a build is created or cancelled (onBuildChange);
// a build that finishes does so inside the call that ended its last job, in
// the same synchronous step as that job's transition. So after a transition
// into a terminal state the build is looked at once the step is over (a
// microtask later), and the end is announced after the transition that
// caused it.
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BuildEventKind, WatchJobsResponseSchema, type Build as WireBuild, type WatchJobsResponse } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { isTerminal, type Build } from "./core/build.js";
import type { DepGraph } from "./core/depgraph.js";

/** BuildEvent is a build starting (its jobs exist) or ending (all are terminal). */
export interface BuildEvent {
  readonly kind: "started" | "ended";
  readonly build: Build;
  readonly time: number;
}

/**
 * watchBuildEvents calls listener once when each build starts and once when
 * it ends, for builds that start or end after the call. Returns a function
 * that stops it. Like onTransition, the listener runs inside depgraph's
 * state changes (or a microtask after), so it must not throw.
 */
export function watchBuildEvents(depgraph: DepGraph, now: () => number, listener: (event: BuildEvent) => void): () => void {
  const started = new Set<string>();
  const ended = new Set<string>();
  /** Builds seen running (a transition of theirs was watched): their end is ours to announce. */
  const running = new Set<string>();
  const toCheck = new Set<string>();
  let checkQueued = false;
  let stopped = false;

  const end = (build: Build) => {
    if (ended.has(build.id)) return;
    ended.add(build.id);
    running.delete(build.id);
    listener({ kind: "ended", build, time: build.finishedAt ?? now() });
  };
  const check = () => {
    checkQueued = false;
    if (stopped) return;
    for (const id of toCheck) {
      let build: Build;
      try {
        build = depgraph.getBuild(id);
      } catch {
        continue;
      }
      if (build.state !== "running") end(build);
    }
    toCheck.clear();
  };

  const offTransition = depgraph.onTransition((t) => {
    running.add(t.buildId);
    if (!isTerminal(t.to)) return;
    toCheck.add(t.buildId);
    if (!checkQueued) {
      checkQueued = true;
      queueMicrotask(check);
    }
  });
  const offChange = depgraph.onBuildChange((build) => {
    if (build.state === "running") {
      if (started.has(build.id)) return;
      started.add(build.id);
      running.add(build.id);
      listener({ kind: "started", build, time: build.options.createdAt });
    } else {
      // A build whose every job is terminal from the start (all up to date,
      // all prefailed) is finished when it is made, with no transition: it
      // starts and ends at once. A cancelled one that was never seen
      // running (cancelled while it waited for its scan) only ends.
      if (build.state === "finished" && !started.has(build.id) && !running.has(build.id)) {
        started.add(build.id);
        listener({ kind: "started", build, time: build.options.createdAt });
      }
      end(build);
    }
  });
  const offForget = depgraph.onBuildForgotten((build) => {
    started.delete(build.id);
    ended.delete(build.id);
    running.delete(build.id);
  });
  return () => {
    stopped = true;
    offTransition();
    offChange();
    offForget();
  };
}

/** buildEventToWire is the WatchJobsResponse (and NATS payload) of a build event. */
export function buildEventToWire(event: BuildEvent, build: WireBuild): WatchJobsResponse {
  return create(WatchJobsResponseSchema, {
    buildId: event.build.id,
    time: timestampFromMs(event.time),
    buildEvent: { kind: event.kind === "started" ? BuildEventKind.STARTED : BuildEventKind.ENDED, build },
  });
}
