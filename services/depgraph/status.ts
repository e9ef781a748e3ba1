import { Code, ConnectError } from "@connectrpc/connect";
import { EmptyTree, InvalidRequest, InvalidScanRecord, StaleLease, UnknownBuild, UnknownPackage, UnknownScan } from "./core/errors.js";
import { CutOffImport, TooManyRemoved } from "./core/import-guard.js";

/**
 * toConnectError is the one place core failures become gRPC statuses. Anything
 * unexpected is INTERNAL with its cause kept for the log, never shown raw.
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof InvalidRequest || error instanceof InvalidScanRecord) {
    return new ConnectError(error.message, Code.InvalidArgument, undefined, undefined, error);
  }
  if (error instanceof UnknownBuild || error instanceof UnknownPackage || error instanceof UnknownScan) {
    return new ConnectError(error.message, Code.NotFound, undefined, undefined, error);
  }
  if (error instanceof StaleLease || error instanceof EmptyTree || error instanceof TooManyRemoved || error instanceof CutOffImport) {
    return new ConnectError(error.message, Code.FailedPrecondition, undefined, undefined, error);
  }
  return new ConnectError("internal error; see the depgraph log", Code.Internal, undefined, undefined, error);
}
