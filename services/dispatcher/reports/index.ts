// A finished build's reports: report.txt, report.html, report.json and the diff with the previous build.
export { buildReport, diffReports, isBuilt, isFailing, REPORT_STATES } from "./model.js";
export type {
  DiffEntry,
  FinishedBuild,
  PreviousReport,
  Report,
  ReportDiff,
  ReportLog,
  ReportPackage,
  ReportPackageInput,
  ReportState,
  ReportTotals,
} from "./model.js";
export { renderText } from "./render-text.js";
export { escapeHtml, renderHtml, safeHref } from "./render-html.js";
export { InvalidReport, parseReportJson, renderJson, REPORT_FORMAT, toReportJson } from "./report-json.js";
export type { ReportJson, ReportJsonPackage } from "./report-json.js";
export { findPreviousReport, writeReports } from "./write.js";
export type { FindPreviousReportOptions, FoundPreviousReport, WriteReportsOptions, WrittenReports } from "./write.js";
