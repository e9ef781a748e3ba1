import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";

/**
 * grpcJsHealthClient checks grpc.health.v1 with @grpc/grpc-js, as the
 * kubelet's gRPC probe and grpc_health_probe would: an independent client,
 * on its own connection.
 */
export function grpcJsHealthClient(address: string): { check(service?: string, deadlineMs?: number): Promise<HealthCheckResponse>; close(): void } {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return {
    check(service = "", deadlineMs = 10_000) {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          (m: ReturnType<typeof create<typeof HealthCheckRequestSchema>>) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
          (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
          create(HealthCheckRequestSchema, { service }),
          { deadline: Date.now() + deadlineMs },
          (err, value) => (err ? reject(err) : resolve(value!)),
        );
      });
    },
    close: () => client.close(),
  };
}
