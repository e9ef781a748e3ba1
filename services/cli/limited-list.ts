import { readFile } from "node:fs/promises";

/**
 * readLimitedList reads a pbulk limited_list: one location (or PKGNAME) per
 * line; blank lines and # comments are skipped.
 */
export async function readLimitedList(path: string): Promise<string[]> {
  const text = await readFile(path, "utf8");
  return text.split("\n").map((line) => line.replace(/#.*/, "").trim()).filter((line) => line !== "");
}
