import { schemaProblem, type FieldSchema } from './bigquery-rows.js';

/**
 * The schema a `tables.patch` gives a table, refused as BigQuery refuses it (400 `invalid`, "Provided Schema
 * does not match Table …"): an existing table may only gain NULLABLE (or REPEATED) columns and relax REQUIRED
 * to NULLABLE; removing or retyping a column, tightening a mode or adding a REQUIRED column is refused.
 * Throws the message of the refusal, for the server to answer in BigQuery's error shape.
 */
export function patchedFields(name: string, current: readonly FieldSchema[], fields: unknown): FieldSchema[] {
  const problem = schemaProblem(fields);
  if (problem) throw new PatchRefused(problem);
  const next = fields as FieldSchema[];
  const refuse = (why: string) => new PatchRefused(`Provided Schema does not match Table ${name}. ${why}`);
  const byName = new Map(next.map((f) => [f.name.toLowerCase(), f]));
  const old = new Set<string>();
  for (const f of current) {
    old.add(f.name.toLowerCase());
    const n = byName.get(f.name.toLowerCase());
    if (!n) throw refuse(`Field ${f.name} is missing in new schema`);
    const [was, now] = [String(f.type).toUpperCase(), String(n.type).toUpperCase()];
    if (was !== now) throw refuse(`Field ${f.name} has changed type from ${was} to ${now}`);
    const [wasMode, nowMode] = [String(f.mode ?? 'NULLABLE').toUpperCase(), String(n.mode ?? 'NULLABLE').toUpperCase()];
    if (wasMode !== nowMode && !(wasMode === 'REQUIRED' && nowMode === 'NULLABLE')) throw refuse(`Field ${f.name} has changed mode from ${wasMode} to ${nowMode}`);
  }
  for (const f of next) {
    if (!old.has(f.name.toLowerCase()) && String(f.mode ?? 'NULLABLE').toUpperCase() === 'REQUIRED') {
      throw refuse(`Cannot add required fields to an existing schema. (field: ${f.name})`);
    }
  }
  return next;
}

export class PatchRefused extends Error {}
