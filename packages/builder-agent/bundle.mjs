// `npm run bundle:agent`: the builder agent and everything it needs at run time
// (connect, protobuf, pino, gen/) in one ES module, dist/pkgfarm-agent.mjs, and a
// copy beside this file's package.json for `npm pack`.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const outfile = join(root, "dist", "pkgfarm-agent.mjs");
mkdirSync(dirname(outfile), { recursive: true });
await build({
  entryPoints: [join(here, "main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  minify: false,
  sourcemap: false,
  legalComments: "inline",
  logLevel: "warning",
  // pino and other CommonJS dependencies call require() for Node's built-ins.
  banner: { js: 'import { createRequire as __pkgfarmCreateRequire } from "node:module"; const require = __pkgfarmCreateRequire(import.meta.url);' },
});
copyFileSync(outfile, join(here, "pkgfarm-agent.mjs"));
