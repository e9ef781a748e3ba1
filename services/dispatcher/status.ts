import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The gRPC status of each failure the dispatcher's parts raise, by error
 * class name (the stores and the registry stay free of connect).
 */
const CODES: Readonly<Record<string, Code>> = {
  AgentAlreadyConnected: Code.AlreadyExists,
  JobNotHeld: Code.FailedPrecondition,
  InvalidPackageName: Code.InvalidArgument,
  InvalidLogName: Code.InvalidArgument,
  PackageDigestMismatch: Code.DataLoss,
  PackageSizeMismatch: Code.DataLoss,
  PackageTooLarge: Code.ResourceExhausted,
  PackageNotFound: Code.NotFound,
  LogNotFound: Code.NotFound,
};

export function toConnectError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof Error && e.name in CODES) return new ConnectError(e.message, CODES[e.name], undefined, undefined, e);
  return ConnectError.from(e, Code.Internal);
}

