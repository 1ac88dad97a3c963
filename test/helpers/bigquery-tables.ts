import { schemaProblem, type FieldSchema } from './bigquery-rows.js';

/**
 * Why `tables.insert` refuses a table definition, in BigQuery's words, or undefined: its schema
 * (bigquery-rows.ts `schemaProblem`), its time partitioning (DAY, HOUR, MONTH or YEAR, on a TIMESTAMP, DATE or
 * DATETIME column that is not REPEATED) and its clustering (1 to 4 top-level columns that exist, are not
 * REPEATED and are of a type BigQuery clusters by: not FLOAT, not JSON).
 */
export function tableDefinitionProblem(json: Record<string, any>): string | undefined {
  const fields = json.schema?.fields as FieldSchema[];
  const problem = schemaProblem(fields);
  if (problem) return problem;
  const byName = new Map(fields.map((f) => [f.name.toLowerCase(), { type: String(f.type).toUpperCase(), mode: String(f.mode ?? 'NULLABLE').toUpperCase() }]));
  const p = json.timePartitioning;
  if (p) {
    if (!['DAY', 'HOUR', 'MONTH', 'YEAR'].includes(String(p.type))) return `Invalid time partitioning type ${String(p.type)}.`;
    const column = p.field === undefined ? { type: 'TIMESTAMP', mode: 'NULLABLE' } : byName.get(String(p.field).toLowerCase());
    if (!column) return 'The field specified for time partitioning can only be of type TIMESTAMP, DATE or DATETIME. The type found is: NULL.';
    if (!['TIMESTAMP', 'DATE', 'DATETIME'].includes(column.type)) {
      return `The field specified for time partitioning can only be of type TIMESTAMP, DATE or DATETIME. The type found is: ${column.type}.`;
    }
    if (column.mode === 'REPEATED') return `The field specified for time partitioning cannot be REPEATED: ${String(p.field)}.`;
  }
  const clustering = json.clustering?.fields;
  if (clustering !== undefined) {
    if (!Array.isArray(clustering) || clustering.length === 0 || clustering.length > 4) return 'Too many or too few clustering fields (1 to 4).';
    for (const c of clustering) {
      const column = byName.get(String(c).toLowerCase());
      if (!column) return `The field specified for clustering cannot be found in the schema. Invalid field: ${String(c)}.`;
      if (column.type === 'JSON' || column.type === 'FLOAT') return `Field ${String(c)} is of type ${column.type} which is not supported for clustering.`;
      if (column.mode === 'REPEATED') return `Field ${String(c)} is REPEATED, which is not supported for clustering.`;
    }
  }
  return undefined;
}
