// `pkgfarm log BUILD PKG [--phase P] [-f]`: a job's build log as plain text,
// as the dispatcher stored it; -f follows it while the job runs (tail -f).
import { once } from "node:events";
import { EXIT_OK, type Verb } from "./command.js";

export const logVerb: Verb = {
  name: "log",
  synopsis: "BUILD PKGNAME [--phase P] [-f]",
  help: `Prints a job's build log (the dispatcher's copy; ReadLog), as the build wrote it.
  --phase P     one phase's log only (pkgsrc executor: pre-clean, depends, checksum,
                configure, build, install, package, clean, deinstall)
  -f, --follow  keep printing as the job runs, until its log is complete`,
  options: { phase: { type: "string", default: "" }, follow: { type: "boolean", short: "f", default: false } },
  positionals: { min: 2, max: 2 },
  needs: { dispatcher: true },
  async run({ positionals, values, farm, io, signal }) {
    const [buildId, pkgname] = positionals as [string, string];
    const pieces = farm.dispatcher.readLog({ buildId, pkgname, phase: values["phase"] as string, follow: values["follow"] === true }, { signal });
    try {
      for await (const piece of pieces) {
        if (!io.out.write(piece.data)) await once(io.out, "drain");
      }
    } catch (e) {
      // Ctrl-C while following is how a follow is meant to end.
      if (signal.aborted) return EXIT_OK;
      throw e;
    }
    return EXIT_OK;
  },
};
