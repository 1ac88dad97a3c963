/**
 * Renders docs/errors.md from the catalogue in error-catalogue.ts, so the reference operators read cannot drift from the
 * codes the node logs: a unit test fails when the committed file differs (regenerate with
 * `node bin/mqtt-ingest.js docs errors > docs/errors.md` after `npm run build`).
 */
import { ERROR_SECTIONS } from './error-catalogue.js';

/** A table cell: one line, `|` escaped. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

export function renderErrorDocs(): string {
  const sections = ERROR_SECTIONS.map(({ title, codes }) => {
    const rows = Object.entries(codes).map(([code, e]) => `| \`${code}\` | ${cell(e.meaning)} | ${cell(e.action)} |`);
    return `## ${title}\n\n| code | what it means | what to do |\n|---|---|---|\n${rows.join('\n')}\n`;
  });
  return `# Error codes

<!-- Generated from src/core/error-catalogue.ts by \`mqtt-ingest docs errors\`; do not edit by hand. -->

Every failure the node and its commands report, and every important event in its log, has a code. Codes never
change their name or meaning, so alerts and log queries can rely on them; the English words of a message stay
as they are too, but the code is what to match.

- In the JSON log the code is the line's \`code\` field, beside \`message\`:
  \`{"severity":"ERROR", …, "code":"SPOOL_FULL", …, "message":"spool is full (…)"}\`.
- A start that fails logs \`start failed\` with \`code: START_FAILED\` and the failure's own code in \`err.code\`
  (a code of this page, or SQLite's own for a spool file it cannot read, such as \`SQLITE_CORRUPT\`).
- A command that fails prints its message on stderr and exits non-zero; the meaning below names the command.
- Codes of the services the node talks to (gRPC and HTTP statuses, BigQuery's reasons) appear in the \`detail\` or
  \`reason\` of the line, not as its code.

${sections.join('\n')}`;
}
