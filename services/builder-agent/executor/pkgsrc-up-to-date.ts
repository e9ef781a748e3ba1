// checkPkgsrcUpToDate is pbulk's pkg-up-to-date for the withUpToDate
// wrapper: the stored package's +BUILD_VERSION ids against the tree's files
// and its recorded dependencies against the ones the scan resolves now
// (services/shared/pkgsrc/up-to-date.ts decides; this reads the package and
// the tree). pbulk's age check is left out: a dependency rebuilt in the same
// build already comes to the job as its rebuild_reason.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readBinaryPackage } from "../../shared/pkgsrc/binary-package.js";
import { decideUpToDate } from "../../shared/pkgsrc/up-to-date.js";
import type { CheckUpToDate } from "./with-up-to-date.js";

export function pkgsrcUpToDate(treeDir: string): CheckUpToDate {
  return async (assignment, packageFile) => {
    const binaryPackage = await readBinaryPackage(packageFile);
    const decision = decideUpToDate({
      binaryPackage,
      readTreeFile: (relativePath) => {
        try {
          return readFileSync(join(treeDir, relativePath), "utf8");
        } catch {
          return undefined;
        }
      },
      dependencies: assignment.dependencies,
    });
    return { upToDate: decision.upToDate, reason: decision.reason };
  };
}
