import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { HttpHandler } from "../shared/cors.js";

/**
 * Where the page's files are: services/web/static of the package, next to
 * dist/ (from dist/services/web/ three levels up). They are plain ES
 * modules, HTML and CSS, served as they are: nothing is built or fetched,
 * so the page works offline.
 */
export const STATIC_DIR = fileURLToPath(new URL("../../../services/web/static/", import.meta.url));

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/**
 * The page runs only its own scripts and talks only to its own origin; the
 * HTML report is shown in a sandboxed frame (no scripts) that inherits this
 * policy, hence inline styles.
 */
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
    "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/**
 * createStaticFiles serves the page: GET or HEAD of "/" (index.html) or of a
 * file of the directory by its name. The files are read once, at start, and
 * only those names are served, so no request path reaches the file system.
 * Anything else is 404; another method on a page path is 405.
 */
export function createStaticFiles(dir: string = STATIC_DIR): HttpHandler {
  const files = new Map<string, StaticFile>();
  // An install without the page's files (an image built without them) still
  // serves the API; the page's address says what is missing.
  if (!existsSync(join(dir, "index.html"))) {
    return (_req, res) => {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end(`the status page is not installed here: ${join(dir, "index.html")} is missing; the Connect API works without it\n`);
    };
  }
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name)];
    if (type === undefined) continue;
    const body = readFileSync(join(dir, name));
    files.set(`/${name}`, { body, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` });
  }
  files.set("/", files.get("/index.html")!);
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const file = files.get(path);
    if (file === undefined) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end(`not found: ${path.slice(0, 200)}; the status page is at /\n`);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end(`${path.slice(0, 200)} is a page file: GET it\n`);
      return;
    }
    // no-cache: the browser asks every time, and gets a 304 while unchanged,
    // so a dispatcher upgrade never leaves an old page behind.
    const headers = { ...SECURITY_HEADERS, "cache-control": "no-cache", etag: file.etag };
    if (req.headers["if-none-match"] === file.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, "content-type": file.type, "content-length": String(file.body.length) });
    if (req.method === "HEAD") res.end();
    else res.end(file.body);
  };
}
