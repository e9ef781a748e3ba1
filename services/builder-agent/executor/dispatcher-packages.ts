// DispatcherPackages moves binary packages between the agent and the
// dispatcher: the dependencies' packages down (through the digest-named
// cache), the built package up (with its SHA-256, so the dispatcher can
// verify it before storing), and for incremental jobs the currently stored
// package down for the up-to-date check. These are the I/O behind the
// withDependencies, withUpload and withUpToDate wrappers.

import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { BinaryPackage } from "../../../gen/pkgfarm/v1/depgraph_pb.js";
import { type DispatcherService, type JobAssignment, type UploadPackageRequestSchema } from "../../../gen/pkgfarm/v1/dispatcher_pb.js";
import type { PackageCache } from "../package-cache.js";
import type { FetchDependencies } from "./with-dependencies.js";

import type { FetchCurrentPackage } from "./with-up-to-date.js";

const UPLOAD_CHUNK_BYTES = 256 * 1024;

export interface DispatcherPackages {
  readonly fetchDependencies: FetchDependencies;
  /** One try at storing the package; throws what the dispatcher said (the caller retries). */
  readonly upload: (assignment: JobAssignment, path: string, signal: AbortSignal) => Promise<BinaryPackage>;
  readonly fetchCurrent: FetchCurrentPackage;
}

type Part = { part: { case: string | undefined; value?: unknown } };

export function createDispatcherPackages(client: Client<typeof DispatcherService>, cache: PackageCache, agentId: string): DispatcherPackages {
  return {
    async fetchDependencies(assignment, dependsDir, signal) {
      for (const dep of assignment.dependencyPackages) {
        const download = new AbortController();
        const onAbort = () => download.abort();
        signal.addEventListener("abort", onAbort, { once: true });
        try {
          let iterator: AsyncIterator<Part> | undefined;
          const open = async () => {
            iterator = client.downloadPackage({ platform: assignment.platform, fileName: dep.fileName, sha256: dep.sha256 }, { signal: download.signal })[Symbol.asyncIterator]();
            const head = await iterator.next();
            if (head.done === true || head.value.part.case !== "binaryPackage") throw new Error(`download of ${dep.fileName} did not start with its metadata`);
            return head.value.part.value as BinaryPackage;
          };
          // Packages found up to date by an incremental build come without a
          // digest: ask the dispatcher for it before looking in the cache.
          const meta = dep.sha256 === "" ? await open() : dep;
          await cache.provide({ fileName: dep.fileName, sha256: meta.sha256, sizeBytes: meta.sizeBytes }, dependsDir, async function* () {
            if (iterator === undefined) await open();
            for (;;) {
              const next = await iterator!.next();
              if (next.done === true) return;
              yield next.value.part.value as Uint8Array;
            }
          }, signal);
        } finally {
          download.abort();
          signal.removeEventListener("abort", onAbort);
        }
      }
    },

    async upload(assignment, path, signal) {
      const job = assignment.job!;
      const info = await stat(path);
      const hash = createHash("sha256");
      for await (const chunk of createReadStream(path, { highWaterMark: UPLOAD_CHUNK_BYTES })) hash.update(chunk as Buffer);
      const sha256 = hash.digest("hex");
      async function* parts(): AsyncIterable<MessageInitShape<typeof UploadPackageRequestSchema>> {
        yield { part: { case: "header", value: { job, agentId, fileName: `${job.pkgname}.tgz`, sha256, sizeBytes: BigInt(info.size) } } };
        for await (const chunk of createReadStream(path, { highWaterMark: UPLOAD_CHUNK_BYTES })) yield { part: { case: "chunk", value: chunk as Buffer } };
      }
      const response = await client.uploadPackage(parts(), { signal });
      return response.binaryPackage!;
    },

    async fetchCurrent(assignment, destPath, signal) {
      const fileName = `${assignment.job!.pkgname}.tgz`;
      let meta: BinaryPackage | undefined;
      try {
        const stream = client.downloadPackage({ platform: assignment.platform, fileName }, { signal });
        const out = createWriteStream(destPath);
        await pipeline(async function* () {
          for await (const message of stream) {
            if (message.part.case === "binaryPackage") meta = message.part.value;
            else if (message.part.case === "chunk") yield message.part.value;
          }
        }, out);
      } catch (e) {
        if (ConnectError.from(e).code === Code.NotFound) return undefined;
        throw e;
      }
      return meta;
    },
  };
}
