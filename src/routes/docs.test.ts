import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Router } from './router.js';
import { describeProblem, parseRoutes } from './routes-file.js';

const DOC = readFileSync(new URL('../../docs/routing.md', import.meta.url), 'utf8');

describe('docs/routing.md', () => {
  it('shows a plant example that loads and does what the doc says', () => {
    const yaml = /```yaml\n([\s\S]*?)```/.exec(DOC)![1]!;
    const r = parseRoutes(yaml, 'plant-routes.yaml', { pubsubTopic: 'projects/my-project/topics/mqtt-raw', gcpProjectId: 'my-project', bigqueryDataset: 'plant', fileSink: false });
    expect(r.problems.map(describeProblem)).toEqual([]);
    const router = new Router(r.table!);
    const msg = (topic: string, payload: string) => ({ seq: 1, messageId: 'id', topic, payload: Buffer.from(payload), qos: 1 as const, retain: false, receivedAt: 0 });
    const out = router.route({ ...msg('plant/hamburg/line2/pressure/pt-07', '{"bar": 4.2, "ts": "2024-05-01T12:00:00.250+02:00"}'), properties: { userProperties: { fw: '3.1.4' } } });
    expect(out).toMatchObject({ kind: 'routed', pubsub: { topic: 'projects/my-project/topics/pressure-readings', orderingKey: 'hamburg/pt-07' }, bigquery: { table: 'pressure', rows: [{ row: { firmware: '3.1.4', measured_at: '2024-05-01T10:00:00.250Z' } }] } });
    expect(router.route(msg('plant/hamburg/line2/vibration/press-3', '{"rms": "high", "ts": 0}'))).toMatchObject({ detail: 'field rms: payload.rms = "high" is not a number (type float)' });
    expect(router.route(msg('debug/trace', ''))).toMatchObject({ kind: 'dropped' });
    expect(router.route(msg('plant/hamburg/line2/temp/t1', ''))).toMatchObject({ reason: 'no_route' });
    expect(DOC).toContain('dead letter: reason field_invalid: field rms: payload.rms = "high" is not a number (type float)');
  });
});
