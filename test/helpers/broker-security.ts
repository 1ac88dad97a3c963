/**
 * What the broker security tests share: clients of either MQTT version (MQTT.js 5 and mosquitto_pub), users
 * written by either password tool, the certificate a listener presents, and what reached the file sink.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt';
import { findOnPath } from '../../src/intake/mosquitto/process-utils.js';
import { readFileSink } from './file-output.js';
import { BIN, type NodeProcess } from './node-process.js';
import { waitFor } from './ports.js';

export type Version = 4 | 5;

/** Each case runs once per protocol version; `flag` is mosquitto_pub's -V for it. */
export const VERSIONS = [
  { v: 4 as Version, name: 'MQTT 3.1.1', flag: 'mqttv311' },
  { v: 5 as Version, name: 'MQTT 5', flag: 'mqttv5' },
];

/**
 * The CONNACK code of a refusal, per version: 3.1.1 return codes (§3.2.2.3) and 5 reason codes (§3.2.2.2).
 * Both brokers answer a bad password, an unknown user and an anonymous client alike, "not authorized".
 */
export const CONNACK = {
  notAuthorized: { 4: 5, 5: 0x87 },
  identifierRejected: { 4: 2, 5: 0x85 },
} as const;

/** MQTT 5's PUBACK and SUBACK reason code for a refusal by authorisation. */
export const NOT_AUTHORIZED = 0x87;

/** Mosquitto mode writes users with our CLI, embedded mode with mosquitto_passwd: each reads the other's. */
export function addUser(mode: string, file: string, user: string, password: string): void {
  if (mode === 'mosquitto') execFileSync(process.execPath, [BIN, 'passwd', file, user], { input: `${password}\n`, stdio: ['pipe', 'ignore', 'inherit'] });
  else execFileSync(findOnPath('mosquitto_passwd')!, [...(fs.existsSync(file) ? [] : ['-c']), '-b', file, user, password]);
}

export function deleteUser(mode: string, file: string, user: string): void {
  if (mode === 'mosquitto') execFileSync(process.execPath, [BIN, 'passwd', '-D', file, user], { stdio: ['ignore', 'ignore', 'inherit'] });
  else execFileSync(findOnPath('mosquitto_passwd')!, ['-D', file, user]);
}

/** Connects once, without reconnects, with the given protocol version. */
export function connectV(v: Version, url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...opts, protocolVersion: v });
}

export interface Attempt {
  /** 'connected', the error's message, or 'closed' when the connection ended without one. */
  outcome: string;
  /** The CONNACK's return code (3.1.1) or reason code (5) of a refused CONNECT. */
  code?: number;
}

/** How a connection attempt of version `v` ended. */
export function attempt(v: Version, url: string, opts: IClientOptions = {}): Promise<Attempt> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...opts, protocolVersion: v });
    let settled = false;
    const settle = (a: Attempt) => {
      if (settled) return;
      settled = true;
      client.end(true);
      resolve(a);
    };
    client.once('connect', () => settle({ outcome: 'connected' }));
    client.once('error', (err: Error & { code?: unknown }) =>
      settle({ outcome: err.message || String(err), ...(typeof err.code === 'number' ? { code: err.code } : {}) }),
    );
    client.once('close', () => settle({ outcome: 'closed' }));
  });
}

/** The packets of one kind a client receives from now on. */
export function received<C extends Packet['cmd']>(client: MqttClient, cmd: C): Array<Extract<Packet, { cmd: C }>> {
  const out: Array<Extract<Packet, { cmd: C }>> = [];
  client.on('packetreceive', (p) => {
    if (p.cmd === cmd) out.push(p as Extract<Packet, { cmd: C }>);
  });
  return out;
}

/** Subscribes at QoS 1 and returns what the SUBACK granted: the QoS or a failure code (0x80, or 5's reason codes). */
export async function subscribeGranted(client: MqttClient, filter: string): Promise<number[]> {
  const subacks = received(client, 'suback');
  await client.subscribeAsync(filter, { qos: 1 }).catch(() => undefined);
  return subacks.flatMap((s) => s.granted.map((g) => (typeof g === 'number' ? g : (g as { qos: number }).qos)));
}

/**
 * Publishes and resolves with the reason code of the PUBACK (QoS 1) or PUBREC (QoS 2); 0 for QoS 0 and for 3.1.1,
 * which has none. MQTT.js rejects a publish answered with a failure code; that code is the result here.
 */
export async function publishCode(client: MqttClient, topic: string, payload: string, qos: 0 | 1 | 2 = 1): Promise<number> {
  return client.publishAsync(topic, payload, { qos }).then(
    (ack) => (ack && 'reasonCode' in ack ? (ack.reasonCode ?? 0) : 0),
    (err: Error & { code?: number }) => {
      if (typeof err.code !== 'number') throw err;
      return err.code;
    },
  );
}

/** Runs mosquitto_pub; its exit code is the CONNACK code of a refused connection. */
export function mosquittoPub(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('mosquitto_pub', args, { timeout: 10_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

/** The serial number of the certificate a TLS listener presents now. */
export function peerSerial(url: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.destroy();
    });
    socket.on('error', () => resolve(''));
  });
}

export function topicsIn(node: NodeProcess): string[] {
  return readFileSink(path.join(node.dataDir, 'out')).map((r) => r.topic);
}

/** Waits until `topic` reached the file sink; everything published before it by the same client has too. */
export async function waitForTopic(node: NodeProcess, topic: string): Promise<string[]> {
  return waitFor(() => {
    const topics = topicsIn(node);
    return topics.includes(topic) ? topics : undefined;
  }, 20_000, `${topic} in the file sink`);
}

/**
 * `n` connections open at once, retried until the listener admits them all: connections that earlier cases
 * closed may still be open on the server's side for a moment.
 */
export function connectedAtOnce(n: number, v: Version, url: string, opts: IClientOptions): Promise<MqttClient[]> {
  return waitFor(
    async () => {
      const got = await Promise.all(Array.from({ length: n }, () => connectV(v, url, opts).catch(() => undefined)));
      if (got.every(Boolean)) return got as MqttClient[];
      await Promise.all(got.map((c) => c?.endAsync(true)));
      return undefined;
    },
    10_000,
    `${n} connections admitted`,
  );
}
