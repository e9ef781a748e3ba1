// GetReport: the reports the build publisher wrote for an ended build
// (<reports>/<build>/report.txt, .html, .json), and the diff between two
// builds made from their report.json, streamed in pieces of 1 MiB so a
// whole-tree HTML report (several MB) passes the 4 MiB clients take by
// default.
import { open, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { ReportFormat, type DispatcherService } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { diffReports, InvalidReport, parseReportJson, type ReportDiff, type ReportJson } from "./reports/index.js";
import { renderDiffLines } from "./reports/render-text.js";
import { cutOffStalled, DEFAULT_STALL_MS } from "../shared/stream-guard.js";
import { quote } from "../shared/quote.js";

type Impl = ServiceImpl<typeof DispatcherService>;

export interface ReportHandlerOptions {
  /** `<data-dir>/reports`; undefined when this dispatcher writes no reports. */
  readonly reportsRoot: string | undefined;
  readonly stallMs?: number;
  readonly logger: Logger;
}

const CHUNK_BYTES = 1024 * 1024;
/** A build id as a directory name: what depgraph makes, and nothing that climbs out. */
const BUILD_ID_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

const FILES: Partial<Record<ReportFormat, { file: string; type: string }>> = {
  [ReportFormat.UNSPECIFIED]: { file: "report.txt", type: "text/plain; charset=utf-8" },
  [ReportFormat.TEXT]: { file: "report.txt", type: "text/plain; charset=utf-8" },
  [ReportFormat.HTML]: { file: "report.html", type: "text/html; charset=utf-8" },
  [ReportFormat.JSON]: { file: "report.json", type: "application/json" },
};

export function createReportHandler(options: ReportHandlerOptions): Impl["getReport"] {
  return async function* (request, ctx) {
    const root = options.reportsRoot;
    if (root === undefined) throw new ConnectError("this dispatcher writes no reports (its build publisher is off)", Code.NotFound);
    const buildDir = (id: string, field: string) => {
      if (!BUILD_ID_SHAPE.test(id) || id.includes("..")) throw new ConnectError(`${field} ${quote(id)} is not a build id`, Code.InvalidArgument);
      return path.join(root, id);
    };
    const dir = buildDir(request.buildId, "build_id");
    const file = FILES[request.format];
    if (file !== undefined) {
      yield* cutOffStalled(streamFile(path.join(dir, file.file), file.file, file.type, request.buildId, ctx.signal), ctx, {
        stallMs: options.stallMs ?? DEFAULT_STALL_MS,
        onCutOff: () => options.logger.warn({ buildId: request.buildId }, "GetReport reader took nothing for too long; stream cut off"),
      });
      return;
    }
    if (request.format !== ReportFormat.DIFF && request.format !== ReportFormat.DIFF_JSON) {
      throw new ConnectError(`unknown report format ${request.format}: say REPORT_FORMAT_TEXT, _HTML, _JSON, _DIFF or _DIFF_JSON`, Code.InvalidArgument);
    }
    const report = await readReportJson(path.join(dir, "report.json"), request.buildId);
    let diff: ReportDiff;
    if (request.against === "") {
      if (report.diff === null) {
        throw new ConnectError(`build ${quote(request.buildId)} had no earlier ended build of platform ${report.platform} to compare with; name one with against`, Code.NotFound);
      }
      diff = report.diff;
    } else {
      const againstFile = path.join(buildDir(request.against, "against"), "report.json");
      const text = await readReport(againstFile, request.against);
      let previous;
      try {
        previous = parseReportJson(text, `the report of build ${request.against}`);
      } catch (e) {
        if (e instanceof InvalidReport) throw new ConnectError(e.message, Code.FailedPrecondition);
        throw e;
      }
      diff = diffReports(previous, report.packages);
    }
    const json = request.format === ReportFormat.DIFF_JSON;
    const body = Buffer.from(json ? `${JSON.stringify(diff, null, 2)}\n` : renderDiffText(request.buildId, diff));
    yield { fileName: json ? "diff.json" : "diff.txt", contentType: json ? "application/json" : "text/plain; charset=utf-8", sizeBytes: BigInt(body.length), offset: 0n, data: body.subarray(0, CHUNK_BYTES) };
    for (let at = CHUNK_BYTES; at < body.length; at += CHUNK_BYTES) yield { offset: BigInt(at), data: body.subarray(at, at + CHUNK_BYTES) };
  };
}

async function* streamFile(file: string, name: string, type: string, buildId: string, signal: AbortSignal) {
  const handle = await open(file, "r").catch((e: unknown) => {
    throw notFoundOr(e, buildId);
  });
  try {
    const size = (await handle.stat()).size;
    let offset = 0;
    // The first message says what the file is, even when it is empty.
    let first = true;
    while (first || offset < size) {
      if (signal.aborted) return;
      const buffer = Buffer.alloc(Math.min(CHUNK_BYTES, size - offset));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      const data = buffer.subarray(0, bytesRead);
      yield first ? { fileName: name, contentType: type, sizeBytes: BigInt(size), offset: BigInt(offset), data } : { offset: BigInt(offset), data };
      first = false;
      offset += bytesRead;
      if (bytesRead === 0) break;
    }
  } finally {
    await handle.close();
  }
}

async function readReport(file: string, buildId: string): Promise<string> {
  return readFile(file, "utf8").catch((e: unknown) => {
    throw notFoundOr(e, buildId);
  });
}

async function readReportJson(file: string, buildId: string): Promise<ReportJson> {
  const text = await readReport(file, buildId);
  try {
    // Checked as the diff needs it; the rest is the publisher's own output.
    parseReportJson(text, `the report of build ${buildId}`);
    return JSON.parse(text) as ReportJson;
  } catch (e) {
    if (e instanceof InvalidReport) throw new ConnectError(e.message, Code.FailedPrecondition);
    throw e;
  }
}

function notFoundOr(e: unknown, buildId: string): ConnectError {
  if ((e as NodeJS.ErrnoException).code === "ENOENT") {
    return new ConnectError(`no report for build ${quote(buildId)} yet: reports are written once a build has ended (the dispatcher looks every --publish-interval-seconds), and builds of other dispatchers are not here`, Code.NotFound);
  }
  return new ConnectError(`reading the report of build ${quote(buildId)} failed: ${(e as Error).message}`, Code.Internal);
}

/** renderDiffText is the diff as report.txt words it, with the still-failing list too. */
export function renderDiffText(buildId: string, diff: ReportDiff): string {
  return renderDiffLines(`Changes in build ${buildId} since build ${diff.previousBuildId}`, diff, true).join("\n");
}
