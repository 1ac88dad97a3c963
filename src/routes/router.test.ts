import { describe, expect, it } from 'vitest';
import { Router } from './router.js';
import { describeProblem, parseRoutes } from './routes-file.js';
import type { RoutableMessage } from './types.js';

const CTX = { pubsubTopic: 'projects/p/topics/raw', gcpProjectId: 'p', bigqueryDataset: 'ds', fileSink: true };

function router(text: string): Router {
  const r = parseRoutes(text, 'routes.yaml', CTX);
  if (!r.table) throw new Error(r.problems.map(describeProblem).join('\n'));
  return new Router(r.table);
}

function msg(topic: string, payload: string | Buffer, properties?: RoutableMessage['properties']): RoutableMessage {
  return { seq: 1, messageId: '01HZX0000000000000000000AB', topic, payload: Buffer.from(payload), qos: 1, retain: false, receivedAt: Date.UTC(2024, 4, 1, 12), properties };
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
      count:       { from: "payload.readings[1].n", type: int }
    pubsub:
      topic: pressure-readings
      attributes: [site, sensor, bar, firmware]
      ordering_key: "{site}/{sensor}"
    bigquery:
      table: pressure
    file: false
  - name: vibration
    topic: plant/{site}/vibration/+
    decode: json
    fields:
      rms: { from: payload.rms, type: float }
      raw: { from: payload, type: json, optional: true }
    pubsub: { data: fields }
    bigquery: false
  - name: debug
    topic: debug/#
    drop: true
unmatched: dead_letter
`;

describe('Router', () => {
  const r = router(PLANT);

  it('gives the Pub/Sub message and the BigQuery row of the first matching route', () => {
    const payload = '{"bar": 1.5, "ts": "2024-05-01T12:00:00+02:00", "readings": [{}, {"n": 9007199254740993}]}';
    const out = r.route(msg('plant/s1/l2/pressure/p7', payload, { userProperties: { fw: ['1.2', '1.3'] } }));
    expect(out.kind).toBe('routed');
    if (out.kind !== 'routed') return;
    expect(out.route.name).toBe('pressure');
    expect(out.pubsub).toEqual({
      topic: 'projects/p/topics/pressure-readings',
      data: Buffer.from(payload),
      attributes: { site: 's1', sensor: 'p7', bar: '1.5', firmware: '1.2' },
      orderingKey: 's1/p7',
    });
    expect(out.bigquery).toEqual({
      dataset: 'ds',
      table: 'pressure',
      rows: [
        {
          insertId: '01HZX0000000000000000000AB',
          row: {
            message_id: '01HZX0000000000000000000AB',
            topic: 'plant/s1/l2/pressure/p7',
            received_at: '2024-05-01T12:00:00.000Z',
            site: 's1',
            line: 'l2',
            sensor: 'p7',
            bar: 1.5,
            status: null,
            measured_at: '2024-05-01T10:00:00.000Z',
            firmware: '1.2',
            count: '9007199254740993',
          },
        },
      ],
    });
    expect(out.file).toBe(false);
  });

  it('sends the variables and fields as JSON for data: fields, and skips a sink the route does not use', () => {
    const out = r.route(msg('plant/s2/vibration/axis-x', '{"rms": 0.25, "peak": 12345678901234567890}'));
    if (out.kind !== 'routed') throw new Error(out.kind);
    expect(out.bigquery).toBeUndefined();
    expect(out.file).toBe(true);
    expect(out.pubsub!.topic).toBe('projects/p/topics/raw');
    expect(out.pubsub!.orderingKey).toBeUndefined();
    expect(out.pubsub!.data.toString()).toBe('{"site":"s2","rms":0.25,"raw":{"rms":0.25,"peak":12345678901234567890}}');
  });

  it('dead-letters a value that does not convert, naming the field and quoting the value', () => {
    const out = r.route(msg('plant/s1/l2/pressure/p7', '{"bar": "abc", "ts": 0, "readings": [0, {"n": 1}]}'));
    expect(out).toMatchObject({ kind: 'dead_letter', reason: 'field_invalid', detail: 'field bar: payload.bar = "abc" is not a number (type float)' });
    const frac = r.route(msg('plant/s1/l2/pressure/p7', '{"bar": 1, "ts": 0, "readings": [0, {"n": 1.5}]}'));
    expect(frac).toMatchObject({ reason: 'field_invalid', detail: 'field count: payload.readings[1].n = 1.5 is not a whole number (type int)' });
  });

  it('dead-letters a missing required field; an absent optional one is NULL', () => {
    const out = r.route(msg('plant/s1/l2/pressure/p7', '{"bar": 1, "readings": [0, {"n": 1}]}'));
    expect(out).toMatchObject({ kind: 'dead_letter', reason: 'field_invalid', detail: expect.stringMatching(/^field measured_at: payload\.ts is missing/) });
    const nul = r.route(msg('plant/s1/l2/pressure/p7', '{"bar": null, "ts": 0, "readings": [0, {"n": 1}]}'));
    expect(nul).toMatchObject({ detail: expect.stringMatching(/^field bar: payload\.bar is null/) });
  });

  it('dead-letters a payload that is not JSON with decode_failed', () => {
    expect(r.route(msg('plant/s1/l2/pressure/p7', 'not json'))).toMatchObject({ kind: 'dead_letter', reason: 'decode_failed', detail: expect.stringMatching(/^payload is not JSON/) });
    expect(r.route(msg('plant/s1/l2/pressure/p7', Buffer.from([0xff, 0xfe])))).toMatchObject({ reason: 'decode_failed', detail: expect.stringMatching(/not valid UTF-8/) });
    // A string holding a byte that is not UTF-8 is refused, not read with a replacement character.
    const bad = Buffer.concat([Buffer.from('{"bar": 1, "ts": 0, "status": "'), Buffer.from([0xc3]), Buffer.from('", "readings": [0, {"n": 1}]}')]);
    expect(r.route(msg('plant/s1/l2/pressure/p7', bad))).toMatchObject({ reason: 'decode_failed', detail: expect.stringMatching(/not valid UTF-8/) });
    // U+FFFD sent as such is text like any other.
    expect(r.route(msg('plant/s1/l2/pressure/p7', '{"bar": 1, "ts": 0, "status": "\uFFFD", "readings": [0, {"n": 1}]}'))).toMatchObject({ kind: 'routed', fields: { status: { value: '\uFFFD' } } });
    // A leading byte-order mark is not part of the document.
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"bar": 1, "ts": 0, "readings": [0, {"n": 1}]}')]);
    expect(r.route(msg('plant/s1/l2/pressure/p7', bom))).toMatchObject({ kind: 'routed' });
  });

  it('drops a drop route, and treats what matches nothing as unmatched says', () => {
    expect(r.route(msg('debug/a/b', 'x'))).toMatchObject({ kind: 'dropped', route: { name: 'debug' } });
    expect(r.route(msg('other/topic', 'x'))).toEqual({ kind: 'dead_letter', reason: 'no_route', detail: 'topic "other/topic" matches no route of routes.yaml' });
    const raw = router('routes:\n  - name: a\n    topic: a\n');
    expect(raw.route(msg('b', 'x'))).toEqual({ kind: 'raw' });
    const drop = router('routes:\n  - name: a\n    topic: a\nunmatched: drop\n');
    expect(drop.route(msg('b', 'x'))).toEqual({ kind: 'dropped' });
  });

  it('dead-letters an attribute value over Pub/Sub\'s 1,024 bytes', () => {
    const out = r.route(msg(`plant/${'s'.repeat(1100)}/l/pressure/p`, '{"bar": 1, "ts": 0, "readings": [0, {"n": 1}]}'));
    expect(out).toMatchObject({ reason: 'field_invalid', detail: expect.stringMatching(/^attribute site: the value is 1100 bytes/) });
  });
});
