/**
 * createTreeFileReader is the file access decideUpToDate needs: a tree file
 * by its path relative to the tree root, or undefined when there is none.
 * Files are read as latin1: the $NetBSD$ ids are ASCII, and a patch with
 * bytes that are not UTF-8 must not turn into replacement characters that
 * then differ from nothing.
 */

import { readFileSync } from "node:fs";
import path from "node:path";

export function createTreeFileReader(treeRoot: string): (relativePath: string) => string | undefined {
  const root = path.resolve(treeRoot);
  return (relativePath) => {
    const file = path.resolve(root, relativePath);
    // Never outside the tree, whatever a package recorded.
    if (file !== root && !file.startsWith(root + path.sep)) return undefined;
    try {
      return readFileSync(file, "latin1");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return undefined;
      throw error;
    }
  };
}
