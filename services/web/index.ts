export { createDepGraphForwarder, WEB_FORWARDED_GUARDS } from "./depgraph-forwarder.js";
export type { DepGraphForwarder } from "./depgraph-forwarder.js";
export { createStaticFiles, STATIC_DIR } from "./static-files.js";
