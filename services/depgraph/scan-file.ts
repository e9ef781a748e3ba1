import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { createGunzip } from "node:zlib";

/**
 * readScanChunks streams a pbulk-index file, gunzipping it when it starts
 * with the gzip magic, whatever its name says.
 */
export async function* readScanChunks(path: string): AsyncGenerator<Buffer> {
  const handle = await open(path, "r");
  const magic = Buffer.alloc(2);
  try {
    await handle.read(magic, 0, 2, 0);
  } finally {
    await handle.close();
  }
  const raw = createReadStream(path, { highWaterMark: 1 << 20 });
  const stream = magic[0] === 0x1f && magic[1] === 0x8b ? raw.pipe(createGunzip({ chunkSize: 1 << 20 })) : raw;
  raw.on("error", (e) => stream.destroy(e));
  for await (const chunk of stream) yield chunk as Buffer;
}
