// Helpers for tests that drive the agent's executors on the real pkgsrc tree:
// an assignment made the way the dispatcher makes one, the scan variables of
// a location read from a real `bmake pbulk-index` in a slot's sandbox, and a
// JobLog that keeps every phase's output.

import { execFileSync } from "node:child_process";
import { create } from "@bufbuild/protobuf";
import { JobAssignmentSchema, type JobAssignment } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { JobLog } from "../../services/builder-agent/executor/executor.js";
import type { SlotSandbox } from "../../services/builder-agent/executor/slot-sandbox.js";

export interface PhaseLogs extends JobLog {
  /** Output per phase ("" is output outside any phase). */
  readonly phases: Map<string, string>;
  /** The whole log, every phase in order of arrival. */
  whole(): string;
}

export function phaseLogs(): PhaseLogs {
  const phases = new Map<string, string>();
  let all = "";
  return {
    phases,
    write(phase, data) {
      const text = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
      phases.set(phase, (phases.get(phase) ?? "") + text);
      all += text;
    },
    whole: () => all,
  };
}

/** scanVars runs `bmake pbulk-index` for location in the slot's (already reset) sandbox and returns its first record's keys. */
export function scanVars(sandbox: SlotSandbox, slot: number, tree: string, location: string): Record<string, string> {
  const [program, ...args] = sandbox.wrap(slot, ["/usr/pkg/bin/bmake", "pbulk-index"]);
  const out = execFileSync(program!, args, { cwd: `${tree}/${location}`, encoding: "utf8", env: { PATH: "/usr/pkg/bin:/usr/bin:/bin" } });
  const vars: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    if (key === "PKGNAME" && "PKGNAME" in vars) break;
    vars[key] = line.slice(eq + 1);
  }
  return vars;
}

export function assignment(init: { buildId?: string; pkgname: string; location: string; dependencies?: string[]; scanVars?: Record<string, string>; incremental?: boolean; rebuildReason?: string }): JobAssignment {
  return create(JobAssignmentSchema, {
    job: { buildId: init.buildId ?? "b1", pkgname: init.pkgname, leaseId: "lease-1" },
    location: init.location,
    attempt: 1,
    platform: "Linux-test-x86_64",
    dependencies: init.dependencies ?? [],
    scanVars: init.scanVars ?? {},
    incremental: init.incremental ?? false,
    rebuildReason: init.rebuildReason ?? "",
  });
}
