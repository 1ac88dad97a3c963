import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeProblem, parseRoutes, readRoutesFile, type RoutesContext } from './routes-file.js';

const ALL_SINKS: RoutesContext = { pubsubTopic: 'projects/p/topics/raw', gcpProjectId: 'p', bigqueryDataset: 'ds', fileSink: false };

function problems(text: string, ctx: RoutesContext = ALL_SINKS): string[] {
  const r = parseRoutes(text, 'routes.yaml', ctx);
  return r.problems.map(describeProblem);
}

function table(text: string, ctx: RoutesContext = ALL_SINKS) {
  const r = parseRoutes(text, 'routes.yaml', ctx);
  if (!r.table) throw new Error(r.problems.map(describeProblem).join('\n'));
  return r.table;
}

const PLANT = `
routes:
  - name: pressure
    topic: plant/{site}/{line}/pressure/{sensor}
    decode: json
    fields:
      bar:         { from: payload.bar, type: float }
      status:      { from: payload.status, type: string, optional: true }
      measured_at: { from: payload.ts, type: timestamp }
      firmware:    { from: property.fw, type: string, optional: true }
    pubsub:
      topic: pressure-readings
      attributes: [site, line, sensor]
      ordering_key: "{site}/{sensor}"
      data: payload
    bigquery:
      table: pressure
    file: false
  - name: debug
    topic: debug/#
    drop: true
unmatched: raw
`;

