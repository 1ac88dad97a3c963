import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { baseEnv, runCli } from './helpers/node-process.js';
import { SparkplugEdge } from './helpers/sparkplug-edge.js';

const ROUTES = `routes:
  - name: pressure
    topic: plant/{site}/{line}/pressure/{sensor}
    decode: json
    fields:
      bar:         { from: payload.bar, type: float }
      count:       { from: payload.count, type: int }
      firmware:    { from: property.fw, type: string, optional: true }
    pubsub:
      topic: pressure-readings
      attributes: [site, sensor, firmware]
      ordering_key: "{site}/{sensor}"
    bigquery:
      table: pressure
  - name: debug
    topic: debug/#
    drop: true
unmatched: dead_letter
`;

function setup(routes = ROUTES) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'routes-cli-'));
  const file = path.join(dir, 'routes.yaml');
  writeFileSync(file, routes);
  const env = baseEnv({ ROUTES_FILE: file, GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'raw-topic', BIGQUERY_DATASET: 'ds', BIGQUERY_TABLE: 'raw', FILE_SINK: 'off', DATA_DIR: dir });
  const payload = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  return { dir, file, env, payload };
}

/** The JSON printed after `label: ` up to its closing brace, parsed. */
function jsonAfter(stdout: string, label: string): Record<string, unknown> {
  const start = stdout.indexOf(`${label}: {`);
  expect(start, `${label} in\n${stdout}`).toBeGreaterThanOrEqual(0);
  const from = stdout.indexOf('{', start);
  const end = stdout.indexOf('\n  }', from);
  return JSON.parse(stdout.slice(from, end + 4)) as Record<string, unknown>;
}

