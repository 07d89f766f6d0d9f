// Validates an AsyncAPI document with the official parser (@asyncapi/parser), resolving the
// relative $refs to the JSON Schema files next to it. Exits 1 on any error-level diagnostic.
import { Parser, fromFile } from '@asyncapi/parser';
import path from 'node:path';

const file = path.resolve(process.argv[2] ?? 'schemas/asyncapi.yaml');
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
let errors = 0;
for (const d of diagnostics) {
  const level = ['error', 'warning', 'info', 'hint'][d.severity] ?? d.severity;
  console.log(`${level}: ${d.code}: ${d.message} at ${JSON.stringify(d.path)}`);
  if (d.severity === 0) errors++;
}
if (!document || errors > 0) {
  console.error(`${file}: INVALID (${errors} error(s))`);
  process.exit(1);
}
const channels = document.channels().all().map((c) => c.address() ?? '(inbox)');
console.log(`${file}: OK — ${channels.length} channels, ${document.operations().all().length} operations`);
