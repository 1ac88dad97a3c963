import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { loadRoutes } from './config.js';
import { describeRoutes } from './describe.js';

function routesFile(text: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'routes-config-')), 'routes.yaml');
  writeFileSync(file, text);
  return file;
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ env, hostname: 'h' });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

const SINKS = { GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'raw', BIGQUERY_DATASET: 'ds', BIGQUERY_TABLE: 'raw_table', FILE_SINK: 'off' };

describe('ROUTES_FILE', () => {
  it('lists the routes file\'s problems with the rest of the configuration', () => {
    const file = routesFile('routes:\n  - name: a\n    topic: a/{x}\n    fields:\n      f: { from: topic.x, type: strin }\n');
    const problems = problemsOf({ ...SINKS, ROUTES_FILE: file, MQTT_PORT: '70000' });
    expect(problems).toEqual([
      expect.stringMatching(/^MQTT_PORT:/),
      `ROUTES_FILE: ${JSON.stringify(file)} line 5, route "a", fields.f.type: "strin" is not a field type; use string, int, float, bool, timestamp or json`,
    ]);
  });

  it('names a file that cannot be read', () => {
    expect(problemsOf({ ...SINKS, ROUTES_FILE: '/nonexistent/routes.yaml' })).toEqual([
      'ROUTES_FILE: "/nonexistent/routes.yaml" cannot read the routes file (no such file)',
    ]);
  });

  it('checks routes against the sinks the configuration turns on', () => {
    const file = routesFile('routes:\n  - name: a\n    topic: a\n    bigquery: { table: t }\n');
    expect(problemsOf({ ROUTES_FILE: file, FILE_SINK: 'off', PUBSUB_TOPIC: 'projects/p/topics/readings' })).toEqual([
      expect.stringMatching(/route "a", bigquery: is on but the BigQuery sink is off/),
    ]);
  });

  it('loads the routes with the sinks\' names filled in, and describes them', () => {
    const file = routesFile('routes:\n  - name: flow\n    topic: plant/{site}/flow\n    pubsub: { ordering_key: "{site}" }\n  - name: debug\n    topic: debug/#\n    drop: true\nunmatched: dead_letter\n');
    const { config } = loadConfig({ env: { ...SINKS, ROUTES_FILE: file }, hostname: 'h' });
    const table = loadRoutes(config)!;
    expect(table.routes[0]).toMatchObject({ pubsub: { topic: 'projects/p/topics/raw' }, bigquery: { dataset: 'ds', table: 'flow' }, file: false });
    expect(describeRoutes(table)).toEqual([
      `routes from ${JSON.stringify(file)}, tried in order:`,
      '  1. flow: plant/{site}/flow (decode raw) → Pub/Sub projects/p/topics/raw (ordering key {site}), BigQuery ds.flow',
      '  2. debug: debug/# → dropped',
      '  unmatched: dead_letter (dead-lettered (no_route))',
    ]);
  });

  it('unset, there are no routes', () => {
    const { config } = loadConfig({ env: SINKS, hostname: 'h' });
    expect(loadRoutes(config)).toBeUndefined();
  });
});
