import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { AgentHello, ConnectResponse } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { Channel } from "../shared/index.js";
import type { AgentRecord } from "./core/registry.js";

/** Session is one agent's live Connect stream. */
export interface Session {
  readonly agent: AgentRecord;
  /** What the agent said it is, for ListAgents. */
  readonly hello: AgentHello;
  /** What goes down the stream, in order. */
  readonly outbox: Channel<ConnectResponse>;
  /** Carries agentId and platform. */
  readonly logger: Logger;
}

/**
 * SessionTable maps agent ids to their live stream. A stream that ended is
 * removed once; a late call for an old stream of the same id (the agent has
 * reconnected since) finds the new one is not its own and does nothing.
 */
export class SessionTable {
  private readonly byId = new Map<string, Session>();

  get(agentId: string): Session | undefined {
    return this.byId.get(agentId);
  }

  add(session: Session): void {
    this.byId.set(session.agent.id, session);
  }

  /** True if the session was current (and is removed now), false if it was already gone. */
  remove(session: Session): boolean {
    if (this.byId.get(session.agent.id) !== session) return false;
    this.byId.delete(session.agent.id);
    return true;
  }

  isCurrent(session: Session): boolean {
    return this.byId.get(session.agent.id) === session;
  }

  all(): Session[] {
    return [...this.byId.values()];
  }
}

const AGENT_ID_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const PLATFORM_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const MAX_SLOTS = 1024;

/**
 * checkHello validates a hello and returns the platform it names (given, or
 * made of os, os_release and arch); bad values are INVALID_ARGUMENT.
 */
export function checkHello(hello: AgentHello): { platform: string } {
  if (!AGENT_ID_SHAPE.test(hello.agentId)) {
    throw new ConnectError(`agent_id "${hello.agentId}" must be 1-128 characters of letters, digits and . _ : @ -, starting with a letter or digit`, Code.InvalidArgument);
  }
  if (hello.slots < 1 || hello.slots > MAX_SLOTS) throw new ConnectError(`slots must be from 1 to ${MAX_SLOTS}, not ${hello.slots}`, Code.InvalidArgument);
  const platform = hello.platform !== "" ? hello.platform : `${hello.os}-${hello.osRelease}-${hello.arch}`;
  if (!PLATFORM_SHAPE.test(platform) || platform.includes("..")) {
    throw new ConnectError(`platform "${platform}" is not valid: set platform, or os, os_release and arch (e.g. NetBSD, 10.0, x86_64)`, Code.InvalidArgument);
  }
  return { platform };
}
