import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import {
  ConnectRequestSchema,
  DispatcherService,
  type ConnectRequest,
  type ConnectResponse,
} from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { createChannel, createPkgfarmTransport, type ClientSecurity } from "../../services/shared/index.js";

/**
 * RawAgent speaks DispatcherService/Connect message by message, so tests can
 * misbehave on purpose (hold jobs, report what they do not hold, corrupt
 * uploads) where the real agent would not.
 */
export interface RawAgent {
  readonly client: Client<typeof DispatcherService>;
  readonly received: ConnectResponse[];
  send(message: MessageInitShape<typeof ConnectRequestSchema>["message"]): void;
  /** Resolves with the first received message (past or future) matching. */
  waitFor(match: (m: ConnectResponse) => boolean, timeoutMs?: number): Promise<ConnectResponse>;
  /** Resolves when the stream has ended, with its error if any. */
  readonly ended: Promise<unknown>;
  close(): void;
}

export function connectRawAgent(url: string, hello: { agentId: string; platform: string; slots?: number; scans?: boolean }, security: ClientSecurity = {}): RawAgent {
  const client = createClient(DispatcherService, createPkgfarmTransport(url, security));
  const outbox = createChannel<ConnectRequest>();
  const received: ConnectResponse[] = [];
  const waiters = new Set<() => void>();
  outbox.push(create(ConnectRequestSchema, {
    message: { case: "hello", value: { agentId: hello.agentId, platform: hello.platform, slots: hello.slots ?? 1, scans: hello.scans ?? false, host: "test", version: "test" } },
  }));
  const ended = (async () => {
    try {
      for await (const message of client.connect(outbox)) {
        received.push(message);
        for (const wake of [...waiters]) wake();
      }
      return undefined;
    } catch (e) {
      return e;
    } finally {
      for (const wake of [...waiters]) wake();
    }
  })();
  return {
    client,
    received,
    ended,
    send(message) {
      outbox.push(create(ConnectRequestSchema, { message }));
    },
    waitFor(match, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching message within ${timeoutMs} ms; got ${received.map((m) => m.message.case).join(", ")}`));
        }, timeoutMs);
        const check = () => {
          const found = received.find(match);
          if (found === undefined) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        };
        waiters.add(check);
        check();
      });
    },
    close() {
      outbox.close();
    },
  };
}
