import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileSink } from './file-sink.js';
import { createLogger } from '../../core/logger.js';
import type { SpooledMessage } from '../../core/message.js';
import { observed } from '../../../test/contract/sink-contract.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function message(seq: number, payload: Buffer = Buffer.from(`{"v":${seq}}`)): SpooledMessage {
  return { seq, messageId: `01J${String(seq).padStart(23, '0')}`, topic: `plant/${seq}`, payload, qos: 1, retain: seq % 2 === 0, receivedAt: Date.UTC(2026, 10, 29, 3, 0, 0, 5) };
}

describe('file sink', () => {
  it('writes one contract object per line, binary payloads as base64', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'file-sink-'));
    dirs.push(dir);
    const sink = new FileSink({ dir, rotateBytes: 1e6, logger: createLogger('silent'), clock: { now: () => Date.UTC(2026, 10, 29, 3, 10) } });
    await sink.start();
    const out = await sink.write([message(1), message(2, Buffer.from([0xff, 0x00]))]);
    expect(out.every((o) => o.kind === 'delivered')).toBe(true);
    await sink.close();
    const files = readdirSync(dir);
    expect(files).toEqual(['messages-20261129T03-0000.ndjson']);
    const lines = readFileSync(path.join(dir, files[0]), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toEqual({ message_id: message(1).messageId, topic: 'plant/1', qos: 1, retain: false, received_at: '2026-11-29T03:00:00.005Z', payload: '{"v":1}', payload_encoding: 'utf8', user_properties: null, content_type: null });
    expect(lines[1]).toMatchObject({ payload: Buffer.from([0xff, 0x00]).toString('base64'), payload_encoding: 'base64', retain: true });
  });

  it('writes the MQTT 5 properties: user properties as an object, a repeated name as the array of its values', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'file-sink-'));
    dirs.push(dir);
    const sink = new FileSink({ dir, rotateBytes: 1e6, logger: createLogger('silent'), clock: { now: () => Date.UTC(2026, 10, 29, 3, 10) } });
    await sink.start();
    const m = { ...message(1), properties: { userProperties: { site: 'Zürich', tag: ['a', 'b'] }, contentType: 'application/json' } };
    expect(await sink.write([m, { ...message(2), properties: { contentType: 'text/plain' } }])).toEqual([{ kind: 'delivered' }, { kind: 'delivered' }]);
    await sink.close();
    const [file] = readdirSync(dir);
    const lines = readFileSync(path.join(dir, file!), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ user_properties: { site: 'Zürich', tag: ['a', 'b'] }, content_type: 'application/json' });
    expect(lines[1]).toMatchObject({ user_properties: null, content_type: 'text/plain' });
  });

  it('rotates by size and by UTC hour, and continues the hour\'s last file after a restart', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'file-sink-'));
    dirs.push(dir);
    let now = Date.UTC(2026, 10, 29, 3, 59);
    const clock = { now: () => now };
    let sink = new FileSink({ dir, rotateBytes: 400, logger: createLogger('silent'), clock });
    await sink.start();
    for (let i = 0; i < 4; i++) await sink.write([message(i)]);
    await sink.close();
    const firstHour = readdirSync(dir).sort();
    expect(firstHour.length).toBeGreaterThan(1);
    expect(firstHour.every((f) => f.startsWith('messages-20261129T03-'))).toBe(true);
    sink = new FileSink({ dir, rotateBytes: 400, logger: createLogger('silent'), clock });
    await sink.start();
    await sink.write([message(10)]);
    // The last file was full, so the restart continues with the next index: nothing is overwritten.
    const afterRestart = readdirSync(dir).sort();
    expect(afterRestart.slice(0, firstHour.length)).toEqual(firstHour);
    expect(afterRestart.length).toBe(firstHour.length + 1);
    now = Date.UTC(2026, 10, 29, 4, 0, 1);
    await sink.write([message(11)]);
    await sink.close();
    expect(readdirSync(dir)).toContain('messages-20261129T04-0000.ndjson');
    const total = readdirSync(dir).flatMap((f) => readFileSync(path.join(dir, f), 'utf8').trim().split('\n'));
    expect(total.length).toBe(6);
  });

  it('after a restart, appends to the hour\'s last file while it has room', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'file-sink-'));
    dirs.push(dir);
    const clock = { now: () => Date.UTC(2026, 10, 29, 5, 1) };
    for (let run = 0; run < 2; run++) {
      const sink = new FileSink({ dir, rotateBytes: 1e6, logger: createLogger('silent'), clock });
      await sink.start();
      await sink.write([message(run)]);
      await sink.close();
    }
    expect(readdirSync(dir)).toEqual(['messages-20261129T05-0000.ndjson']);
    expect(readFileSync(path.join(dir, 'messages-20261129T05-0000.ndjson'), 'utf8').trim().split('\n').length).toBe(2);
  });
});

describe('file sink status', () => {
  it('shows where it writes, through its runner', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'file-sink-'));
    dirs.push(dir);
    const sink = new FileSink({ dir, rotateBytes: 1e6, logger: createLogger('silent') });
    await sink.start();
    const view = observed(sink);
    await view.write([message(1)]);
    expect(view.status()).toMatchObject({ state: 'ok', detail: `writing NDJSON under ${dir}`, lastDeliveryAt: expect.any(String) });
    await sink.close();
  });
});

describe('file sink after a crash', () => {
  it('cuts a partial last line left by a crash before appending', async () => {
    const { writeFileSync } = await import('node:fs');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'file-sink-'));
    dirs.push(dir);
    const file = path.join(dir, 'messages-20261129T05-0000.ndjson');
    writeFileSync(file, '{"message_id":"a"}\n{"message_id":"b","top');
    const sink = new FileSink({ dir, rotateBytes: 1e6, logger: createLogger('silent'), clock: { now: () => Date.UTC(2026, 10, 29, 5, 1) } });
    await sink.start();
    await sink.write([message(1)]);
    await sink.close();
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { message_id: string });
    expect(lines.map((l) => l.message_id)).toEqual(['a', message(1).messageId]);
  });
});
