import { fromBinary, toBinary, type DescExtension, type DescFile, type DescMessage, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { sourceInfoDescriptorSet } from "../../gen/source_info.js";

/** A reflection request's oneof, shaped alike in v1 and v1alpha. */
type ReflectionQuery =
  | { case: "fileByFilename"; value: string }
  | { case: "fileContainingSymbol"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: "allExtensionNumbersOfType"; value: string }
  | { case: "listServices"; value: string }
  | { case: undefined; value?: undefined };

/** A reflection response's oneof, as init data for either version's message. */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** The descriptors reflection can describe, and the services it lists. */
interface ReflectionIndex {
  readonly serviceNames: readonly string[];
  readonly fileByName: ReadonlyMap<string, DescFile>;
  /** Every fully-qualified name a client may ask for: types, fields, oneofs, enum values, services, methods. */
  readonly fileBySymbol: ReadonlyMap<string, DescFile>;
  readonly extensionsByExtendee: ReadonlyMap<string, readonly DescExtension[]>;
}

/**
 * registerReflection adds grpc.reflection.v1 and v1alpha ServerReflection to
 * the router. The services listed, and the files described, are whatever is on
 * the router when a client asks, so it may be called before or after the other
 * services are added. `files` adds descriptors no registered service reaches,
 * such as extensions.
 */
export function registerReflection(router: ConnectRouter, files: readonly DescFile[] | FileRegistry = []): ConnectRouter {
  const extraFiles = isFileRegistry(files) ? [...files.files] : files;
  let cached: { handlerCount: number; index: ReflectionIndex } | undefined;
  // Routers only grow, so the handler count says whether the index is stale.
  const currentIndex = (): ReflectionIndex => {
    if (cached?.handlerCount !== router.handlers.length) {
      const services = router.handlers.map((handler) => handler.service);
      cached = {
        handlerCount: router.handlers.length,
        index: createReflectionIndex([...extraFiles, ...services.map((s) => s.file)], services.map((s) => s.typeName)),
      };
    }
    return cached.index;
  };
  router.service(ServerReflectionV1, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: answerReflectionQuery(currentIndex(), request.messageRequest) };
      }
    },
  });
  router.service(ServerReflectionV1alpha, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: answerReflectionQuery(currentIndex(), request.messageRequest) };
      }
    },
  });
  return router;
}

/** createReflectionIndex indexes the files, their transitive imports, and every symbol in them. */
function createReflectionIndex(files: Iterable<DescFile>, serviceNames: Iterable<string>): ReflectionIndex {
  const fileByName = new Map<string, DescFile>();
  const fileBySymbol = new Map<string, DescFile>();
  const extensionsByExtendee = new Map<string, DescExtension[]>();

  const addExtension = (extension: DescExtension) => {
    fileBySymbol.set(extension.typeName, extension.file);
    const known = extensionsByExtendee.get(extension.extendee.typeName);
    if (known === undefined) extensionsByExtendee.set(extension.extendee.typeName, [extension]);
    else known.push(extension);
  };
  const addEnums = (scope: string, file: DescFile, enums: DescFile["enums"]) => {
    for (const desc of enums) {
      fileBySymbol.set(desc.typeName, file);
      // Enum values are siblings of their enum, not children (C++ scoping).
      for (const value of desc.values) fileBySymbol.set(qualify(scope, value.name), file);
    }
  };
  const addMessages = (file: DescFile, messages: readonly DescMessage[]) => {
    for (const message of messages) {
      fileBySymbol.set(message.typeName, file);
      for (const member of message.members) fileBySymbol.set(`${message.typeName}.${member.name}`, file);
      addEnums(message.typeName, file, message.nestedEnums);
      message.nestedExtensions.forEach(addExtension);
      addMessages(file, message.nestedMessages);
    }
  };
  const addFile = (file: DescFile) => {
    if (fileByName.has(file.proto.name)) return;
    fileByName.set(file.proto.name, file);
    addMessages(file, file.messages);
    addEnums(file.proto.package, file, file.enums);
    file.extensions.forEach(addExtension);
    for (const service of file.services) {
      fileBySymbol.set(service.typeName, file);
      for (const method of service.methods) fileBySymbol.set(`${service.typeName}.${method.name}`, file);
    }
    file.dependencies.forEach(addFile);
  };
  for (const file of files) addFile(file);

  return { serviceNames: [...new Set(serviceNames)].sort(), fileByName, fileBySymbol, extensionsByExtendee };
}

