import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { LogStore } from "./log-store.js";
import type { PackageStore, StoredPackage } from "./package-store.js";
import { toConnectError } from "./status.js";

type Impl = ServiceImpl<typeof DispatcherService>;

/** createDownloadHandler serves DownloadPackage: the metadata first, then the bytes. */
export function createDownloadHandler(packages: PackageStore): Impl["downloadPackage"] {
  return async function* (request, ctx) {
    let stored: StoredPackage | undefined;
    try {
      stored = await packages.stat(request.platform, request.fileName);
    } catch (e) {
      throw toConnectError(e);
    }
    if (stored === undefined) throw new ConnectError(`no package ${request.fileName} for platform ${request.platform}`, Code.NotFound);
    if (request.sha256 !== "" && request.sha256 !== stored.sha256) {
      throw new ConnectError(`${request.fileName} has SHA-256 ${stored.sha256}, not the ${request.sha256} asked for (it was rebuilt since)`, Code.FailedPrecondition);
    }
    yield { part: { case: "binaryPackage", value: { fileName: stored.fileName, sha256: stored.sha256, sizeBytes: stored.sizeBytes } } };
    try {
      for await (const chunk of packages.read(request.platform, request.fileName, ctx.signal)) yield { part: { case: "chunk", value: chunk } };
    } catch (e) {
      throw toConnectError(e);
    }
  };
}

/** createReadLogHandler serves ReadLog: a job's log from an offset, followed while it grows when asked. */
export function createReadLogHandler(logs: LogStore): Impl["readLog"] {
  return async function* (request, ctx) {
    try {
      for await (const piece of logs.read(request.buildId, request.pkgname, { offset: request.offset, follow: request.follow, signal: ctx.signal })) {
        yield { offset: piece.offset, data: piece.data };
      }
    } catch (e) {
      if (ctx.signal.aborted) return;
      throw toConnectError(e);
    }
  };
}
