/**
 * The schema table in docs/bigquery.md is generated from schema.ts, between two markers, so the prose
 * around it stays hand-written while the table cannot drift (a unit test compares the two).
 * `mqtt-ingest docs bigquery-schema` prints the table; with `--write FILE` it replaces it in the file.
 */
import { renderSchemaTable } from './schema.js';

export const BEGIN_MARKER = '<!-- BEGIN generated from src/sinks/bigquery/schema.ts: `mqtt-ingest docs bigquery-schema --write docs/bigquery.md` -->';
export const END_MARKER = '<!-- END generated -->';

/** The generated part of a document, or undefined when its markers are missing. */
export function extractGenerated(doc: string): string | undefined {
  const start = doc.indexOf(BEGIN_MARKER);
  const end = doc.indexOf(END_MARKER);
  if (start < 0 || end < start) return undefined;
  return doc.slice(start + BEGIN_MARKER.length, end).trim();
}

/** The document with its generated part replaced by the current schema table. Throws when the markers are missing. */
export function replaceGenerated(doc: string): string {
  const start = doc.indexOf(BEGIN_MARKER);
  const end = doc.indexOf(END_MARKER);
  if (start < 0 || end < start) throw new Error(`the document has no ${BEGIN_MARKER} … ${END_MARKER} section`);
  return `${doc.slice(0, start + BEGIN_MARKER.length)}\n\n${renderSchemaTable()}\n\n${doc.slice(end)}`;
}
