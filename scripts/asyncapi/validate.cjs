// Validates AsyncAPI documents with the AsyncAPI project's own parser
// (@asyncapi/parser, installed by `scripts/tools asyncapi-parser`; its path
// in ASYNCAPI_PARSER). Prints every diagnostic of severity error or warning
// and exits 1 when a document has an error or does not parse.
//
// Usage: ASYNCAPI_PARSER=... node scripts/asyncapi/validate.cjs FILE...
'use strict';

const fs = require('fs');
const { Parser } = require(process.env.ASYNCAPI_PARSER || '@asyncapi/parser');

// The parser's DiagnosticSeverity: 0 error, 1 warning, 2 information, 3 hint.
const NAMES = ['error', 'warning', 'information', 'hint'];

async function main(files) {
  if (files.length === 0) {
    console.error('usage: validate.cjs FILE...');
    return 2;
  }
  const parser = new Parser();
  let failed = false;
  for (const file of files) {
    const { document, diagnostics } = await parser.parse(fs.readFileSync(file, 'utf8'), {
      source: file,
    });
    const shown = diagnostics.filter((d) => d.severity <= 1);
    const errors = diagnostics.filter((d) => d.severity === 0);
    for (const d of shown) {
      console.log(`${file}: ${NAMES[d.severity]} ${d.code} at /${(d.path || []).join('/')}: ${d.message}`);
    }
    if (document === undefined || errors.length > 0) {
      failed = true;
      console.log(`${file}: REJECTED (${errors.length} error(s))`);
    } else {
      const channels = document.channels().length;
      const operations = document.operations().length;
      const messages = document.messages().length;
      console.log(
        `${file}: valid AsyncAPI ${document.version()}: ${channels} channels, ` +
          `${operations} operations, ${messages} messages, ${shown.length} warning(s)`,
      );
    }
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
