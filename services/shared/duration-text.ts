/**
 * formatDuration writes a duration as people read it in a status line:
 * 45s, 4m10s, 2h03m (hours drop the seconds; a build's ETA is not that
 * precise). Shared by depgraph's ExplainJob sentences and the CLI, so both
 * say the same thing the same way.
 */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
