import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, file_google_protobuf_api } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection, ServerReflectionRequestSchema, type ServerReflectionResponse } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import { createHealth, registerReflection, type ServerHealth } from "../../services/shared/index.js";

const run = promisify(execFile);
const BUF = new URL("../../../node_modules/.bin/buf", import.meta.url).pathname;
const HEALTH_PROTO = new URL("../../../proto/grpc/health/v1/health.proto", import.meta.url).pathname;

interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly health: ServerHealth;
  close(): Promise<void>;
}

/** A connect-node server carrying only health and reflection, plus api.proto to exercise transitive imports. */
async function startServer(withDepGraph = false): Promise<RunningServer> {
  const health = createHealth();
  const shutdown = new AbortController();
  const server = http2.createServer(
    connectNodeAdapter({
      shutdownSignal: shutdown.signal,
      routes(router) {
        registerReflection(router, [file_google_protobuf_api]);
        health.register(router);
        // Only its descriptors matter here: reflection describes what is registered.
        if (withDepGraph) router.service(DepGraphService, {});
      },
    }),
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    health,
    async close() {
      health.shutdown();
      shutdown.abort();
      await new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Idle HTTP/2 sessions would otherwise hold close() open until they time out.
        for (const session of sessions) session.close();
      });
    },
  };
}

function bufCurl(...args: string[]) {
  return run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args]);
}

async function* requestsOf(...requests: MessageInitShape<typeof ServerReflectionRequestSchema>[]) {
  yield* requests;
}

describe("gRPC reflection and health on a connect-node server", () => {
  let server: RunningServer;

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.close();
  });

  for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
    test(`buf curl lists services and methods over ${protocol} reflection`, async () => {
      const services = await bufCurl("--reflect-protocol", protocol, "--list-services", server.url);
      assert.deepEqual(services.stdout.trim().split("\n"), [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]);
      const methods = await bufCurl("--reflect-protocol", protocol, "--list-methods", server.url);
      const listed = methods.stdout.trim().split("\n");
      for (const method of ["grpc.health.v1.Health/Check", "grpc.health.v1.Health/List", "grpc.health.v1.Health/Watch"]) {
        assert.ok(listed.includes(method), methods.stdout);
      }
    });
  }

  test("buf curl calls Health/Check by reflection and gets SERVING for the server", async () => {
    const checked = await bufCurl("--data", '{"service":""}', `${server.url}/grpc.health.v1.Health/Check`);
    assert.equal(JSON.parse(checked.stdout).status, "SERVING");
  });

  test("grpc-js, loading health.proto itself, gets SERVING and NOT_FOUND from Check", async () => {
    const definition = protoLoader.loadSync(HEALTH_PROTO, { enums: String });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const client = new loaded.grpc.health.v1.Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) => {
        const deadline = Date.now() + 5000;
        const checkMethod = client["Check"] as unknown as (
          request: { service: string },
          options: grpc.CallOptions,
          callback: (err: grpc.ServiceError | null, response: { status: string }) => void,
        ) => void;
        checkMethod.call(client, { service }, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
      });
    try {
      assert.deepEqual(await check(""), { status: "SERVING" });
      await assert.rejects(check("no.such.Service"), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
    } finally {
      client.close();
    }
  });

  test("Watch sends the current status, then each change", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const abort = new AbortController();
    server.health.setStatus("pkgfarm.test.Watched", "SERVING");
    const seen: ServingStatus[] = [];
    try {
      for await (const response of client.watch({ service: "pkgfarm.test.Watched" }, { signal: abort.signal })) {
        seen.push(response.status);
        if (seen.length === 1) server.health.setStatus("pkgfarm.test.Watched", "NOT_SERVING");
        if (seen.length === 2) abort.abort();
      }
    } catch (e) {
      if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
    }
    assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });

  test("Watch on an unknown service reports SERVICE_UNKNOWN until the service is set", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const abort = new AbortController();
    const seen: ServingStatus[] = [];
    try {
      for await (const response of client.watch({ service: "pkgfarm.test.Late" }, { signal: abort.signal })) {
        seen.push(response.status);
        if (seen.length === 1) server.health.setStatus("pkgfarm.test.Late", "SERVING");
        if (seen.length === 2) abort.abort();
      }
    } catch (e) {
      if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
    }
    assert.deepEqual(seen, [ServingStatus.SERVICE_UNKNOWN, ServingStatus.SERVING]);
  });

  test("Watch reports NOT_SERVING on shutdown and ends when the server closes", async () => {
    const closing = await startServer();
    const client = createClient(Health, createGrpcTransport({ baseUrl: closing.url }));
    const seen: ServingStatus[] = [];
    let closed: Promise<void> | undefined;
    try {
      for await (const response of client.watch({ service: "" })) {
        seen.push(response.status);
        if (seen.length === 1) closed = closing.close();
      }
    } catch (e) {
      // The stream may end cleanly or be cut by the closing session; either tells a prober to look again.
      if (!(e instanceof ConnectError)) throw e;
    }
    await closed;
    assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
  });

  test("List reports every service set", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
    const listed = await client.list({});
    assert.equal(listed.statuses[""]?.status, ServingStatus.SERVING);
  });

  test("one reflection stream answers symbols, files and extensions, and reports what it cannot find", async () => {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: server.url }));
    const responses: ServerReflectionResponse[] = [];
    for await (const response of client.serverReflectionInfo(requestsOf(
      { messageRequest: { case: "fileContainingSymbol", value: "google.protobuf.Api" } },
      { messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.Health.Watch" } },
      { messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.ServingStatus" } },
      { messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.SERVICE_UNKNOWN" } },
      { messageRequest: { case: "fileByFilename", value: "grpc/reflection/v1alpha/reflection.proto" } },
      { messageRequest: { case: "fileContainingSymbol", value: "no.such.Thing" } },
      { messageRequest: { case: "fileContainingExtension", value: { containingType: "google.protobuf.Api", extensionNumber: 1000 } } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "grpc.health.v1.HealthCheckRequest" } },
      { host: "example", messageRequest: { case: "listServices", value: "" } },
    ))) {
      responses.push(response);
    }
    const fileNames = (i: number) => {
      const answer = responses[i]?.messageResponse;
      assert.equal(answer?.case, "fileDescriptorResponse", `answer ${i}`);
      return answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
    };
    // The asked-for file first, then its transitive imports.
    assert.deepEqual(fileNames(0), ["google/protobuf/api.proto", "google/protobuf/source_context.proto", "google/protobuf/type.proto", "google/protobuf/any.proto"]);
    assert.deepEqual(fileNames(1), ["grpc/health/v1/health.proto"]);
    assert.deepEqual(fileNames(2), ["grpc/health/v1/health.proto"]);
    assert.deepEqual(fileNames(3), ["grpc/health/v1/health.proto"]);
    assert.deepEqual(fileNames(4), ["grpc/reflection/v1alpha/reflection.proto"]);
    for (const i of [5, 6]) {
      const answer = responses[i]?.messageResponse;
      assert.equal(answer?.case, "errorResponse", `answer ${i}`);
      assert.equal(answer.value.errorCode, Code.NotFound);
    }
    const numbers = responses[7]?.messageResponse;
    assert.equal(numbers?.case, "allExtensionNumbersResponse");
    assert.equal(numbers.value.baseTypeName, "grpc.health.v1.HealthCheckRequest");
    assert.deepEqual(numbers.value.extensionNumber, []);
    assert.equal(responses[8]?.validHost, "example");
    assert.equal(responses[8]?.originalRequest?.messageRequest.case, "listServices");
    assert.equal(responses.length, 9);
  });

  test("v1alpha reflection answers list_services the same way", async () => {
    const client = createClient(ServerReflectionV1alpha, createGrpcTransport({ baseUrl: server.url }));
    for await (const response of client.serverReflectionInfo((async function* () {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
    })())) {
      assert.equal(response.messageResponse.case, "listServicesResponse");
      assert.ok(response.messageResponse.value.service.some((s) => s.name === "grpc.reflection.v1alpha.ServerReflection"));
    }
  });

  test("Check on a service never set fails with NOT_FOUND; shutdown makes everything NOT_SERVING", async () => {
    const health = createHealth();
    health.setStatus("a.B", "SERVING");
    assert.throws(() => health.impl.check({ $typeName: "grpc.health.v1.HealthCheckRequest", service: "x.Y" }, undefined as never), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound);
    health.shutdown();
    health.setStatus("a.B", "SERVING");
    assert.equal(health.getStatus("a.B"), ServingStatus.NOT_SERVING);
    assert.equal(health.getStatus(""), ServingStatus.NOT_SERVING);
  });
});

