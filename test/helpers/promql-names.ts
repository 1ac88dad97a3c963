import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** The node's metric names an expression reads (every identifier starting `mqtt_ingest_`), sorted. */
export function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\bmqtt_ingest_[a-zA-Z0-9_]*/g) ?? [])].sort();
}

/**
 * The metric names the node's source defines (`name: 'mqtt_ingest_…'` in src/, tests excluded), plus the
 * default process metrics prom-client adds under the `mqtt_ingest_process_` prefix, which no file names.
 */
export function definedMetricNames(srcDir: string): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const p = path.join(dir, entry);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith('.test.ts')) {
        for (const m of readFileSync(p, 'utf8').matchAll(/name: '(mqtt_ingest_[a-z0-9_]+)'/g)) names.add(m[1]!);
      }
    }
  };
  walk(srcDir);
  return names;
}

/**
 * The metric families of a Prometheus text exposition: each sample's name with a histogram's or summary's
 * `_bucket`, `_sum` and `_count` kept, and the family names from `# TYPE` lines.
 */
export function exposedMetricNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type) names.add(type[1]!);
    else if (line && !line.startsWith('#')) names.add(line.split(/[{ ]/)[0]!);
  }
  return names;
}
