#!/usr/bin/env node
// build-one.mjs: builds one package of the example tree into a binary package,
// the way `bmake package` does for pkgsrc. Everything comes from the
// environment (no arguments, nothing ever goes through a shell string):
//
//   PKGFARM_TREE           root of the package tree
//   PKGFARM_LOCATION       category/package, e.g. lang/py-six
//   PKGFARM_PKGNAME        the package to build, e.g. py313-six-1.17.0
//   PKGFARM_MULTI_VERSION  "PYTHON_VERSION_REQD=313" or empty (optional)
//   PKGFARM_WORKDIR        a directory of this job's own (created if missing)
//   PKGFARM_DEPENDS_DIR    directory of <PKGNAME>.tgz of every dependency,
//                          transitive (optional when there are none)
//   PKGFARM_OUTPUT         where to write the binary package (.../<PKGNAME>.tgz)
//
// Steps: install every dependency package into $PKGFARM_WORKDIR/prefix
// (metadata into $PKGFARM_WORKDIR/pkgdb/<PKGNAME>/), check that each
// dependency pattern of the package is met, run `/bin/sh build.sh` of the
// package in $PKGFARM_WORKDIR/work with PREFIX, DESTDIR, PKGNAME, ... in its
// environment, then pack DESTDIR plus +CONTENTS, +BUILD_INFO and +COMMENT
// into $PKGFARM_OUTPUT (gzip'd tar, written to a temporary name and renamed).
//
// build.sh's output is passed straight through (it is the build log), with
// a few "===>" lines of our own on stdout. Exit status 0 on success; 1 when
// the build fails (one line saying why on stderr); 2 for a bad environment.

import { execFile, spawn } from "node:child_process";
import {
  existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseMultiVersion, PKGNAME_RE, pkgMatch, scanPackage } from "./mk.mjs";

const execFileP = promisify(execFile);

class BuildError extends Error {
  constructor(message, status = 1) {
    super(message);
    this.status = status;
  }
}

const say = (line) => process.stdout.write(`===> ${line}\n`);

let child; // the running build.sh, for signal forwarding
let tmpOutput; // the half-written package, removed on failure

