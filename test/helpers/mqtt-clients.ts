import fs from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

/** TLS options for MQTT.js from PEM file paths (they also reach its WebSocket transport). */
export function tlsFiles(o: { ca?: string; cert?: string; key?: string }): Pick<IClientOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized'> {
  return {
    ...(o.ca ? { ca: fs.readFileSync(o.ca) } : {}),
    ...(o.cert ? { cert: fs.readFileSync(o.cert) } : {}),
    ...(o.key ? { key: fs.readFileSync(o.key) } : {}),
    rejectUnauthorized: true,
  };
}

/** Connects once (no reconnects, MQTT 3.1.1, which both broker modes speak). */
export function connect(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
}

/**
 * How a connection attempt ended: 'connected' when the broker let it in, else the error message, or 'closed'
 * when the connection ended without one (a TLS handshake the server broke off can end that way).
 */
export function refusal(url: string, opts: IClientOptions = {}): Promise<string> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
    let settled = false;
    const settle = (outcome: string) => {
      if (settled) return;
      settled = true;
      client.end(true);
      resolve(outcome);
    };
    client.once('connect', () => settle('connected'));
    client.once('error', (err) => settle(err.message || String(err)));
    client.once('close', () => settle('closed'));
  });
}

/** Publishes at QoS 1 and resolves once the broker acknowledged it. */
export async function publishAcked(client: MqttClient, topic: string, payload: string): Promise<void> {
  await client.publishAsync(topic, payload, { qos: 1 });
}
