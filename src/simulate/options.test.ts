import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, parseSimulateOptions, type SimulateCliOptions } from './options.js';

const cli = (extra: Partial<SimulateCliOptions> = {}): SimulateCliOptions => ({ ...DEFAULTS, ...extra });

describe('simulate options', () => {
  it('takes the defaults: 10 devices, 1 msg/s, QoS 1, MQTT 3.1.1, 10 s', () => {
    const { options, problems } = parseSimulateOptions(cli(), {});
    expect(problems).toEqual([]);
    expect(options).toMatchObject({ url: 'mqtt://127.0.0.1:1883', devices: 10, rate: 1, qos: 1, protocol: 4, connectBatch: 100, durationSeconds: 10, count: undefined, insecure: false });
  });

  it('accepts a fractional rate, --count instead of --duration, and ws:// and wss:// URLs', () => {
    expect(parseSimulateOptions(cli({ rate: '0.25', count: '500', url: 'ws://h:8080/mqtt' }), {}).options).toMatchObject({ rate: 0.25, count: 500, durationSeconds: undefined });
    expect(parseSimulateOptions(cli({ url: 'wss://h/mqtt', insecure: true, duration: '1.5' }), {}).options).toMatchObject({ insecure: true, durationSeconds: 1.5 });
  });

  it('lists every problem at once', () => {
    const { options, problems } = parseSimulateOptions(
      cli({ url: 'http://h', devices: '0', rate: '-1', qos: '3', protocol: '3', connectBatch: 'x', duration: '5', count: '7', payload: '{"a":{seq}', topic: 'sim/+/x', cert: '/nonexistent/c.pem', insecure: true }),
      {},
    );
    expect(options).toBeUndefined();
    expect(problems).toEqual([
      '--url must be an mqtt://, mqtts://, ws:// or wss:// URL',
      '--devices must be a whole number from 1 to 100000',
      expect.stringMatching(/^--rate must be/),
      '--qos must be 0, 1 or 2',
      '--protocol must be 4 (MQTT 3.1.1) or 5',
      '--connect-batch must be a whole number from 1 to 100000',
      'give --duration or --count, not both',
      expect.stringMatching(/^--topic renders to "sim\/\+\/x"/),
      expect.stringMatching(/^--payload must render to JSON; the first message would be "\{\\"a\\":1"/),
      expect.stringMatching(/^--cert: cannot read "\/nonexistent\/c.pem" \(ENOENT\)/),
      '--cert and --key go together (a client certificate and its private key)',
      '--ca, --cert, --key and --insecure need an mqtts:// or wss:// URL',
    ]);
  });

  it('never echoes a URL that does not parse (it may hold a password)', () => {
    const { problems } = parseSimulateOptions(cli({ url: 'mqtt://u:s3cret@[bad' }), {});
    expect(problems.join('\n')).not.toContain('s3cret');
  });

  it('reads the password from the first line of --password-file, else MQTT_PASSWORD with --username', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'simulate-options-'));
    const file = path.join(dir, 'pw');
    writeFileSync(file, 'from-file\nignored\n');
    expect(parseSimulateOptions(cli({ username: 'u', passwordFile: file }), { MQTT_PASSWORD: 'env' }).options?.password).toBe('from-file');
    expect(parseSimulateOptions(cli({ username: 'u' }), { MQTT_PASSWORD: 'env' }).options?.password).toBe('env');
    expect(parseSimulateOptions(cli(), { MQTT_PASSWORD: 'env' }).options?.password).toBeUndefined();
    expect(parseSimulateOptions(cli({ passwordFile: file }), {}).problems).toEqual(['--password-file needs --username']);
    writeFileSync(file, '\n');
    expect(parseSimulateOptions(cli({ username: 'u', passwordFile: file }), {}).problems).toEqual([expect.stringMatching(/first line of .* is empty/)]);
  });

  it('refuses a walk in the topic and bad numbers in --count and --duration', () => {
    expect(parseSimulateOptions(cli({ topic: 'sim/{walk:a:1:1}' }), {}).problems).toEqual(['--topic may use {device}, {seq} and {ts}, not a walk']);
    expect(parseSimulateOptions(cli({ count: '1.5' }), {}).problems).toEqual([expect.stringMatching(/^--count must be/)]);
    expect(parseSimulateOptions(cli({ duration: '0' }), {}).problems).toEqual([expect.stringMatching(/^--duration must be/)]);
  });
});
