/**
 * Reading a pkgsrc binary package's metadata without unpacking it.
 *
 * A pkgsrc binary package is a gzip'd ustar archive whose first members are
 * its metadata files (+CONTENTS, +COMMENT, +DESC, +BUILD_VERSION,
 * +BUILD_INFO, +SIZE_PKG, +SIZE_ALL, sometimes +DISPLAY, +INSTALL ...), then
 * the payload. pkg_info reads members until the first one whose name is not a
 * metadata file (info/perform.c, read_meta_data_from_archive); so does this,
 * and it stops decompressing there: a multi-gigabyte package costs what its
 * metadata costs.
 *
 * The archive is parsed here rather than with tar(1): it runs on every
 * platform the dispatcher runs on, and a package never reaches a shell.
 */

import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";

/** BinaryPackageMetadata is what pkg_info -X and pkg-up-to-date read from a package. */
export interface BinaryPackageMetadata {
  /** Every leading metadata member ("+CONTENTS", "+COMMENT" ...) with its text, in archive order. */
  readonly files: ReadonlyMap<string, string>;
  /** +CONTENTS: the packing list. */
  readonly contents: string;
  /** +COMMENT: the one-line comment (with its newline). */
  readonly comment: string;
  /** +DESC: the description. */
  readonly desc: string;
  /** +BUILD_INFO (VAR=value lines), when the package has one. */
  readonly buildInfo: string | undefined;
  /** +BUILD_VERSION ("path: $NetBSD...$" lines), when the package has one. */
  readonly buildVersion: string | undefined;
  /** +SIZE_PKG, when the package has one. */
  readonly sizePkg: string | undefined;
  /** +SIZE_ALL, when the package has one. */
  readonly sizeAll: string | undefined;
}

export interface ReadBinaryPackageOptions {
  /** Most bytes of metadata accepted (all members together); default 64 MiB. */
  readonly maxMetadataBytes?: number;
}

