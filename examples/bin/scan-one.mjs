#!/usr/bin/env node
// scan-one.mjs: pbulk-index for the example tree (what `bmake pbulk-index`
// prints in pkgsrc), without bmake.
//
//   node examples/bin/scan-one.mjs [--tree DIR] LOCATION   records of one location
//   node examples/bin/scan-one.mjs [--tree DIR] --all      records of every package
//
// The tree is --tree DIR, else $PKGFARM_TREE, else the bundled examples/tree.
// The location is the last argument, else $PKGFARM_LOCATION. Records go to
// stdout; problems go to stderr with a non-zero exit (1: unknown location or
// malformed Makefile, 2: usage). With --all a broken package is reported and
// skipped, the others are still printed, and the exit status is 1.

import path from "node:path";
import { BUNDLED_TREE, formatRecord, listLocations, scanPackage } from "./mk.mjs";

const USAGE = "usage: scan-one.mjs [--tree DIR] (LOCATION | --all)";

function main(argv, env) {
  let tree = env.PKGFARM_TREE || BUNDLED_TREE;
  let all = false;
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--all") all = true;
    else if (a === "--tree") {
      if (i + 1 >= argv.length) return usage("--tree needs a directory");
      tree = argv[++i];
    } else if (a.startsWith("--tree=")) tree = a.slice("--tree=".length);
    else if (a === "-h" || a === "--help") {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    } else if (a.startsWith("-")) return usage(`unknown option ${a}`);
    else rest.push(a);
  }
  tree = path.resolve(tree);
  if (all) {
    if (rest.length > 0) return usage("--all takes no location");
    return scanAll(tree);
  }
  const location = rest.length > 0 ? rest[rest.length - 1] : env.PKGFARM_LOCATION;
  if (!location) return usage("no location given (argument or PKGFARM_LOCATION)");
  try {
    process.stdout.write(scanPackage(tree, location).map(formatRecord).join(""));
    return 0;
  } catch (err) {
    process.stderr.write(`scan-one: ${location}: ${err.message}\n`);
    return 1;
  }
}

function scanAll(tree) {
  let locations;
  try {
    locations = listLocations(tree);
  } catch (err) {
    process.stderr.write(`scan-one: ${err.message}\n`);
    return 1;
  }
  let status = 0;
  const out = [];
  for (const location of locations) {
    try {
      out.push(...scanPackage(tree, location).map(formatRecord));
    } catch (err) {
      process.stderr.write(`scan-one: ${location}: ${err.message}\n`);
      status = 1;
    }
  }
  process.stdout.write(out.join(""));
  return status;
}

function usage(problem) {
  process.stderr.write(`scan-one: ${problem}\n${USAGE}\n`);
  return 2;
}

process.exitCode = main(process.argv.slice(2), process.env);
