// Validates AsyncAPI documents with the AsyncAPI project's own parser (@asyncapi/parser):
// `node tools/asyncapi/validate.mjs FILE...`. Prints every diagnostic on stderr; exits 1 when
// a document does not parse or has a diagnostic of error severity, 2 on bad usage.
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'information', 'hint'];
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs FILE...');
  process.exit(2);
}
const parser = new Parser();
let failed = false;
for (const file of files) {
  const { document, diagnostics } = await parser.parse(await readFile(file, 'utf8'));
  for (const d of diagnostics) {
    console.error(`${file}: ${SEVERITY[d.severity] ?? d.severity} ${d.code} at ${d.path.join('/')}: ${d.message}`);
  }
  const errors = diagnostics.filter((d) => d.severity === 0);
  if (!document || errors.length > 0) {
    failed = true;
    console.error(`${file}: invalid (${errors.length} error(s))`);
  } else {
    console.error(`${file}: valid AsyncAPI ${document.version()}`);
  }
}
process.exit(failed ? 1 : 0);
