// What the farm commands print for people: aligned columns, durations as
// 1m23s, states as pbulk names them; and, with --json, protobuf JSON.
import { toJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampMs, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { BuildState, JobState, type Build } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { formatDuration } from "../shared/duration-text.js";

export { formatDuration };

/** table lays rows out in columns two spaces apart, the last column unpadded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows].map((row) => row.map(clean));
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? "").length)));
  return all.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n") + "\n";
}

/** Line breaks and control characters in a field (a reason, a host name) would forge lines. */
export function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, " ");
}

/** jobStateName is a state as pbulk and the reports name it: "indirect-failed". */
export function jobStateName(state: JobState): string {
  return (JobState[state] ?? "unknown").toLowerCase().replace(/_/g, "-");
}

const JOB_STATE_BY_NAME = new Map(Object.values(JobState).filter((v): v is JobState => typeof v === "number" && v !== JobState.UNSPECIFIED).map((s) => [jobStateName(s), s]));

/** jobStateFromName reads "failed", "indirect-failed" (or "JOB_STATE_FAILED"); undefined for anything else. */
export function jobStateFromName(name: string): JobState | undefined {
  const lower = name.trim().toLowerCase().replace(/^job_state_/, "").replace(/_/g, "-");
  return JOB_STATE_BY_NAME.get(lower);
}

export const JOB_STATE_NAMES: readonly string[] = [...JOB_STATE_BY_NAME.keys()];

export function buildStateName(state: BuildState): string {
  return (BuildState[state] ?? "unknown").toLowerCase();
}

/** counts is "29 succeeded, 1 failed, ..." of a build's non-zero job counts, in the order of JobState. */
export function counts(build: Build): string {
  const parts: string[] = [];
  for (const state of JOB_STATE_BY_NAME.values()) {
    const n = build.jobCounts[`JOB_STATE_${JobState[state]}`] ?? 0;
    if (n > 0) parts.push(`${n} ${jobStateName(state)}`);
  }
  return parts.length === 0 ? "no jobs" : parts.join(", ");
}

/** Jobs of the build in a terminal state. */
export function ended(build: Build): number {
  const active = ["JOB_STATE_PENDING", "JOB_STATE_READY", "JOB_STATE_LEASED"].reduce((n, key) => n + (build.jobCounts[key] ?? 0), 0);
  return build.totalJobs - active;
}

export function ms(value: Duration | Timestamp | undefined): number | undefined {
  if (value === undefined) return undefined;
  return value.$typeName === "google.protobuf.Duration" ? durationMs(value) : timestampMs(value);
}

/** "3m10s" for a duration field; "-" when absent. */
export function durationText(value: Duration | undefined): string {
  const v = ms(value);
  return v === undefined ? "-" : formatDuration(v);
}

/** "2026-12-02 01:02:03 UTC" for a timestamp field; "-" when absent. */
export function timeText(value: Timestamp | undefined): string {
  const v = ms(value);
  return v === undefined ? "-" : `${new Date(v).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** How long ago a timestamp was, from now: "12s ago". */
export function agoText(value: Timestamp | undefined, now: number): string {
  const v = ms(value);
  return v === undefined ? "-" : `${formatDuration(now - v)} ago`;
}

/** writeJson prints a message as protobuf JSON (enum names, camelCase fields), one value per call. */
export function writeJson<Desc extends DescMessage>(out: NodeJS.WritableStream, schema: Desc, message: MessageShape<Desc>, pretty = true): void {
  out.write(`${toJsonString(schema, message, { prettySpaces: pretty ? 2 : 0 })}\n`);
}