describe("reflection serves the protos' comments", () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer(true);
  });
  after(async () => {
    await server.close();
  });

  /** The comment source_code_info holds for a descriptor path, or undefined. */
  const commentAt = (file: ReturnType<typeof fromBinary<typeof FileDescriptorProtoSchema>>, path: number[]) =>
    file.sourceCodeInfo?.location.find((l) => l.path.length === path.length && l.path.every((n, i) => n === path[i]))?.leadingComments;

  test("a method's, a message's and a field's comments come back with the file", async () => {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: server.url }));
    const answers: ServerReflectionResponse[] = [];
    for await (const answer of client.serverReflectionInfo(requestsOf({ messageRequest: { case: "fileContainingSymbol", value: "pkgfarm.v1.DepGraphService.ExplainJob" } }))) answers.push(answer);
    const response = answers[0]?.messageResponse;
    assert.equal(response?.case, "fileDescriptorResponse");
    const file = fromBinary(FileDescriptorProtoSchema, response.value.fileDescriptorProto[0]!);
    assert.equal(file.name, "pkgfarm/v1/depgraph.proto");
    const service = file.service.findIndex((s) => s.name === "DepGraphService");
    const method = file.service[service]!.method.findIndex((m) => m.name === "ExplainJob");
    assert.ok(method >= 0, "ExplainJob is in the descriptor");
    // Paths per descriptor.proto: service = 6, method = 2; message_type = 4, field = 2.
    assert.match(commentAt(file, [6, service, 2, method]) ?? "", /ExplainJob says why a job is not running/);
    const job = file.messageType.findIndex((m) => m.name === "Job");
    const host = file.messageType[job]!.field.findIndex((f) => f.name === "host");
    assert.match(commentAt(file, [4, job]) ?? "", /Job is one package in one build/);
    assert.match(commentAt(file, [4, job, 2, host]) ?? "", /Host name of the build host/);
  });

  test("buf curl, reading the schema by reflection, still calls a method (the documented descriptors link)", async () => {
    const listed = await bufCurl("--list-methods", server.url);
    assert.ok(listed.stdout.split("\n").includes("pkgfarm.v1.DepGraphService/ExplainJob"), listed.stdout);
    // The call itself is unimplemented here; buf curl got far enough to send it.
    await assert.rejects(bufCurl("--data", '{"buildId":"b","pkgname":"p"}', `${server.url}/pkgfarm.v1.DepGraphService/ExplainJob`),
      (e: { stderr?: string }) => /unimplemented/i.test(e.stderr ?? ""));
  });
});
