// The Prometheus side of a service: one registry per service and a plain
// HTTP port that serves it. Plain HTTP on its own port, not a route on the
// gRPC port, because Prometheus scrapes HTTP/1.1 and the gRPC port may
// speak TLS with client certificates that a scraper does not hold.
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";

export interface MetricsServer {
  /** The service's metrics; gauges register collect() callbacks here to read live state on scrape. */
  readonly registry: Registry;
  /** Base URL, e.g. http://127.0.0.1:9401; the metrics are at `${url}/metrics`. */
  readonly url: string;
  readonly port: number;
  /** Stops listening and ends open connections (a scraper's keep-alive would hold close() otherwise). */
  close(): Promise<void>;
}

/**
 * startMetricsServer serves GET /metrics in the Prometheus text format,
 * with the process metrics (CPU, memory, event-loop lag, GC, handles) that
 * prom-client collects; everything else is 404. Port 0 picks a free port.
 */
export async function startMetricsServer(options: { readonly host: string; readonly port: number }): Promise<MetricsServer> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: metrics are at /metrics\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("use GET\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(req.method === "HEAD" ? undefined : text),
      (err: unknown) => res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end(`collecting metrics failed: ${err instanceof Error ? err.message : String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = options.host.includes(":") ? `[${options.host}]` : options.host;
  return {
    registry,
    url: `http://${urlHost}:${port}`,
    port,
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
