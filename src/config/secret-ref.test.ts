import { describe, expect, it } from 'vitest';
import { ConfigError } from '../core/errors.js';
import { loadConfig } from './load.js';
import { parseSecretRef } from './secret-ref.js';

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig({ env, hostname: 'h' });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('Secret Manager references', () => {
  it('parse the documented form, with a numbered version or latest, and a project id or number', () => {
    expect(parseSecretRef('sm://projects/mqtt-ingest-prd/secrets/mqtt-password/versions/3')).toEqual({
      project: 'mqtt-ingest-prd',
      secret: 'mqtt-password',
      version: '3',
      secretName: 'projects/mqtt-ingest-prd/secrets/mqtt-password',
      name: 'projects/mqtt-ingest-prd/secrets/mqtt-password/versions/3',
    });
    expect(parseSecretRef('sm://projects/123456789012/secrets/TLS_KEY/versions/latest')?.version).toBe('latest');
    for (const bad of [
      'sm://projects/p/secrets/s/versions/1', // project id too short
      'sm://projects/mqtt-ingest-prd/secrets/s', // no version
      'sm://projects/mqtt-ingest-prd/secrets/s/versions/0',
      'sm://projects/mqtt-ingest-prd/secrets/s/versions/newest',
      'sm://projects/mqtt-ingest-prd/secrets/a.b/versions/1',
      'sm://mqtt-ingest-prd/mqtt-password',
    ]) {
      expect(parseSecretRef(bad), bad).toBeUndefined();
    }
  });

  it('are accepted by a secret key (also as NAME_FILE) and checked for form only, offline', () => {
    const ref = 'sm://projects/mqtt-ingest-prd/secrets/mqtt-password/versions/latest';
    const direct = loadConfig({ env: { MQTT_BROKER: 'mqtts://broker.example:8883', MQTT_PASSWORD: ref }, hostname: 'h' });
    expect(direct.secretRefs.MQTT_PASSWORD?.secretName).toBe('projects/mqtt-ingest-prd/secrets/mqtt-password');
    expect(direct.config.MQTT_PASSWORD).toBe(ref);
    const viaFile = loadConfig({ env: { MQTT_PASSWORD_FILE: ref }, hostname: 'h' });
    expect(viaFile.secretRefs.MQTT_PASSWORD?.version).toBe('latest');
    expect(loadConfig({ env: {}, hostname: 'h' }).secretRefs).toEqual({});
  });

  it('with a wrong form name the key and the expected form, and are refused by keys that hold no secret or file', () => {
    const problems = problemsOf({ MQTT_PASSWORD: 'sm://projects/mqtt-ingest-prd/secrets/pw', MQTT_HOST: 'sm://projects/mqtt-ingest-prd/secrets/h/versions/1' });
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^MQTT_HOST: a Secret Manager reference is accepted only by secret and file keys/);
    expect(problems[1]).toMatch(/^MQTT_PASSWORD: must be a Secret Manager reference sm:\/\/projects\/PROJECT\/secrets\/SECRET\/versions\/VERSION/);
  });
});
