// format.js: what the page shows for protobuf JSON values. Fields at their
// default value are left out of protobuf JSON, so every reader has a default.

/** Seconds of a google.protobuf.Duration in JSON ("12.5s"); 0 when absent. */
export function seconds(duration) {
  if (typeof duration !== "string" || !duration.endsWith("s")) return 0;
  const n = Number(duration.slice(0, -1));
  return Number.isFinite(n) ? n : 0;
}

/** Milliseconds since the epoch of a google.protobuf.Timestamp in JSON; undefined when absent. */
export function millis(timestamp) {
  if (typeof timestamp !== "string") return undefined;
  const t = Date.parse(timestamp);
  return Number.isNaN(t) ? undefined : t;
}

/** "1h02m", "3m05s", "42s", "0.4s". */
export function formatSeconds(s) {
  if (!Number.isFinite(s) || s < 0) return "-";
  if (s < 10) return `${s.toFixed(1)}s`;
  const whole = Math.round(s);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const sec = whole % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}

/** "JOB_STATE_INDIRECT_FAILED" → "indirect-failed". */
export function stateName(enumName, prefix) {
  return (enumName ?? "").replace(prefix, "").toLowerCase().replace(/_/g, "-") || "unknown";
}

export const TERMINAL = new Set(["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_PREFAILED", "JOB_STATE_INDIRECT_FAILED", "JOB_STATE_CYCLE", "JOB_STATE_UP_TO_DATE", "JOB_STATE_CANCELLED"]);
export const OPEN = ["JOB_STATE_PENDING", "JOB_STATE_READY", "JOB_STATE_LEASED"];

/** The jobs of a build that have ended, from its counts. */
export function doneCount(build) {
  const counts = build.jobCounts ?? {};
  let open = 0;
  for (const s of OPEN) open += counts[s] ?? 0;
  return (build.totalJobs ?? 0) - open;
}

/** el builds a DOM element; children are nodes or text (never parsed as HTML). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