/** answerReflectionQuery answers one request; lookup failures are answers too, so the stream goes on. */
function answerReflectionQuery(index: ReflectionIndex, query: ReflectionQuery): ReflectionAnswer {
  switch (query.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: index.serviceNames.map((name) => ({ name })) } };
    case "fileByFilename":
      return describeFile(index.fileByName.get(query.value), `file ${query.value}`);
    case "fileContainingSymbol":
      return describeFile(index.fileBySymbol.get(stripLeadingDot(query.value)), `symbol ${query.value}`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = query.value;
      const extension = index.extensionsByExtendee.get(stripLeadingDot(containingType))?.find((e) => e.number === extensionNumber);
      return describeFile(extension?.file, `extension ${extensionNumber} of ${containingType}`);
    }
    case "allExtensionNumbersOfType": {
      const typeName = stripLeadingDot(query.value);
      if (!index.fileBySymbol.has(typeName)) return notFound(`type ${query.value}`);
      const numbers = (index.extensionsByExtendee.get(typeName) ?? []).map((e) => e.number);
      return { case: "allExtensionNumbersResponse", value: { baseTypeName: typeName, extensionNumber: numbers } };
    }
    case undefined:
      throw new ConnectError("reflection request names no query", Code.InvalidArgument);
  }
}

/**
 * The file comes first, because clients (grpcurl among them) take the first
 * descriptor as the answer; its transitive imports follow so the client can
 * link it without asking again.
 */
function describeFile(file: DescFile | undefined, what: string): ReflectionAnswer {
  if (file === undefined) return notFound(what);
  const ordered: DescFile[] = [];
  const seen = new Set<DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f)) return;
    seen.add(f);
    ordered.push(f);
    f.dependencies.forEach(visit);
  };
  visit(file);
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: ordered.map(serializedFile) } };
}

const serializedFiles = new WeakMap<DescFile, Uint8Array>();

/**
 * serializedFile is the descriptor reflection sends for a file: the one
 * with source_code_info (its comments) that `buf generate` keeps in
 * gen/source_info.ts when the file is one of proto/, so `grpcurl describe`
 * and `buf curl` show the documentation; otherwise (the well-known types)
 * the one the generated code embeds, which has none.
 */
function serializedFile(file: DescFile): Uint8Array {
  let bytes = serializedFiles.get(file);
  if (bytes === undefined) serializedFiles.set(file, (bytes = documentedFiles().get(file.proto.name) ?? toBinary(FileDescriptorProtoSchema, file.proto)));
  return bytes;
}

let documented: ReadonlyMap<string, Uint8Array> | undefined;

/** The files of proto/ with their comments, by file name, decoded on first use. */
function documentedFiles(): ReadonlyMap<string, Uint8Array> {
  if (documented === undefined) {
    const set = fromBinary(FileDescriptorSetSchema, Buffer.from(sourceInfoDescriptorSet, "base64"));
    documented = new Map(set.file.map((f) => [f.name ?? "", toBinary(FileDescriptorProtoSchema, f)]));
  }
  return documented;
}

function notFound(what: string): ReflectionAnswer {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } };
}

function qualify(scope: string, name: string): string {
  return scope === "" ? name : `${scope}.${name}`;
}

function stripLeadingDot(name: string): string {
  return name.startsWith(".") ? name.slice(1) : name;
}

function isFileRegistry(files: readonly DescFile[] | FileRegistry): files is FileRegistry {
  return !Array.isArray(files);
}
