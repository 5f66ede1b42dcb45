// Usage: node validate.mjs FILE
// Parses an AsyncAPI document with @asyncapi/parser; prints every diagnostic of severity error or
// warning as "severity path: message", then "ok N channels, M operations" or exits 1.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const file = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"), { source: file });
const severities = ["error", "warning", "info", "hint"];
let errors = 0;
for (const d of diagnostics) {
  const severity = severities[d.severity] ?? String(d.severity);
  if (d.severity <= 1) {
    console.log(`${severity} ${d.path.join(".")}: ${d.message}`);
  }
  if (d.severity === 0) errors += 1;
}
if (!document || errors > 0) {
  console.log(`invalid: ${errors} errors`);
  process.exit(1);
}
console.log(`ok ${document.channels().length} channels, ${document.operations().length} operations`);
