import { Code } from "@connectrpc/connect";

/**
 * grpcCodeName is a code's name as gRPC and grpcurl spell it:
 * Code.FailedPrecondition is "FAILED_PRECONDITION". Refusals on the agent
 * stream carry codes by this name, so agents in any language can read them.
 */
export function grpcCodeName(code: Code): string {
  return (Code[code] ?? "Unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
