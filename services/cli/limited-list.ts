import { readFile } from "node:fs/promises";
import { UsageError } from "./command.js";

/**
 * readLimitedList reads a pbulk limited_list: one location (or PKGNAME) per
 * line; blank lines and # comments are skipped. A file that cannot be read,
 * or names nothing, is the command line's fault: a UsageError.
 */
export async function readLimitedList(path: string): Promise<string[]> {
  const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw new UsageError(`--limit ${path}: cannot read it: ${e.code ?? e.message}`);
  });
  const entries = text.split("\n").map((line) => line.replace(/#.*/, "").trim()).filter((line) => line !== "");
  if (entries.length === 0) throw new UsageError(`--limit ${path} names no location`);
  return entries;
}
