import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkConfig } from '../cli/check-config.js';
import { loadConfig } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { subscribedFilters, unstableHostName } from './config.js';

const BROKER = { MQTT_BROKER: 'mqtts://broker.example:8883' };

function load(env: Record<string, string>, hostname = 'mqtt-ingest-0') {
  return loadConfig({ env, hostname });
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    load(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('subscribedFilters', () => {
  it('is MQTT_TOPICS as given without a share group', () => {
    expect(subscribedFilters(['plant/#', 'a/+/b'], undefined)).toEqual(['plant/#', 'a/+/b']);
  });

  it('makes each filter a shared subscription of the group, and leaves one written $share/… as it is', () => {
    expect(subscribedFilters(['plant/#', '$share/alerts/alarm/+', '$SYS/broker/#'], 'ingest')).toEqual([
      '$share/ingest/plant/#',
      '$share/alerts/alarm/+',
      '$share/ingest/$SYS/broker/#',
    ]);
  });

  it('subscribes a filter once when MQTT_TOPICS names it both ways', () => {
    expect(subscribedFilters(['plant/#', '$share/ingest/plant/#'], 'ingest')).toEqual(['$share/ingest/plant/#']);
  });
});

describe('MQTT_SHARE_GROUP', () => {
  it('is unset by default and read as given', () => {
    expect(load({}).config.MQTT_SHARE_GROUP).toBeUndefined();
    expect(load({ ...BROKER, MQTT_SHARE_GROUP: 'ingest-prd' }).config.MQTT_SHARE_GROUP).toBe('ingest-prd');
  });

  it.each(['a/b', 'in+', '#', 'x#'])('refuses the share name %j', (name) => {
    expect(problemsOf({ ...BROKER, MQTT_SHARE_GROUP: name })).toEqual([
      `MQTT_SHARE_GROUP: must be a share name: text without "/", "+" or "#", got ${JSON.stringify(name)}`,
    ]);
  });

  it('is a problem in the embedded mode, which has no subscription to share', () => {
    expect(problemsOf({ MQTT_BROKER_MODE: 'embedded', MQTT_SHARE_GROUP: 'ingest' })).toEqual([
      expect.stringMatching(/^MQTT_SHARE_GROUP: is set \("ingest"\), but MQTT_BROKER_MODE is "embedded": .*; unset MQTT_SHARE_GROUP/),
    ]);
    // The auto mode without MQTT_BROKER is decided at start (Mosquitto on PATH or not): nothing to say here.
    expect(load({ MQTT_SHARE_GROUP: 'ingest' }).warnings).toEqual([]);
    expect(load({ MQTT_BROKER_MODE: 'mosquitto', MQTT_SHARE_GROUP: 'ingest' }).warnings).toEqual([]);
  });

  it('is a problem when a shared filter would be too long for MQTT', () => {
    const long = `${'x'.repeat(65_530)}/#`;
    expect(load({ ...BROKER, MQTT_TOPICS: long }).config.MQTT_TOPICS).toEqual([long]);
    expect(problemsOf({ ...BROKER, MQTT_TOPICS: long, MQTT_SHARE_GROUP: 'ingest' })).toEqual([
      expect.stringMatching(/^MQTT_SHARE_GROUP: makes the shared subscription "\$share\/ingest\/x+.*", which is longer than 65535 bytes$/),
    ]);
  });
});

describe('MQTT_SHARE_GROUP and the client id', () => {
  it('warns, without failing, when MQTT_CLIENT_ID is set explicitly against an external broker', () => {
    const { warnings } = load({ ...BROKER, MQTT_SHARE_GROUP: 'ingest', MQTT_CLIENT_ID: 'mqtt-ingest-prd' });
    expect(warnings).toEqual([
      expect.stringMatching(/^MQTT_CLIENT_ID: is set to "mqtt-ingest-prd" while MQTT_SHARE_GROUP .* take over each other's session .*Give each replica its own client id .*or unset MQTT_CLIENT_ID/),
    ]);
    // Without a share group, or with the derived id, or on the node's own Mosquitto (secret suffix): no warning.
    expect(load({ ...BROKER, MQTT_CLIENT_ID: 'mqtt-ingest-prd' }).warnings).toEqual([]);
    expect(load({ ...BROKER, MQTT_SHARE_GROUP: 'ingest' }).warnings).toEqual([]);
    expect(load({ MQTT_BROKER_MODE: 'mosquitto', MQTT_SHARE_GROUP: 'ingest', MQTT_CLIENT_ID: 'mqtt-ingest-prd' }).warnings).toEqual([]);
  });

  it('warns for a client id from a config file too, which every replica reads alike', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-ingest-share-'));
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, 'MQTT_CLIENT_ID: ingest\nMQTT_SHARE_GROUP: ingest\n');
    const { warnings } = loadConfig({ env: BROKER, file, hostname: 'mqtt-ingest-0' });
    expect(warnings).toEqual([expect.stringMatching(/^MQTT_CLIENT_ID: is set to "ingest" while MQTT_SHARE_GROUP/)]);
  });

  it.each([
    ['mqtt-ingest-7d9f8b6c5-x2k4q', 'a Kubernetes Deployment pod'],
    ['mqtt-ingest-5bd8c7f9b8-lwz6t', 'a Kubernetes Deployment pod'],
    ['3f4e2a1b9c0d', 'a Docker container id'],
  ])('warns when the derived client id comes from the host name %s, which changes when replaced', (hostname, what) => {
    const { warnings, config } = load({ ...BROKER, MQTT_SHARE_GROUP: 'ingest' }, hostname);
    expect(config.MQTT_CLIENT_ID).toBe(`mqtt-ingest-${hostname}-dev`);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`MQTT_CLIENT_ID: is derived from the host name "${hostname}", which looks like ${what}`);
    expect(warnings[0]).toMatch(/StatefulSet .*or set MQTT_CLIENT_ID/);
    // The same host name is no concern without a share group (each message goes to every session then).
    expect(load(BROKER, hostname).warnings).toEqual([]);
  });

  it.each(['mqtt-ingest-0', 'mqtt-ingest-12', 'node-1.example', 'ingest-plant-north', 'build-box', 'a1b2c3d4e5f6a'])(
    'takes the host name %s for a stable one',
    (hostname) => {
      expect(unstableHostName(hostname)).toBeUndefined();
      expect(load({ ...BROKER, MQTT_SHARE_GROUP: 'ingest' }, hostname).warnings).toEqual([]);
    },
  );

  it('check-config prints the warning and still exits 0', () => {
    let stderr = '';
    const io = { stdout: { write: () => true }, stderr: { write: (s: string) => ((stderr += s), true) } };
    const code = checkConfig({ env: { ...BROKER, MQTT_SHARE_GROUP: 'ingest', MQTT_CLIENT_ID: 'fixed' }, hostname: 'h' }, io);
    expect(code).toBe(0);
    expect(stderr).toMatch(/^warning: MQTT_CLIENT_ID: is set to "fixed" while MQTT_SHARE_GROUP/m);
  });
});