describe('mqtt-ingest routes test', () => {
  it('prints the matching route, the exact BigQuery row and the Pub/Sub message', async () => {
    const { env, payload } = setup();
    const p = payload('p.json', '{"bar": 2.5, "count": 9007199254740993}');
    const r = await runCli(['routes', 'test', 'plant/s1/l2/pressure/p7', '--payload', p, '--property', 'fw=1.2', '--property', 'fw=1.3'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^route pressure: plant\/\{site\}\/\{line\}\/pressure\/\{sensor\}/);
    expect(r.stdout).toContain('pubsub: projects/p/topics/pressure-readings');
    expect(r.stdout).toContain('  data (utf8): "{\\"bar\\": 2.5, \\"count\\": 9007199254740993}"');
    expect(r.stdout).toContain('  ordering key: "s1/p7"');
    const attributes = jsonAfter(r.stdout, 'attributes');
    expect(attributes).toMatchObject({ mqtt_topic: 'plant/s1/l2/pressure/p7', mqtt_qos: '1', mqtt_retain: 'false', site: 's1', sensor: 'p7', firmware: '1.2' });
    expect(attributes).not.toHaveProperty('line');
    expect(r.stdout).toMatch(/^bigquery: ds\.pressure \(insertId [0-9A-Z]{26}\)$/m);
    const row = jsonAfter(r.stdout, 'row');
    expect(row).toEqual({
      message_id: attributes.message_id,
      topic: 'plant/s1/l2/pressure/p7',
      received_at: attributes.received_at,
      site: 's1',
      line: 'l2',
      sensor: 'p7',
      bar: 2.5,
      count: '9007199254740993',
      firmware: '1.2',
    });
    expect(r.stdout).toContain('file: not written');
  });

  it('prints the dead-letter reason, a drop, and what matches nothing', async () => {
    const { env, payload } = setup();
    const bad = await runCli(['routes', 'test', 'plant/s1/l2/pressure/p7', '--payload', payload('bad.json', '{"bar": "abc", "count": 1}')], env);
    expect(bad.code).toBe(0);
    expect(bad.stdout).toContain('dead letter: reason field_invalid: field bar: payload.bar = "abc" is not a number (type float)');
    const notJson = await runCli(['routes', 'test', 'plant/s1/l2/pressure/p7', '--payload', payload('x.txt', 'hello')], env);
    expect(notJson.stdout).toMatch(/dead letter: reason decode_failed: payload is not JSON/);
    const dropped = await runCli(['routes', 'test', 'debug/trace'], env);
    expect(dropped.stdout).toBe('route debug: debug/#\ndropped: acknowledged, counted, never sent\n');
    const none = await runCli(['routes', 'test', 'elsewhere/x'], env);
    expect(none.stdout).toContain('dead letter: reason no_route: topic "elsewhere/x" matches no route of');
  });

  it('exits 1 listing the routes file\'s problems, as check-config does', async () => {
    const { env } = setup('routes:\n  - name: a\n    topic: "#"\n  - name: b\n    topic: x/{y}\n    fields:\n      z: { from: topic.w, type: text }\n');
    const r = await runCli(['routes', 'test', 'x/1'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('route "b", topic: "x/{y}" can never match: the earlier route "a" ("#")');
    expect(r.stderr).toContain('route "b", fields.z.from: "topic.w": the topic captures no {w}');
    expect(r.stderr).toContain('route "b", fields.z.type: "text" is not a field type');
    const check = await runCli(['check-config'], env);
    expect(check.code).toBe(1);
    expect(check.stderr).toContain('route "b", fields.z.type: "text" is not a field type');
  });

  it('exits 1 without a routes file, and for a topic no publisher could send', async () => {
    const { env } = setup();
    const unset = await runCli(['routes', 'test', 'a/b'], { ...env, ROUTES_FILE: '' });
    expect(unset.code).toBe(1);
    expect(unset.stderr).toMatch(/ROUTES_FILE is unset/);
    const wild = await runCli(['routes', 'test', 'a/+'], env);
    expect(wild.code).toBe(1);
    expect(wild.stderr).toMatch(/wildcard/);
  });

  it('decodes a Sparkplug payload file and prints one row per metric; offline, data shows its aliases without names', async () => {
    const { env, dir } = setup('routes:\n  - name: sp\n    topic: spBv1.0/#\n    decode: sparkplug\n    pubsub: { data: fields }\n    bigquery: { table: sp }\n');
    const edge = new SparkplugEdge('G', 'E');
    const birth = path.join(dir, 'nbirth.bin');
    writeFileSync(birth, edge.birth([{ name: 'Counter', datatype: 'UInt64', value: 2n ** 63n + 1n }]).payload);
    const data = path.join(dir, 'ndata.bin');
    writeFileSync(data, edge.data([{ name: 'Counter', value: 5n }]).payload);

    const b = await runCli(['routes', 'test', 'spBv1.0/G/NBIRTH/E', '--payload', birth], env);
    expect(b.code).toBe(0);
    expect(b.stdout.match(/^bigquery: ds\.sp \(insertId \w+:\d\)$/gm)).toHaveLength(3); // bdSeq, Node Control/Rebirth, Counter
    expect(b.stdout).toContain('"metric_name": "Counter"');
    expect(b.stdout).toContain('"int_value": "9223372036854775809"');
    expect(b.stdout).toMatch(/"sparkplug_edge_node": "E"/);

    const d = await runCli(['routes', 'test', 'spBv1.0/G/NDATA/E', '--payload', data], env);
    expect(d.code).toBe(0);
    expect(jsonAfter(d.stdout, '  row')).toMatchObject({ message_type: 'NDATA', metric_name: null, metric_alias: String(edge.aliasOf('Counter')), int_value: '5' });

    const bad = path.join(dir, 'bad.bin');
    writeFileSync(bad, 'not protobuf');
    const r = await runCli(['routes', 'test', 'spBv1.0/G/NDATA/E', '--payload', bad], env);
    expect(r.stdout).toMatch(/dead letter: reason decode_failed: not a Sparkplug B NDATA payload/);
  });
});