async function main(env) {
  for (const key of ["PKGFARM_TREE", "PKGFARM_LOCATION", "PKGFARM_PKGNAME", "PKGFARM_WORKDIR", "PKGFARM_OUTPUT"]) {
    if (!env[key]) throw new BuildError(`${key} is not set`, 2);
  }
  const tree = path.resolve(env.PKGFARM_TREE);
  const location = env.PKGFARM_LOCATION;
  const pkgname = env.PKGFARM_PKGNAME;
  const workdir = path.resolve(env.PKGFARM_WORKDIR);
  const output = path.resolve(env.PKGFARM_OUTPUT);
  const dependsDir = env.PKGFARM_DEPENDS_DIR ? path.resolve(env.PKGFARM_DEPENDS_DIR) : "";
  if (!PKGNAME_RE.test(pkgname)) throw new BuildError(`PKGFARM_PKGNAME "${pkgname}" is not name-version`, 2);
  let multiVersion;
  try {
    multiVersion = parseMultiVersion(env.PKGFARM_MULTI_VERSION ?? "");
  } catch (err) {
    throw new BuildError(`PKGFARM_MULTI_VERSION: ${err.message}`, 2);
  }

  // What the tree says about this package, exactly as the scan did.
  let records;
  try {
    records = scanPackage(tree, location);
  } catch (err) {
    throw new BuildError(`${location}: ${err.message}`, 2);
  }
  const record = records.find((r) => r.pkgname === pkgname);
  if (record === undefined) {
    throw new BuildError(`${location} builds ${records.map((r) => r.pkgname).join(", ")}, not ${pkgname} (rescan the tree?)`, 2);
  }
  const mvText = (mv) => mv.map(([k, v]) => `${k}=${v}`).join(" ");
  if (multiVersion.length > 0 && mvText(multiVersion) !== mvText(record.multiVersion)) {
    throw new BuildError(`${pkgname} is built with "${mvText(record.multiVersion)}", not "${mvText(multiVersion)}"`, 2);
  }
  const failReason = record.fields.get("PKG_FAIL_REASON") || record.fields.get("PKG_SKIP_REASON");
  if (failReason) throw new BuildError(`${pkgname} cannot be built: ${failReason}`);
  const pkgDir = path.join(tree, location);
  const buildScript = path.join(pkgDir, "build.sh");
  if (!existsSync(buildScript)) throw new BuildError(`${location} has no build.sh`, 2);

  const dirs = {};
  for (const d of ["prefix", "destdir", "work", "pkgdb", "tmp", "home", "extract"]) {
    dirs[d] = path.join(workdir, d);
    rmSync(dirs[d], { recursive: true, force: true });
    mkdirSync(dirs[d], { recursive: true });
  }

  // Install the dependencies, as pkg_add would.
  const installed = await installDependencies(dependsDir, dirs);
  for (const dep of [...record.depends.tool, ...record.depends.build, ...record.depends.run]) {
    if (!installed.some((name) => pkgMatch(dep.pattern, name))) {
      throw new BuildError(`dependency ${dep.pattern} (${dep.location}) is not among the packages in PKGFARM_DEPENDS_DIR`);
    }
  }

  // Build and install into DESTDIR.
  say(`Building for ${pkgname}${record.multiVersion.length ? ` (${mvText(record.multiVersion)})` : ""}`);
  const buildEnv = {
    PATH: `${path.join(dirs.prefix, "bin")}${path.delimiter}${env.PATH || "/usr/bin:/bin"}`,
    HOME: dirs.home,
    TMPDIR: dirs.tmp,
    LC_ALL: "C",
    PREFIX: dirs.prefix,
    DESTDIR: dirs.destdir,
    WRKSRC: dirs.work,
    PKG_DBDIR: dirs.pkgdb,
    PKGNAME: pkgname,
    PKGBASE: pkgname.slice(0, pkgname.lastIndexOf("-")),
    PKGVERSION: pkgname.slice(pkgname.lastIndexOf("-") + 1),
    PKGPATH: location,
    PKGDIR: pkgDir,
    FILESDIR: path.join(pkgDir, "files"),
    MULTI_VERSION: mvText(record.multiVersion),
  };
  for (const [k, v] of record.multiVersion) buildEnv[k] = v;
  const status = await runBuildScript(buildScript, dirs.work, buildEnv);
  if (status !== 0) throw new BuildError(`build.sh of ${pkgname} failed (${status})`);

  // Package DESTDIR.
  say(`Packaging ${pkgname}`);
  const top = readdirSync(dirs.destdir).sort();
  const clash = top.find((n) => n.startsWith("+"));
  if (clash !== undefined) throw new BuildError(`build.sh installed ${clash}, a name reserved for package metadata`);
  const files = listFiles(dirs.destdir);
  if (files.length === 0) throw new BuildError(`build.sh of ${pkgname} installed nothing into DESTDIR`);
  const contents = [
    "@comment pkgfarm example package, made by examples/bin/build-one.mjs",
    `@name ${pkgname}`,
    ...record.depends.run.map((d) => `@pkgdep ${d.pattern}`),
    ...installed.map((n) => `@blddep ${n}`),
    ...files,
    "",
  ].join("\n");
  const buildInfo = [
    `PKGPATH=${location}`,
    `MULTI_VERSION=${mvText(record.multiVersion)}`,
    `DEPENDS=${installed.join(" ")}`,
    `OPSYS=${os.type()}`,
    `OS_VERSION=${os.release()}`,
    `MACHINE_ARCH=${os.machine()}`,
    `BUILD_HOST=${os.hostname()}`,
    "PKGTOOLS_VERSION=pkgfarm-examples-1",
    "",
  ].join("\n");
  writeFileSync(path.join(dirs.destdir, "+CONTENTS"), contents);
  writeFileSync(path.join(dirs.destdir, "+BUILD_INFO"), buildInfo);
  writeFileSync(path.join(dirs.destdir, "+COMMENT"), `${record.comment || pkgname}\n`);

  mkdirSync(path.dirname(output), { recursive: true });
  tmpOutput = `${output}.tmp-${process.pid}`;
  await run("tar", ["czf", tmpOutput, "-C", dirs.destdir, "+CONTENTS", "+BUILD_INFO", "+COMMENT", ...top]);
  renameSync(tmpOutput, output);
  tmpOutput = undefined;
  if (!existsSync(output) || statSync(output).size === 0) throw new BuildError(`${output} is missing after packaging`);
  say(`Created ${output} (${files.length} files)`);
  return 0;
}

