import type { AgentRecord, AgentRegistry } from "./core/registry.js";

export interface HeartbeatExpiryOptions {
  readonly registry: AgentRegistry;
  readonly now: () => number;
  /** Called for each agent whose heartbeat deadline passed; it ends the agent's stream. */
  readonly onExpired: (agent: AgentRecord) => void;
}

/**
 * HeartbeatExpiry is the one timer that serves every agent's heartbeat
 * deadline: it sleeps until the earliest one and re-arms itself.
 */
export interface HeartbeatExpiry {
  /** Arms the timer for the earliest deadline, if it is not armed already. */
  arm(): void;
  stop(): void;
}

export function createHeartbeatExpiry(options: HeartbeatExpiryOptions): HeartbeatExpiry {
  const { registry, now, onExpired } = options;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = () => {
    if (timer !== undefined || stopped) return;
    const next = registry.nextDeadline();
    if (next === undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      for (const agent of registry.expired(now())) onExpired(agent);
      arm();
    }, Math.max(10, next - now() + 5));
  };
  return {
    arm,
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
