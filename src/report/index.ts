export * from "./types";
export * from "./sanitize";
export { renderMarkdown, findTemplatesDir, type RenderOptions } from "./markdown";
export { badgeFor, type Badge } from "./badge";
export { buildReport, writeReportFiles, REPORT_FILES, type ReportParts } from "./build";
