/**
 * The options of `mqtt-ingest simulate`, checked all at once: every problem is reported in one go, so a trial
 * command line is fixed in one edit. The password is read from a file or MQTT_PASSWORD, never the command line.
 */
import { readFileSync } from 'node:fs';
import { compileTemplate, DEFAULT_PAYLOAD, DEFAULT_TOPIC, DeviceState, deviceName, render, type Template } from './template.js';

/** The options as commander hands them over: strings, as typed. */
export interface SimulateCliOptions {
  url: string;
  devices: string;
  rate: string;
  qos: string;
  topic: string;
  payload: string;
  duration?: string;
  count?: string;
  username?: string;
  passwordFile?: string;
  ca?: string;
  cert?: string;
  key?: string;
  insecure?: boolean;
  protocol: string;
  connectBatch: string;
  json?: boolean;
}

export interface SimulateOptions {
  url: string;
  devices: number;
  /** Messages per second per device. */
  rate: number;
  qos: 0 | 1 | 2;
  topic: Template;
  payload: Template;
  /** Publishing stops after this many seconds, or after `count` messages in all: exactly one is set. */
  durationSeconds?: number;
  count?: number;
  username?: string;
  password?: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecure: boolean;
  protocol: 4 | 5;
  connectBatch: number;
  json: boolean;
}

export const DEFAULT_URL = 'mqtt://127.0.0.1:1883';
export const DEFAULT_DURATION_SECONDS = 10;
export const MAX_DEVICES = 100_000;

const TLS_PROTOCOLS = ['mqtts:', 'wss:'];
const PROTOCOLS = ['mqtt:', 'ws:', ...TLS_PROTOCOLS];

function integer(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text.trim())) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
}

function positive(text: string, max: number): number | undefined {
  if (!/^\d*\.?\d+$/.test(text.trim())) return undefined;
  const n = Number(text);
  return n > 0 && n <= max ? n : undefined;
}

export function parseSimulateOptions(cli: SimulateCliOptions, env: NodeJS.ProcessEnv): { options?: SimulateOptions; problems: string[] } {
  const problems: string[] = [];
  let tls = false;
  try {
    const protocol = new URL(cli.url).protocol;
    if (!PROTOCOLS.includes(protocol)) problems.push('--url must be an mqtt://, mqtts://, ws:// or wss:// URL');
    tls = TLS_PROTOCOLS.includes(protocol);
  } catch {
    // Not echoed: it may hold user:password@.
    problems.push('--url must be an mqtt://, mqtts://, ws:// or wss:// URL (the value given does not parse as a URL)');
  }
  const devices = integer(cli.devices, 1, MAX_DEVICES);
  if (devices === undefined) problems.push(`--devices must be a whole number from 1 to ${MAX_DEVICES}`);
  const rate = positive(cli.rate, 10_000);
  if (rate === undefined) problems.push('--rate must be a number of messages per second per device above 0 and at most 10000 (e.g. 0.2 or 5)');
  const qos = integer(cli.qos, 0, 2) as 0 | 1 | 2 | undefined;
  if (qos === undefined) problems.push('--qos must be 0, 1 or 2');
  const protocol = cli.protocol === '4' || cli.protocol === '5' ? (Number(cli.protocol) as 4 | 5) : undefined;
  if (protocol === undefined) problems.push('--protocol must be 4 (MQTT 3.1.1) or 5');
  const connectBatch = integer(cli.connectBatch, 1, MAX_DEVICES);
  if (connectBatch === undefined) problems.push(`--connect-batch must be a whole number from 1 to ${MAX_DEVICES}`);

  let durationSeconds: number | undefined;
  let count: number | undefined;
  if (cli.duration !== undefined && cli.count !== undefined) problems.push('give --duration or --count, not both');
  if (cli.count !== undefined) {
    count = integer(cli.count, 1, Number.MAX_SAFE_INTEGER);
    if (count === undefined) problems.push('--count must be a whole number of messages above 0 (all devices together)');
  } else {
    durationSeconds = cli.duration === undefined ? DEFAULT_DURATION_SECONDS : positive(cli.duration, 7 * 86_400);
    if (durationSeconds === undefined) problems.push('--duration must be a number of seconds above 0 and at most 604800 (7 days)');
  }

  const topic = compileTemplate(cli.topic, '--topic');
  problems.push(...topic.problems);
  const payload = compileTemplate(cli.payload, '--payload');
  problems.push(...payload.problems);
  if (topic.problems.length === 0) {
    if (topic.template.walks.size > 0) problems.push('--topic may use {device}, {seq} and {ts}, not a walk');
    else {
      const sample = render(topic.template, new DeviceState(deviceName(0, 1), new Map()), 0);
      if (/[#+]/.test(sample) || sample.length === 0 || sample.includes('\0')) problems.push(`--topic renders to ${JSON.stringify(sample)}, which is no topic to publish to (empty, or holds + or #)`);
    }
  }
  if (payload.problems.length === 0) {
    const device = new DeviceState(deviceName(0, devices ?? 1), payload.template.walks);
    device.advance();
    const sample = render(payload.template, device, Date.now());
    try {
      JSON.parse(sample);
    } catch (err) {
      problems.push(`--payload must render to JSON; the first message would be ${JSON.stringify(sample)} (${(err as Error).message})`);
    }
  }

  const read = (flag: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      problems.push(`${flag}: cannot read ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      return undefined;
    }
  };
  const ca = read('--ca', cli.ca);
  const cert = read('--cert', cli.cert);
  const key = read('--key', cli.key);
  if ((cli.cert === undefined) !== (cli.key === undefined)) problems.push('--cert and --key go together (a client certificate and its private key)');
  if (!tls && (cli.ca || cli.cert || cli.key || cli.insecure)) problems.push('--ca, --cert, --key and --insecure need an mqtts:// or wss:// URL');

  let password: string | undefined;
  if (cli.passwordFile !== undefined) {
    const text = read('--password-file', cli.passwordFile)?.toString('utf8');
    if (text !== undefined) password = text.split(/\r?\n/)[0];
    if (text !== undefined && !password) problems.push(`--password-file: the first line of ${JSON.stringify(cli.passwordFile)} is empty`);
    if (cli.username === undefined) problems.push('--password-file needs --username');
  } else if (cli.username !== undefined && env.MQTT_PASSWORD) {
    password = env.MQTT_PASSWORD;
  }

  if (problems.length > 0) return { problems };
  return {
    problems,
    options: {
      url: cli.url,
      devices: devices!,
      rate: rate!,
      qos: qos!,
      topic: topic.template,
      payload: payload.template,
      durationSeconds,
      count,
      username: cli.username,
      password,
      ca,
      cert,
      key,
      insecure: cli.insecure === true,
      protocol: protocol!,
      connectBatch: connectBatch!,
      json: cli.json === true,
    },
  };
}

export const DEFAULTS = { url: DEFAULT_URL, devices: '10', rate: '1', qos: '1', topic: DEFAULT_TOPIC, payload: DEFAULT_PAYLOAD, protocol: '4', connectBatch: '100' } as const;
