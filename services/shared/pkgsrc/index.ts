// pkgsrc formats: binary packages, pkg_summary, pbulk's up-to-date check.
export {
  InvalidBinaryPackage,
  parseBinaryPackage,
  parseBuildInfo,
  parseBuildVersion,
  parsePackingList,
  readBinaryPackage,
} from "./binary-package.js";
export type { BinaryPackageMetadata, BuildVersionEntry, PackingList, PackingListEntry, ReadBinaryPackageOptions } from "./binary-package.js";
export { formatSummaryEntry, InvalidSummary, parseSummary, SUMMARY_BUILD_INFO_VARS } from "./pkg-summary.js";
export type { SummaryEntry, SummaryFile } from "./pkg-summary.js";
export { decideUpToDate, describeRebuild, netbsdId, packageBase } from "./up-to-date.js";
export type { RebuildCause, UpToDateDecision, UpToDateInput } from "./up-to-date.js";
export { createTreeFileReader } from "./tree-files.js";
