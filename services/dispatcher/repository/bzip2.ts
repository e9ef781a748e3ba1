/**
 * bzip2 compression by the bzip2(1) program.
 *
 * pkgin fetches pkg_summary.bz2 first and pbulk writes SHA512.bz2, so the
 * repository needs bzip2, and Node has none: zlib does gzip, deflate and
 * brotli only, and node_modules holds no bzip2 library (adding one is a new
 * dependency, and a JavaScript compressor is slow on large summaries). The
 * bzip2 program is on every system pkgsrc runs on (it is in the base of the
 * BSDs and in every Linux distribution's essentials; pkgsrc has
 * archivers/bzip2 otherwise), and it is what pbulk itself runs. So the
 * repository runs it, given as a path or a name looked up in PATH, and says
 * clearly when it is missing instead of publishing a repository without the
 * file pkgin asks for first.
 */

import { spawn } from "node:child_process";

/** Bzip2Unavailable: the bzip2 program could not be started. */
export class Bzip2Unavailable extends Error {
  override readonly name = "Bzip2Unavailable";
  constructor(
    readonly command: string,
    options?: { cause?: unknown },
  ) {
    super(
      `cannot run ${JSON.stringify(command)}: the repository's pkg_summary.bz2 and SHA512.bz2 need the bzip2 program ` +
        "(install bzip2, e.g. apt-get install bzip2 or pkgsrc archivers/bzip2, or name its path in the repository options)",
      options,
    );
  }
}

/** Bzip2Failed: bzip2 ran and did not succeed. */
export class Bzip2Failed extends Error {
  override readonly name = "Bzip2Failed";
  constructor(
    readonly command: string,
    readonly status: string,
    readonly stderr: string,
  ) {
    super(`${command} ${status}${stderr === "" ? "" : `: ${stderr.trim().slice(0, 500)}`}`);
  }
}

/** bzip2 compresses `data` with `command -c` (default "bzip2") and returns the compressed bytes. */
export function bzip2(data: Uint8Array, command = "bzip2", signal?: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, ["-c"], { stdio: ["pipe", "pipe", "pipe"], ...(signal === undefined ? {} : { signal }) });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      reject(error);
    };
    child.on("error", (error: NodeJS.ErrnoException) => {
      fail(error.code === "ENOENT" || error.code === "EACCES" ? new Bzip2Unavailable(command, { cause: error }) : error);
    });
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    // EPIPE when bzip2 dies early: its exit status says why, below.
    child.stdin.on("error", () => {});
    child.on("close", (code, sig) => {
      if (settled) return;
      if (code === 0) {
        settled = true;
        resolve(Buffer.concat(out));
        return;
      }
      fail(new Bzip2Failed(command, sig === null ? `exited with status ${code}` : `was killed by ${sig}`, Buffer.concat(err).toString("utf8")));
    });
    child.stdin.end(data);
  });
}
