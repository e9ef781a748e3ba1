export { createHealth, MAX_LISTED_SERVICES } from "./health.js";
export type { ServerHealth, ServingStatusName } from "./health.js";
export { registerReflection } from "./reflection.js";
export { createPkgfarmTransport, MAX_MESSAGE_BYTES, SESSION_MEMORY_MIB } from "./transport.js";
export { listenGrpc } from "./grpc-server.js";
export type { ListeningGrpcServer } from "./grpc-server.js";