/** InvalidBinaryPackage: the file is not a pkgsrc binary package pkg_info could read. */
export class InvalidBinaryPackage extends Error {
  override readonly name = "InvalidBinaryPackage";
  constructor(
    /** The file (or "<stream>") that was read. */
    readonly file: string,
    /** What is wrong with it, as a sentence fragment. */
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${file} is not a readable pkgsrc binary package: ${problem}`, options);
  }
}

/** The metadata members pkg_info knows (lib/lib.h *_FNAME); the first other name ends the metadata. */
const METADATA_FILES = new Set([
  "+CONTENTS", "+COMMENT", "+DESC", "+INSTALL", "+DEINSTALL", "+DISPLAY", "+MTREE_DIRS",
  "+BUILD_VERSION", "+BUILD_INFO", "+SIZE_PKG", "+SIZE_ALL", "+PRESERVE", "+VIEWS",
  "+REQUIRED_BY", "+INSTALLED_INFO",
]);
/** Without these pkg_info refuses the package (pkg_meta_descriptors' required_file). */
const REQUIRED_FILES = ["+CONTENTS", "+COMMENT", "+DESC"] as const;
const DEFAULT_MAX_METADATA_BYTES = 64 * 1024 * 1024;
const BLOCK = 512;

/** readBinaryPackage reads the metadata of the package file at `file`. */
export async function readBinaryPackage(file: string, options: ReadBinaryPackageOptions = {}): Promise<BinaryPackageMetadata> {
  return parseBinaryPackage(createReadStream(file), file, options);
}

/**
 * parseBinaryPackage reads the metadata from a stream of the gzip'd bytes of
 * a package; `name` is used in error messages. The stream is destroyed once
 * the metadata has been read, so the payload is neither read nor inflated.
 */
export async function parseBinaryPackage(source: Readable, name = "<stream>", options: ReadBinaryPackageOptions = {}): Promise<BinaryPackageMetadata> {
  const maxBytes = options.maxMetadataBytes ?? DEFAULT_MAX_METADATA_BYTES;
  const tar = createMetadataTarReader(name, maxBytes);
  const gunzip = createGunzip();
  // pipe() keeps backpressure; an error of the source (ENOENT, EACCES) is
  // passed on so the loop below sees it as itself, not as a gzip error.
  let sourceError: Error | undefined;
  source.on("error", (error: Error) => {
    sourceError = error;
    gunzip.destroy(error);
  });
  source.pipe(gunzip);
  try {
    // Leaving the loop early destroys gunzip; source is destroyed below.
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      tar.push(chunk);
      if (tar.done) break;
    }
  } catch (error) {
    if (sourceError !== undefined) throw sourceError;
    if (error instanceof InvalidBinaryPackage) throw error;
    throw new InvalidBinaryPackage(name, `gzip: ${(error as Error).message}`, { cause: error });
  } finally {
    source.unpipe(gunzip);
    source.destroy();
  }
  return tar.finish();
}

interface MetadataTarReader {
  /** Set once a payload member or the end of the archive is reached. */
  readonly done: boolean;
  push(chunk: Buffer): void;
  finish(): BinaryPackageMetadata;
}

/**
 * A ustar reader that keeps only the leading metadata members. It knows the
 * records pkg_create (libarchive) writes: regular files, pax extended headers
 * (`x`, whose path= overrides the name) and GNU long names (`L`); global pax
 * headers (`g`) are skipped.
 */
function createMetadataTarReader(name: string, maxBytes: number): MetadataTarReader {
  const files = new Map<string, string>();
  const pending: Buffer[] = [];
  let pendingBytes = 0;
  let done = false;
  let kept = 0;
  // What the reader waits for: a header, or the body of the member it read.
  let want: { kind: "header" } | { kind: "body"; size: number; keep: "file" | "pax" | "longname" | "skip"; path: string } = { kind: "header" };
  let nextPath: string | undefined;

  const take = (n: number): Buffer | undefined => {
    if (pendingBytes < n) return undefined;
    const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
    pending.length = 0;
    const out = all.subarray(0, n);
    if (all.length > n) pending.push(all.subarray(n));
    pendingBytes -= n;
    return out;
  };

  const onHeader = (header: Buffer) => {
    if (header.every((b) => b === 0)) {
      done = true; // end-of-archive marker: a package of metadata only
      return;
    }
    if (!checksumMatches(header)) throw new InvalidBinaryPackage(name, "a tar header has a bad checksum");
    const size = parseOctal(header.subarray(124, 136));
    if (size === undefined) throw new InvalidBinaryPackage(name, "a tar header has an unreadable size");
    const type = String.fromCharCode(header[156]!);
    let path = nextPath ?? headerPath(header);
    nextPath = undefined;
    if (path.startsWith("./")) path = path.slice(2);
    if (type === "x") return void (want = { kind: "body", size, keep: "pax", path });
    if (type === "L") return void (want = { kind: "body", size, keep: "longname", path });
    if (type === "g") return void (want = { kind: "body", size, keep: "skip", path });
    if (!METADATA_FILES.has(path)) {
      done = true; // the payload starts: nothing after it is metadata
      return;
    }
    if (type !== "0" && type !== "\u0000") throw new InvalidBinaryPackage(name, `${path} is not a regular file`);
    if (files.has(path)) throw new InvalidBinaryPackage(name, `${path} appears twice`);
    want = { kind: "body", size, keep: "file", path };
  };

  const onBody = (w: { size: number; keep: string; path: string }, body: Buffer) => {
    const data = body.subarray(0, w.size);
    if (w.keep === "file") {
      files.set(w.path, data.toString("utf8"));
    } else if (w.keep === "pax") {
      nextPath = paxPath(data) ?? nextPath;
    } else if (w.keep === "longname") {
      nextPath = data.toString("utf8").replace(/\u0000+$/, "");
    }
  };

  return {
    get done() {
      return done;
    },
    push(chunk) {
      if (done) return;
      pending.push(chunk);
      pendingBytes += chunk.length;
      for (;;) {
        if (done) return;
        if (want.kind === "header") {
          const header = take(BLOCK);
          if (header === undefined) return;
          onHeader(header);
        } else {
          const w = want;
          kept += w.size;
          if (kept > maxBytes) throw new InvalidBinaryPackage(name, `its metadata is larger than ${maxBytes} bytes`);
          const body = take(Math.ceil(w.size / BLOCK) * BLOCK);
          if (body === undefined) {
            kept -= w.size;
            return;
          }
          onBody(w, body);
          want = { kind: "header" };
        }
      }
    },
    finish() {
      // A package of metadata only may end without the end-of-archive
      // blocks; one that ends inside a member is truncated.
      if (!done && (want.kind === "body" || pendingBytes > 0)) throw new InvalidBinaryPackage(name, "the archive ends in the middle of a member");
      for (const required of REQUIRED_FILES) {
        if (!files.has(required)) throw new InvalidBinaryPackage(name, `it has no ${required} before its payload`);
      }
      return {
        files,
        contents: files.get("+CONTENTS")!,
        comment: files.get("+COMMENT")!,
        desc: files.get("+DESC")!,
        buildInfo: files.get("+BUILD_INFO"),
        buildVersion: files.get("+BUILD_VERSION"),
        sizePkg: files.get("+SIZE_PKG"),
        sizeAll: files.get("+SIZE_ALL"),
      };
    },
  };
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString("utf8");
}

function headerPath(header: Buffer): string {
  const base = cString(header.subarray(0, 100));
  // POSIX ustar only: old GNU headers keep times where ustar has the prefix.
  const magic = header.subarray(257, 263).toString("latin1");
  const prefix = magic === "ustar\u0000" ? cString(header.subarray(345, 500)) : "";
  return prefix === "" ? base : `${prefix}/${base}`;
}

function parseOctal(field: Buffer): number | undefined {
  // GNU base-256 for sizes over 8 GiB: the high bit of the first byte.
  if (field[0]! & 0x80) {
    let value = 0;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    return value;
  }
  const text = cString(field).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  return Number.parseInt(text, 8);
}

function checksumMatches(header: Buffer): boolean {
  const recorded = parseOctal(header.subarray(148, 156));
  let unsigned = 0;
  for (let i = 0; i < BLOCK; i++) unsigned += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return recorded === unsigned;
}

/** The path= record of a pax extended header ("LEN path=VALUE\n" records). */
function paxPath(data: Buffer): string | undefined {
  let found: string | undefined;
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const len = Number.parseInt(data.subarray(at, space).toString("latin1"), 10);
    if (!Number.isInteger(len) || len <= 0) break;
    const record = data.subarray(space + 1, at + len - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq !== -1 && record.slice(0, eq) === "path") found = record.slice(eq + 1);
    at += len;
  }
  return found;
}

// ---------------------------------------------------------------------------
// The metadata files' formats.

/** PackingListEntry is one `@command argument` (or plain file) line of +CONTENTS. */
export interface PackingListEntry {
  /** "name", "pkgdep", "blddep", "pkgcfl", "cwd", "comment" ...; "file" for a plain path. */
  readonly command: string;
  readonly argument: string;
}

/** PackingList is +CONTENTS with the entries pkg_info -X and pkg-up-to-date use picked out. */
export interface PackingList {
  /** Every line, in order (pkg_info -X prints @name, @pkgdep and @pkgcfl in this order). */
  readonly entries: readonly PackingListEntry[];
  /** @name: the PKGNAME. */
  readonly pkgname: string | undefined;
  /** @pkgdep: run-time dependency patterns ("pkg_chk>=1.76"). */
  readonly pkgdeps: readonly string[];
  /** @blddep: the exact PKGNAMEs it was built against (pkg_info -N). */
  readonly blddeps: readonly string[];
  /** @pkgcfl: conflict patterns. */
  readonly conflicts: readonly string[];
}

/** parsePackingList reads +CONTENTS the way pkg_install's plist.c does: `@cmd arg`, else a file. */
export function parsePackingList(contents: string): PackingList {
  const entries: PackingListEntry[] = [];
  for (const raw of contents.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line === "") continue;
    if (line.startsWith("@")) {
      const m = /^@(\S+)\s*(.*)$/.exec(line)!;
      entries.push({ command: m[1]!, argument: m[2]!.trimEnd() });
    } else {
      entries.push({ command: "file", argument: line });
    }
  }
  const all = (command: string) => entries.filter((e) => e.command === command).map((e) => e.argument);
  return {
    entries,
    pkgname: all("name")[0],
    pkgdeps: all("pkgdep"),
    blddeps: all("blddep"),
    conflicts: all("pkgcfl"),
  };
}

/**
 * parseBuildInfo reads +BUILD_INFO's `VAR=value` lines in order (a name
 * may repeat, e.g. REQUIRES). Like pkg_install's var_cmp, one space after
 * the `=` is not part of the value.
 */
export function parseBuildInfo(text: string): Array<readonly [string, string]> {
  const out: Array<readonly [string, string]> = [];
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const value = line.slice(eq + 1);
    out.push([line.slice(0, eq), value.startsWith(" ") ? value.slice(1) : value]);
  }
  return out;
}

/** BuildVersionEntry is one line of +BUILD_VERSION: a tree file and the $NetBSD$ id it had. */
export interface BuildVersionEntry {
  /** Path relative to the tree root, e.g. "pkgtools/digest/Makefile". */
  readonly file: string;
  /** The id as recorded, e.g. "$NetBSD: Makefile,v 1.1 2012/01/01 00:00:00 x Exp $". */
  readonly id: string;
}

/**
 * parseBuildVersion reads +BUILD_VERSION as pkg-up-to-date does: the path is
 * everything before the first ':', the id the rest without its leading
 * blanks (`sed 's/:/ /' | read file file_id`).
 */
export function parseBuildVersion(text: string): BuildVersionEntry[] {
  const out: BuildVersionEntry[] = [];
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    out.push({ file: line.slice(0, colon), id: line.slice(colon + 1).replace(/^[ \t]+/, "").replace(/[ \t]+$/, "") });
  }
  return out;
}