/** installDependencies extracts every <PKGNAME>.tgz of dependsDir into prefix; returns their names, sorted. */
async function installDependencies(dependsDir, dirs) {
  if (dependsDir === "") return [];
  let entries;
  try {
    entries = readdirSync(dependsDir).filter((n) => n.endsWith(".tgz")).sort();
  } catch (err) {
    throw new BuildError(`PKGFARM_DEPENDS_DIR ${dependsDir}: ${err.code ?? err.message}`, 2);
  }
  const installed = [];
  for (const file of entries) {
    const archive = path.join(dependsDir, file);
    // Into a staging directory of its own first (tar refuses members with
    // ".." or a leading "/" unless told otherwise), then merged into the prefix.
    const staging = path.join(dirs.extract, file);
    mkdirSync(staging);
    await run("tar", ["xzf", archive, "-C", staging]);
    const contentsFile = path.join(staging, "+CONTENTS");
    if (!existsSync(contentsFile)) throw new BuildError(`${file} is not a package (no +CONTENTS)`);
    const name = /^@name (\S+)$/m.exec(readFileSync(contentsFile, "utf8"))?.[1];
    if (name === undefined || `${name}.tgz` !== file) throw new BuildError(`${file} holds package "${name ?? "?"}", not ${file.slice(0, -4)}`);
    say(`Installing dependency ${name}`);
    const db = path.join(dirs.pkgdb, name);
    mkdirSync(db);
    for (const entry of readdirSync(staging)) {
      if (entry.startsWith("+")) renameSync(path.join(staging, entry), path.join(db, entry));
      else mergeInto(staging, dirs.prefix, entry, name);
    }
    installed.push(name);
    rmSync(staging, { recursive: true, force: true });
  }
  return installed;
}

/** mergeInto moves from/rel to to/rel, merging directories; a file that is already there is a conflict. */
function mergeInto(from, to, rel, pkgname) {
  const src = path.join(from, rel);
  const dest = path.join(to, rel);
  let existing;
  try {
    existing = lstatSync(dest);
  } catch {
    renameSync(src, dest);
    return;
  }
  if (existing.isDirectory() && lstatSync(src).isDirectory()) {
    for (const entry of readdirSync(src)) mergeInto(from, to, path.join(rel, entry), pkgname);
    return;
  }
  throw new BuildError(`${rel} of ${pkgname} conflicts with a file another dependency installed`);
}

/** listFiles lists the non-directory entries under dir, relative, sorted. */
function listFiles(dir, rel = "") {
  const out = [];
  for (const name of readdirSync(path.join(dir, rel)).sort()) {
    const r = rel === "" ? name : `${rel}/${name}`;
    if (lstatSync(path.join(dir, r)).isDirectory()) out.push(...listFiles(dir, r));
    else out.push(r);
  }
  return out;
}

function run(file, args) {
  return execFileP(file, args, { maxBuffer: 64 * 1024 * 1024 }).catch((err) => {
    throw new BuildError(`${file} ${args[0]} failed: ${(err.stderr || err.message).trim().split("\n")[0]}`);
  });
}

/** runBuildScript runs /bin/sh build.sh in its own process group; resolves to "exit status N" or "signal S", 0 for success. */
function runBuildScript(script, cwd, env) {
  return new Promise((resolve, reject) => {
    child = spawn("/bin/sh", [script], { cwd, env, stdio: ["ignore", "inherit", "inherit"], detached: true });
    child.on("error", (err) => reject(new BuildError(`cannot run /bin/sh: ${err.message}`)));
    child.on("exit", (code, signal) => {
      child = undefined;
      resolve(code === 0 ? 0 : signal ? `killed by ${signal}` : `exit status ${code}`);
    });
  });
}

for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(sig, () => {
    if (child?.pid !== undefined) {
      try {
        process.kill(-child.pid, sig); // the whole group: build.sh and whatever it started
      } catch {
        // already gone
      }
    }
    if (tmpOutput !== undefined) rmSync(tmpOutput, { force: true });
    process.stderr.write(`build-one: ${process.env.PKGFARM_PKGNAME ?? "build"} interrupted by ${sig}\n`);
    process.exit(128 + os.constants.signals[sig]);
  });
}

main(process.env).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (tmpOutput !== undefined) rmSync(tmpOutput, { force: true });
    const message = err instanceof BuildError ? err.message : `internal error: ${err.stack ?? err}`;
    process.stderr.write(`build-one: ${message.replace(/\s*\n\s*/g, " ")}\n`);
    process.exitCode = err instanceof BuildError ? err.status : 1;
  },
);
