import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.js';
import { resolveBrokerMode } from './create-intake.js';

const config = (env: Record<string, string>) => loadConfig({ env, hostname: 'h' }).config;

describe('resolveBrokerMode', () => {
  const onPath = (bin: string) => (bin === 'mosquitto' ? '/usr/sbin/mosquitto' : undefined);
  const nowhere = () => undefined;

  it('auto: external when MQTT_BROKER is set, else Mosquitto when it is on PATH, else embedded', () => {
    expect(resolveBrokerMode(config({ MQTT_BROKER: 'mqtt://b.example' }), onPath)).toBe('external');
    expect(resolveBrokerMode(config({}), onPath)).toBe('mosquitto');
    expect(resolveBrokerMode(config({}), nowhere)).toBe('embedded');
    expect(resolveBrokerMode(config({ MOSQUITTO_BIN: '/opt/mosquitto' }), onPath)).toBe('embedded');
  });

  it('an explicit mode wins', () => {
    expect(resolveBrokerMode(config({ MQTT_BROKER_MODE: 'embedded' }), onPath)).toBe('embedded');
    expect(resolveBrokerMode(config({ MQTT_BROKER_MODE: 'mosquitto' }), nowhere)).toBe('mosquitto');
  });
});
