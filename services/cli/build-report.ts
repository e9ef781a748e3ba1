// `pkgfarm build report BUILD [--html FILE]` and `build diff BUILD [OTHER]`:
// the reports the dispatcher wrote when the build ended, fetched remotely.
import { createWriteStream, type WriteStream } from "node:fs";
import { once } from "node:events";
import { ReportFormat } from "../../gen/pkgfarm/v1/dispatcher_pb.js";
import { EXIT_OK, type Verb, type VerbContext } from "./command.js";

/**
 * fetchReport streams the report to the stream `open` gives, opened only
 * once the first piece has come (so a refusal leaves no empty file behind);
 * resolves with the bytes written.
 */
async function fetchReport(context: VerbContext, format: ReportFormat, open: () => Promise<NodeJS.WritableStream>, against = ""): Promise<number> {
  let bytes = 0;
  let out: NodeJS.WritableStream | undefined;
  for await (const piece of context.farm.dispatcher.getReport({ buildId: context.positionals[0]!, format, against }, { signal: context.signal })) {
    out ??= await open();
    bytes += piece.data.length;
    if (!out.write(piece.data)) await once(out, "drain");
  }
  return bytes;
}

export const reportVerb: Verb = {
  name: "build report",
  synopsis: "BUILD [--html FILE] [--json]",
  help: `Prints the report the dispatcher wrote when the build ended (pbulk's report.txt, with
the failing phase, what each failure blocks and the changes since the build before).
  --html FILE   write the HTML report (every failure with its log) to FILE instead
  --json        print report.json, every package's outcome
There is no report while the build runs, nor just after it ends (the dispatcher writes
it at its next publication): NOT_FOUND, exit 1.`,
  options: { html: { type: "string" } },
  positionals: { min: 1, max: 1 },
  needs: { dispatcher: true },
  async run(context) {
    const html = context.values["html"] as string | undefined;
    if (html === undefined) {
      await fetchReport(context, context.json ? ReportFormat.JSON : ReportFormat.TEXT, async () => context.io.out);
      return EXIT_OK;
    }
    let file: WriteStream | undefined;
    try {
      const bytes = await fetchReport(context, ReportFormat.HTML, async () => {
        file = createWriteStream(html);
        await once(file, "open");
        return file;
      });
      if (file !== undefined) {
        const written = file as WriteStream;
        written.end();
        await once(written, "finish");
      }
      context.io.out.write(`wrote ${html} (${bytes} bytes)\n`);
    } finally {
      file?.destroy();
    }
    return EXIT_OK;
  },
};

export const diffVerb: Verb = {
  name: "build diff",
  synopsis: "BUILD [OTHER] [--json]",
  help: `Prints what changed between two ended builds of a platform: packages newly failing,
fixed, and still failing. Without OTHER, against the build BUILD's report was compared
with when it was written (the previous ended build of its platform).
  --json   the diff as JSON (previousBuildId, newlyFailing, fixed, stillFailing)`,
  positionals: { min: 1, max: 2 },
  needs: { dispatcher: true },
  async run(context) {
    await fetchReport(context, context.json ? ReportFormat.DIFF_JSON : ReportFormat.DIFF, async () => context.io.out, context.positionals[1] ?? "");
    return EXIT_OK;
  },
};
