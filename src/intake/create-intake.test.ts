import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.js';
import { Metrics } from '../core/metrics.js';
import type { SpoolWriter } from '../spool/group-commit.js';
import { captureLogs } from '../../test/helpers/log-capture.js';
import { createIntake, resolveBrokerMode } from './create-intake.js';
import type { IntakeDeps } from './intake.js';

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

describe('createIntake', () => {
  function deps(env: Record<string, string>): { deps: IntakeDeps; lines: Record<string, unknown>[] } {
    const { logger, lines } = captureLogs();
    const meta = { getMeta: () => undefined, setMeta: () => undefined, deleteMeta: () => undefined, metaKeys: () => [] };
    const c = config(env);
    const d: IntakeDeps = { config: c, dataDir: c.DATA_DIR, writer: {} as SpoolWriter, meta, logger, metrics: new Metrics(), onCommitted: () => undefined, onFatal: () => undefined };
    return { deps: d, lines };
  }

  it('says that MQTT_SHARE_GROUP is ignored when auto falls back to the embedded broker', () => {
    const shared = deps({ MQTT_SHARE_GROUP: 'ingest' });
    expect(createIntake(resolveBrokerMode(shared.deps.config, () => undefined), shared.deps).mode).toBe('embedded');
    expect(shared.lines).toEqual([
      expect.objectContaining({ code: 'CONFIG_WARNING', MQTT_SHARE_GROUP: 'ingest', message: expect.stringMatching(/^MQTT_SHARE_GROUP is ignored: .*embedded broker/) }),
    ]);
    const alone = deps({});
    createIntake('embedded', alone.deps);
    expect(alone.lines).toEqual([]);
  });
});
