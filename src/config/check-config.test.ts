import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { parse } from 'yaml';
import { checkConfig } from '../cli/check-config.js';
import { loadConfig } from './load.js';

function run(env: Record<string, string>, file?: string) {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: { write: (s: string) => ((stdout += s), true) },
    stderr: { write: (s: string) => ((stderr += s), true) },
  };
  const code = checkConfig({ env, file, hostname: 'h' }, io);
  return { code, stdout, stderr };
}

describe('check-config', () => {
  it('prints the effective configuration as YAML with sources, secrets redacted, and exits 0', () => {
    const { code, stdout, stderr } = run({ MQTT_PASSWORD: 'hunter2', MQTT_PORT: '1884', FILE_SINK: 'no' });
    expect(code).toBe(0);
    expect(stdout).not.toContain('hunter2');
    expect(stdout).toMatch(/^MQTT_PASSWORD: "\[redacted\]" # env$/m);
    expect(stdout).toMatch(/^MQTT_PORT: 1884 # env$/m);
    expect(stdout).toMatch(/^MQTT_HOST: 0\.0\.0\.0 # default$/m);
    expect(stdout).toMatch(/^MQTT_CLIENT_ID: mqtt-ingest-h-dev # derived$/m);
    expect(stdout).toMatch(/^MQTT_BROKER: null # unset$/m);
    expect(stderr).toMatch(/^warning: FILE_SINK: is off/m);
  });

  it('prints a file that loads back as the same configuration', () => {
    const { stdout } = run({ MQTT_TOPICS: 'a/+, $share/g/b/#', SPOOL_MAX_BYTES: '2GiB' });
    const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-ingest-check-'));
    const file = path.join(dir, 'effective.yaml');
    writeFileSync(file, stdout);
    expect(parse(stdout).MQTT_TOPICS).toEqual(['a/+', '$share/g/b/#']);
    expect(loadConfig({ env: {}, file, hostname: 'h' }).config).toEqual(
      loadConfig({ env: { MQTT_TOPICS: 'a/+, $share/g/b/#', SPOOL_MAX_BYTES: '2GiB' }, hostname: 'h' }).config,
    );
  });

  it('lists every problem on stderr and exits 1', () => {
    const { code, stdout, stderr } = run({ MQTT_PORT: 'x', MQTT_PASSWORD: 'hunter2', MQTT_PASSWORD_FILE: '/nonexistent' });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      'invalid configuration:\n' +
        '  - MQTT_PASSWORD: both MQTT_PASSWORD and MQTT_PASSWORD_FILE are set; set only one\n' +
        '  - MQTT_PORT: must be a whole number from 1 to 65535, got "x"\n',
    );
  });
});
