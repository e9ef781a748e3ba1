import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { BinaryPackageFile } from "./core/incremental.js";

/**
 * readBinaryPackages lists pkgsrc's packages/All/<PKGNAME>.tgz with their
 * modification times, which is what an incremental build compares. A missing
 * directory is an empty one: nothing has been built yet.
 */
export async function readBinaryPackages(packagesDir: string): Promise<Map<string, BinaryPackageFile>> {
  const all = join(packagesDir, "All");
  const found = new Map<string, BinaryPackageFile>();
  let names: string[];
  try {
    names = await readdir(all);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return found;
    throw e;
  }
  await Promise.all(
    names
      .filter((name) => name.endsWith(".tgz"))
      .map(async (name) => {
        const info = await stat(join(all, name));
        if (info.isFile()) found.set(name.slice(0, -".tgz".length), { mtimeMs: info.mtimeMs });
      }),
  );
  return found;
}
