import { describe, expect, it } from 'vitest';
import { Counters, dueAt, messagesFor, summaryLine } from './pacing.js';

describe('simulate pacing and counting', () => {
  it('schedules each message from the start, devices phase-shifted across one interval', () => {
    // 4 devices at 2 msg/s: one message every 125 ms across the fleet.
    const times = [0, 1].flatMap((k) => [0, 1, 2, 3].map((i) => dueAt(k, i, 4, 2)));
    expect(times).toEqual([0, 125, 250, 375, 500, 625, 750, 875]);
    expect(dueAt(1000, 0, 1, 0.5)).toBe(2_000_000);
  });

  it('spreads --count over the devices, the first ones taking the rest', () => {
    expect([0, 1, 2].map((i) => messagesFor(i, 3, 10))).toEqual([4, 3, 3]);
    expect([0, 1, 2, 3, 4].map((i) => messagesFor(i, 5, 500)).reduce((a, b) => a + b)).toBe(500);
    expect([0, 1, 2].map((i) => messagesFor(i, 3, 1))).toEqual([1, 0, 0]);
  });

  it('counts QoS > 0 publishes neither acknowledged nor failed as unacknowledged, and connect failures as errors', () => {
    const c = new Counters();
    c.sent = 10;
    c.acknowledged = 7;
    c.publishErrors = 1;
    c.connectFailures = 2;
    expect(c.totals(1)).toEqual({ sent: 10, acknowledged: 7, errors: 3, connectFailures: 2, unacknowledged: 2 });
    expect(c.totals(0).unacknowledged).toBe(0);
  });

  it('gives the rate of the last interval', () => {
    const c = new Counters();
    expect(c.rateSince(1000)).toBe(0);
    c.sent = 500;
    expect(c.rateSince(1500)).toBe(1000);
  });

  it('prints the summary line', () => {
    const line = summaryLine({ url: 'mqtt://h:1883', devices: 10, connected: 10, qos: 1, seconds: 10.01, rate: 1198.34, ok: true, sent: 12000, acknowledged: 12000, errors: 0, connectFailures: 0, unacknowledged: 0 });
    expect(line).toBe('simulate: 12000 sent, 12000 acknowledged, 0 errors, 1198.3 msg/s over 10.0 s, 10 devices');
  });
});
