#!/usr/bin/env node
// A scan helper for benchmarks: instead of running bmake pbulk-index in each
// location, it prints the records a prepared pbulk-index file
// (PKGFARM_BENCH_SCAN) holds for the locations given as arguments. It takes
// any number of locations per run (depgraph --scan-batch).
import { readFileSync } from "node:fs";

const file = process.env.PKGFARM_BENCH_SCAN;
if (!file) {
  process.stderr.write("scan-from-file: set PKGFARM_BENCH_SCAN to a plain pbulk-index file\n");
  process.exit(2);
}
const wanted = new Set(process.argv.slice(2));
// latin1 keeps every byte as one character: fast to read, and written back
// the same way it reproduces the file's UTF-8 bytes exactly.
const text = readFileSync(file, "latin1");
const out = [];
// Only PKG_LOCATION lines are looked at; a record runs from its PKGNAME line
// to the next one.
const KEY = "\nPKG_LOCATION=";
for (let at = text.indexOf(KEY); at >= 0; at = text.indexOf(KEY, at + 1)) {
  const valueStart = at + KEY.length;
  const location = text.slice(valueStart, text.indexOf("\n", valueStart));
  if (!wanted.has(location)) continue;
  const begin = text.lastIndexOf("PKGNAME=", at);
  let end = text.indexOf("\nPKGNAME=", at);
  end = end < 0 ? text.length : end + 1;
  const record = text.slice(begin, end);
  out.push(record.endsWith("\n") ? record : record + "\n");
}
process.stdout.write(out.join(""), "latin1");
