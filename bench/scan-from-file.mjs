#!/usr/bin/env node
// A scan helper for benchmarks: instead of running bmake pbulk-index in each
// location, it prints the records a prepared pbulk-index file
// (PKGFARM_BENCH_SCAN) holds for the locations given as arguments. It takes
// any number of locations per run (depgraph --scan-batch). With an index
// beside the file (<file>.index.json: location -> [[start, end], ...] byte
// ranges, written by the benchmark) it reads only those records.
import { closeSync, existsSync, openSync, readFileSync, readSync } from "node:fs";

const file = process.env.PKGFARM_BENCH_SCAN;
if (!file) {
  process.stderr.write("scan-from-file: set PKGFARM_BENCH_SCAN to a plain pbulk-index file\n");
  process.exit(2);
}
const wanted = process.argv.slice(2);
const indexFile = `${file}.index.json`;
const out = [];
if (existsSync(indexFile)) {
  const index = JSON.parse(readFileSync(indexFile, "utf8"));
  const fd = openSync(file, "r");
  for (const location of wanted) {
    for (const [start, end] of index[location] ?? []) {
      const buffer = Buffer.alloc(end - start);
      readSync(fd, buffer, 0, buffer.length, start);
      out.push(buffer);
    }
  }
  closeSync(fd);
} else {
  // latin1 keeps every byte as one character: fast to read, and written
  // back the same way it reproduces the file's UTF-8 bytes exactly.
  const text = readFileSync(file, "latin1");
  const set = new Set(wanted);
  const KEY = "\nPKG_LOCATION=";
  for (let at = text.indexOf(KEY); at >= 0; at = text.indexOf(KEY, at + 1)) {
    const valueStart = at + KEY.length;
    if (!set.has(text.slice(valueStart, text.indexOf("\n", valueStart)))) continue;
    const begin = text.lastIndexOf("PKGNAME=", at);
    let end = text.indexOf("\nPKGNAME=", at);
    end = end < 0 ? text.length : end + 1;
    out.push(Buffer.from(text.slice(begin, end), "latin1"));
  }
}
process.stdout.write(Buffer.concat(out));
