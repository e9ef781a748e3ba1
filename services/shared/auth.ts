import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { DescMethod, DescService } from "@bufbuild/protobuf";

/**
 * Caller is who a call was authenticated as, put in the handler's context
 * values by the auth interceptor. "anyone" is a method no token guards, or a
 * server with that check off; an agent without an id used the shared agent
 * token and may speak for any agent name.
 */
export type Caller =
  | { readonly kind: "anyone" }
  | { readonly kind: "operator" }
  | { readonly kind: "reader" }
  | { readonly kind: "agent"; readonly agentId?: string };

export const CALLER = createContextKey<Caller>({ kind: "anyone" }, { description: "pkgfarm authenticated caller" });

/**
 * Who may call a guarded method. "reader" is a read-only method when reads
 * need a token (ServerTokens.readsNeedToken): the read token, the operator
 * token or an agent token will do.
 */
export type Guard = "operator" | "agent" | "reader";

/**
 * ServerTokens are the secrets a server checks. A check whose tokens are all
 * unset is off, so `pkgfarm up` and tests run without set-up.
 */
export interface ServerTokens {
  readonly operatorToken?: string;
  /** One token every agent may use. */
  readonly agentToken?: string;
  /** Tokens that each authenticate one agent name only. */
  readonly agentTokens?: ReadonlyMap<string, string>;
  /**
   * Services whose methods not in `guards` (the reads: GetBuild, ListJobs,
   * WatchJobs, ReadLog ...) need a token too. Health and reflection stay
   * open whatever this says: probes and `grpcurl list` carry no token.
   */
  readonly readsNeedToken?: readonly DescService[];
  /** A token good for reads only (dashboards, `buf curl` users), when readsNeedToken is set. */
  readonly readToken?: string;
}

/** READS_FLAG is the --read-auth flag: who may call the read-only RPCs. */
export const READ_AUTH_MODES = ["open", "token"] as const;
export type ReadAuth = (typeof READ_AUTH_MODES)[number];

/**
 * parseAgentTokens reads a PKGFARM_AGENT_TOKENS_FILE: one `agent-name token`
 * pair per line, blank lines and `#` comments ignored. A name or token given
 * twice is an error: either would make a token's owner ambiguous.
 */
export function parseAgentTokens(text: string, source: string, minLength: number): { tokens: Map<string, string>; errors: string[] } {
  const tokens = new Map<string, string>();
  const seen = new Set<string>();
  const errors: string[] = [];
  const lines = text.split("\n");
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const where = `${source} line ${index + 1}`;
    const [name, token] = fields as [string, string];
    if (fields.length !== 2) errors.push(`${where}: expected "agent-name token", got ${fields.length} field(s)`);
    else if (tokens.has(name)) errors.push(`${where}: agent ${name} has a token already`);
    else if (token.length < minLength) errors.push(`${where}: the token for ${name} must be at least ${minLength} characters`);
    else if (seen.has(token)) errors.push(`${where}: the token for ${name} is also another agent's`);
    else {
      seen.add(token);
      tokens.set(name, token);
    }
  }
  return { tokens, errors };
}

/**
 * createAuthInterceptor checks `authorization: Bearer <token>` on the methods
 * in `guards` and records the caller for the handler; other methods
 * (read-only ones, reflection, health) pass untouched. A refused call fails
 * before its handler runs, so it changes nothing.
 */
export function createAuthInterceptor(guards: ReadonlyMap<DescMethod, Guard>, tokens: ServerTokens): Interceptor {
  const byPath = new Map([...guards].map(([method, guard]) => [methodPath(method), guard]));
  for (const service of tokens.readsNeedToken ?? []) {
    for (const method of service.methods) if (!byPath.has(methodPath(method))) byPath.set(methodPath(method), "reader");
  }
  const operator = tokens.operatorToken ? digest(tokens.operatorToken) : undefined;
  const reader = tokens.readToken ? digest(tokens.readToken) : undefined;
  const shared = tokens.agentToken ? digest(tokens.agentToken) : undefined;
  const perAgent = [...(tokens.agentTokens ?? [])].map(([agentId, token]) => ({ agentId, digest: digest(token) }));
  const agentCheckOn = shared !== undefined || perAgent.length > 0;

  const readCheckOn = operator !== undefined || reader !== undefined || agentCheckOn;

  const authenticate = (guard: Guard, header: Headers, path: string): Caller => {
    if (guard === "operator" && operator === undefined) return { kind: "anyone" };
    if (guard === "agent" && !agentCheckOn) return { kind: "anyone" };
    if (guard === "reader" && !readCheckOn) return { kind: "anyone" };
    const presented = bearer(header);
    const who = guard === "operator" ? "the operator token" : guard === "agent" ? "an agent token" : "a token (read, operator or agent)";
    if (presented === undefined) throw new ConnectError(`${path} needs ${who}: send the metadata "authorization: Bearer <token>"`, Code.Unauthenticated);
    const given = digest(presented);
    if (guard === "operator") {
      if (timingSafeEqual(given, operator!)) return { kind: "operator" };
    } else if (guard === "reader") {
      // Every comparison runs, so the time says nothing about which matched.
      const asReader = reader !== undefined && timingSafeEqual(given, reader);
      const asOperator = operator !== undefined && timingSafeEqual(given, operator);
      let asAgent = shared !== undefined && timingSafeEqual(given, shared);
      for (const entry of perAgent) if (timingSafeEqual(given, entry.digest)) asAgent = true;
      if (asOperator) return { kind: "operator" };
      if (asReader || asAgent) return { kind: "reader" };
    } else {
      // Compare against every token, without stopping at a match, so the
      // time taken says nothing about which one matched.
      let match: string | undefined;
      for (const entry of perAgent) if (timingSafeEqual(given, entry.digest)) match = entry.agentId;
      if (match !== undefined) return { kind: "agent", agentId: match };
      if (shared !== undefined && timingSafeEqual(given, shared)) return { kind: "agent" };
    }
    throw new ConnectError(`${path} needs ${who}; the token sent is not valid`, Code.Unauthenticated);
  };

  return (next) => async (req) => {
    const path = `${req.service.typeName}/${req.method.name}`;
    const guard = byPath.get(path);
    if (guard !== undefined) req.contextValues.set(CALLER, authenticate(guard, req.header, path));
    return next(req);
  };
}

/**
 * assertActsFor refuses a call that names an agent its token does not
 * belong to (PERMISSION_DENIED): a per-agent token speaks only for its agent.
 */
export function assertActsFor(ctx: HandlerContext, agentId: string): void {
  const caller = ctx.values.get(CALLER);
  if (caller.kind === "agent" && caller.agentId !== undefined && caller.agentId !== agentId) {
    throw new ConnectError(`this agent token belongs to agent "${caller.agentId}"; it cannot act as agent "${agentId}"`, Code.PermissionDenied);
  }
}

/** bearerToken is the client side: every call carries `authorization: Bearer <token>`. */
export function bearerToken(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

function bearer(header: Headers): string | undefined {
  const value = header.get("authorization");
  const match = value === null ? null : /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}

/** Equal-length digests, so timingSafeEqual can compare tokens of any length. */
function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

function methodPath(method: DescMethod): string {
  return `${method.parent.typeName}/${method.name}`;
}