describe('the routes file', () => {
  it('reads the example of the contract', () => {
    const t = table(PLANT);
    expect(t.unmatched).toBe('raw');
    const [pressure, debug] = t.routes;
    expect(pressure).toMatchObject({
      name: 'pressure',
      decode: 'json',
      pubsub: { topic: 'projects/p/topics/pressure-readings', attributes: ['site', 'line', 'sensor'], data: 'payload' },
      bigquery: { dataset: 'ds', table: 'pressure' },
      file: false,
      drop: false,
    });
    expect(pressure!.topic.variables).toEqual(['site', 'line', 'sensor']);
    expect(pressure!.fields.map((f) => [f.name, f.type, f.optional, f.from.kind])).toEqual([
      ['bar', 'float', false, 'payload'],
      ['status', 'string', true, 'payload'],
      ['measured_at', 'timestamp', false, 'payload'],
      ['firmware', 'string', true, 'property'],
    ]);
    expect(debug).toMatchObject({ name: 'debug', drop: true });
  });

  it('defaults: the Pub/Sub topic is PUBSUB_TOPIC, the table is named after the route, the file sink follows FILE_SINK', () => {
    const t = table('routes:\n  - name: flow\n    topic: plant/{site}/flow\n', { ...ALL_SINKS, fileSink: true });
    expect(t.routes[0]).toMatchObject({ pubsub: { topic: 'projects/p/topics/raw', data: 'payload' }, bigquery: { table: 'flow' }, file: true, decode: 'raw' });
    const off = table('routes:\n  - name: flow\n    topic: plant/{site}/flow\n    pubsub: false\n    bigquery: false\n    file: true\n', { ...ALL_SINKS, fileSink: true });
    expect(off.routes[0]).toMatchObject({ pubsub: undefined, bigquery: undefined, file: true });
  });

  it('lists all five mistakes of a file at once, each with its line, route and key', () => {
    const found = problems(`routes:
  - name: pressure
    topic: plant/{site}/pressure
    decode: json
    fields:
      bar: { from: payload.bar, type: flaot }
    pubsub:
      ordering_key: "{site}/{sensor}"
  - name: pressure
    topic: plant/{x}/flow
    colour: red
  - name: everything
    topic: "#"
    bigquery: { table: "a/b" }
`);
    expect(found).toEqual([
      expect.stringMatching(/^line 6, route "pressure", fields\.bar\.type: "flaot" is not a field type/),
      expect.stringMatching(/^line 8, route "pressure", pubsub\.ordering_key: uses \{sensor\}, which the topic does not capture \(it captures \{site\}\)/),
      expect.stringMatching(/^line 9, route "pressure", name: is also the name of routes\[0\]/),
      expect.stringMatching(/^line 11, route "pressure", colour: is not a route key/),
      expect.stringMatching(/^line 14, route "everything", bigquery\.table: "a\/b" is not a table id BigQuery accepts/),
    ]);
  });

  it('refuses two routes writing one table with other columns, and a route writing the raw table while unmatched go raw', () => {
    const two = (fieldsB: string) =>
      `routes:\n  - name: a\n    topic: a/{site}\n    bigquery: { table: shared }\n  - name: b\n    topic: b/{site}\n    decode: json\n${fieldsB}    bigquery: { table: shared }\n`;
    expect(problems(two(''))).toEqual([]);
    expect(problems(two('    fields:\n      v: { from: payload.v, type: int }\n'))).toEqual([
      expect.stringMatching(/^line 5, route "b", bigquery.table: "shared" is also the table of route "a", whose rows have other columns/),
    ]);
    const raw = (unmatched: string) => `routes:\n  - name: raw\n    topic: a/{x}\nunmatched: ${unmatched}\n`;
    const ctx = { ...ALL_SINKS, bigqueryRawTable: 'raw' };
    expect(problems(raw('raw'), ctx)).toEqual([expect.stringContaining('route "raw", bigquery.table: "raw" is BIGQUERY_TABLE, the raw table that unmatched: raw writes to')]);
    expect(problems(raw('drop'), ctx)).toEqual([]);
  });

  it('refuses a route an earlier one hides', () => {
    expect(problems('routes:\n  - name: all\n    topic: "#"\n  - name: late\n    topic: a/{x}/b\n')).toEqual([
      expect.stringMatching(/^line 4, route "late", topic: "a\/\{x\}\/b" can never match: the earlier route "all" \("#"\)/),
    ]);
    expect(problems('routes:\n  - name: any\n    topic: a/+/b\n  - name: named\n    topic: a/{x}/b\n')).toHaveLength(1);
    expect(problems('routes:\n  - name: one\n    topic: a/b\n  - name: any\n    topic: a/{x}\n')).toEqual([]);
  });

  it('refuses bad names, types, sources, topics and sinks', () => {
    const found = problems(`routes:
  - name: Bad-Name
    topic: a/{x}
    fields:
      f1: { from: payload.v, type: int }
      f2: { from: topic.y, type: string }
      f3: { from: header.z, type: string }
      x: { from: topic.x, type: string }
      topic: { from: property.p, type: string }
      f4: { from: property.p, type: int, optional: maybe, extra: 1 }
      mqtt_qos: { from: property.q, type: string }
    pubsub: { topic: goog-topic, attributes: [nope, mqtt_qos], data: all }
  - name: drops
    topic: d/#
    drop: true
    pubsub: { topic: t-topic }
  - name: spark
    topic: s/#
    decode: sparkplug
    fields:
      v: { from: topic.x, type: string }
  - name: bad_topic
    topic: a/{x}y
`);
    const expected = [
      /routes\[0\], name: must be lower-case letters/,
      /fields\.f1\.from: "payload\.v" reads the payload as JSON, which needs decode: json/,
      /fields\.f2\.from: "topic\.y": the topic captures no \{y\} \(it captures \{x\}\)/,
      /fields\.f3\.from: "header\.z" must be payload\.<path>, topic\.<variable> or property\.<name>/,
      /fields\.x: has the name of the topic variable \{x\}/,
      /fields\.topic: would take the column topic every row has/,
      /fields\.f4\.optional: must be true or false, got "maybe"/,
      /fields\.f4\.extra: is not a field key/,
      /pubsub\.topic: "goog-topic" is not a topic Pub\/Sub accepts/,
      /pubsub\.attributes: "nope" is neither a topic variable nor a field/,
      /pubsub\.attributes: "mqtt_qos" is an attribute the node sets itself/,
      /pubsub\.data: must be payload or fields, got "all"/,
      /route "drops", pubsub: is set on a route with drop: true/,
      /route "spark", fields: is set on a Sparkplug route, whose table has one row per metric/,
      /route "bad_topic", topic: "a\/\{x\}y" has "\{x\}y": a variable is a whole level/,
    ];
    for (const re of expected) expect(found.some((p) => re.test(p)), `${re} in\n${found.join('\n')}`).toBe(true);
    expect(found).toHaveLength(expected.length);
  });

  it('refuses a sink the configuration leaves off, and a route that sends nowhere', () => {
    const none: RoutesContext = { pubsubTopic: null, gcpProjectId: null, bigqueryDataset: null, fileSink: false };
    expect(problems('routes:\n  - name: a\n    topic: a\n    pubsub: { topic: some-topic }\n    bigquery: { table: t }\n    file: true\n', none)).toEqual([
      expect.stringMatching(/pubsub\.topic: "some-topic" is a topic id without a project, and GCP_PROJECT_ID is unset/),
      expect.stringMatching(/pubsub\.topic: is set but the Pub\/Sub sink is off/),
      expect.stringMatching(/bigquery: is on but the BigQuery sink is off/),
      expect.stringMatching(/file: is true but the file sink is off/),
    ]);
    expect(problems('routes:\n  - name: a\n    topic: a\n', none)).toEqual([expect.stringMatching(/sends to no sink.*drop: true/)]);
  });

  it('refuses YAML errors, an unknown top-level key, a bad unmatched and an empty routes list', () => {
    expect(problems('routes: [\n')[0]).toMatch(/^line \d+: column \d+:/);
    expect(problems('routes: []\nunmatched: nowhere\nextra: 1\n')).toEqual([
      expect.stringMatching(/^line 1, routes: is empty/),
      expect.stringMatching(/^line 2, unmatched: must be raw .*dead_letter or drop, got "nowhere"/),
      expect.stringMatching(/^line 3, extra: is not a routes file key/),
    ]);
    expect(problems('- a\n')).toEqual([expect.stringMatching(/must be a mapping with a routes list/)]);
  });

  it('names a file it cannot read', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'routes-file-'));
    expect(readRoutesFile(path.join(dir, 'missing.yaml'), ALL_SINKS).problems[0]?.message).toMatch(/cannot read the routes file \(no such file\)/);
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, PLANT);
    expect(readRoutesFile(file, ALL_SINKS).table?.routes).toHaveLength(2);
  });
});
