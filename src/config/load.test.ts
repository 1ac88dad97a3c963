import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { ConfigError } from '../core/errors.js';
import { fileSinkEnabled, pubsubTopic } from '../sinks/registry.js';
import { isSecretKey, loadConfig, redactConfig, type LoadOptions } from './load.js';

const HOST = 'node-1.example';

function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'mqtt-ingest-config-'));
}

function writeTemp(name: string, content: string, dir = tempDir()): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  return file;
}

function load(env: Record<string, string>, opts: Omit<LoadOptions, 'env'> = {}) {
  return loadConfig({ hostname: HOST, ...opts, env });
}

/** The problems a load throws; fails the test when it does not throw a ConfigError. */
function problemsOf(env: Record<string, string>, opts: Omit<LoadOptions, 'env'> = {}): string[] {
  try {
    load(env, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig defaults', () => {
  it('gives every default, typed, with every source "default"', () => {
    const { config, warnings, sources } = load({});
    expect(config).toEqual({
      APP_ENV: 'dev',
      MQTT_BROKER_MODE: 'auto',
      MQTT_HOST: '0.0.0.0',
      MQTT_PORT: 1883,
      MQTT_TOPICS: ['#'],
      MQTT_CLIENT_ID: 'mqtt-ingest-node-1-example-dev',
      MQTT_PROTOCOL_VERSION: 5,
      MQTT_SESSION_EXPIRY_SECONDS: 604800,
      MQTT_KEEPALIVE_SECONDS: 30,
      MQTT_TLS_PORT: 8883,
      MQTT_TLS_REQUIRE_CLIENT_CERT: false,
      MQTT_PLAINTEXT: true, // dev
      MQTT_ALLOW_ANONYMOUS: true, // dev
      MQTT_ALLOW_INSECURE: false,
      MQTT_MAX_PACKET_BYTES: 1024 ** 2,
      MQTT_MAX_CONNECTIONS: 10000,
      MQTT_MAX_CONNECT_BYTES: 64 * 1024,
      MQTT_MAX_PARTIAL_BYTES: 256 * 1024 ** 2,
      MQTT_PARTIAL_PACKET_TIMEOUT_SECONDS: 60,
      MQTT_MAX_RETAINED_MESSAGES: 50000,
      MQTT_MAX_RETAINED_BYTES: 32 * 1024 ** 2,
      MQTT_MAX_QUEUED_MESSAGES: 1000,
      MQTT_MAX_SESSION_EXPIRY_SECONDS: 1_209_600,
      MOSQUITTO_BIN: 'mosquitto',
      PORT: 8080,
      HTTP_HOST: '0.0.0.0',
      DATA_DIR: './data',
      SPOOL_MAX_BYTES: 6 * 1024 ** 3,
      SPOOL_MIN_FREE_BYTES: 256 * 1024 ** 2,
      SPOOL_SYNC: 'full',
      SPOOL_ACCEPT_LOSS: false,
      PUBSUB_BATCH_MAX_MESSAGES: 1000,
      PUBSUB_BATCH_MAX_BYTES: 9_000_000,
      PUBSUB_MAX_IN_FLIGHT: 4,
      PUBSUB_ORDERING_KEY: 'none',
      BIGQUERY_LOCATION: 'US',
      BIGQUERY_AUTO_CREATE: true,
      BIGQUERY_BATCH_MAX_ROWS: 500,
      BIGQUERY_BATCH_MAX_BYTES: 9_000_000,
      BIGQUERY_MAX_IN_FLIGHT: 4,
      FILE_SINK: 'auto',
      FILE_SINK_DIR: path.join('data', 'out'),
      FILE_SINK_ROTATE_BYTES: 64 * 1024 ** 2,
      SPARKPLUG_REBIRTH: false,
      SPARKPLUG_BIRTH_WAIT_SECONDS: 30,
      RETRY_INITIAL_DELAY_MS: 500,
      RETRY_MAX_DELAY_MS: 30000,
      SHUTDOWN_TIMEOUT_MS: 8000,
      SOURCES_MAX: 10000,
      SILENT_AFTER_SECONDS: 600,
      LOG_LEVEL: 'info',
    });
    expect(warnings).toEqual([]);
    expect(new Set(Object.values(sources))).toEqual(new Set(['default']));
    expect(fileSinkEnabled(config)).toBe(true);
    expect(pubsubTopic(config)).toBeUndefined();
  });

  it('derives a stable client id from the host name and APP_ENV, never a random one', () => {
    const external = { MQTT_BROKER: 'mqtts://broker.example:8883' }; // prd's broker-security rules concern the node's own broker
    expect(load({ APP_ENV: 'PRD', ...external }, { hostname: 'ip-10.0.0.7_a' }).config.MQTT_CLIENT_ID).toBe('mqtt-ingest-ip-10-0-0-7_a-prd');
    expect(load({}).config.MQTT_CLIENT_ID).toBe(load({}).config.MQTT_CLIENT_ID);
    expect(load({ MQTT_CLIENT_ID: 'fixed' }).config.MQTT_CLIENT_ID).toBe('fixed');
  });

  it('ignores environment variables that are not keys, and treats empty ones as unset', () => {
    const { config, sources } = load({ PATH: '/bin', HOME: '/root', MQTT_PORT: '', CONFIG_FILE: '' });
    expect(config.MQTT_PORT).toBe(1883);
    expect(sources.MQTT_PORT).toBe('default');
  });
});

describe('loadConfig value reading', () => {
  it('reads booleans, enums in any case, byte sizes, topic lists and numbers with spaces', () => {
    const { config } = load({
      APP_ENV: 'PPRD',
      MQTT_BROKER: 'mqtts://broker.example:8883', // prd's broker-security rules concern the node's own broker
      LOG_LEVEL: 'Debug',
      FILE_SINK: 'ON',
      SPOOL_MAX_BYTES: '1.5 GB',
      FILE_SINK_ROTATE_BYTES: '2048',
      PUBSUB_BATCH_MAX_BYTES: '5MB',
      MQTT_TOPICS: ' a/+/c , $share/ingest/b/#,x//y ',
      MQTT_PORT: ' 1884 ',
      MQTT_PROTOCOL_VERSION: '4',
    });
    expect(config.APP_ENV).toBe('pprd');
    expect(config.LOG_LEVEL).toBe('debug');
    expect(config.FILE_SINK).toBe(true);
    expect(config.SPOOL_MAX_BYTES).toBe(1_500_000_000);
    expect(config.FILE_SINK_ROTATE_BYTES).toBe(2048);
    expect(config.PUBSUB_BATCH_MAX_BYTES).toBe(5_000_000);
    expect(config.MQTT_TOPICS).toEqual(['a/+/c', '$share/ingest/b/#', 'x//y']);
    expect(config.MQTT_PORT).toBe(1884);
    expect(config.MQTT_PROTOCOL_VERSION).toBe(4);
  });

  it('takes PUBSUB_EMULATOR_HOST with or without http://, as Google\'s client does, and keeps host:port', () => {
    expect(load({ PUBSUB_EMULATOR_HOST: 'localhost:8085' }).config.PUBSUB_EMULATOR_HOST).toBe('localhost:8085');
    expect(load({ PUBSUB_EMULATOR_HOST: 'http://127.0.0.1:8085/' }).config.PUBSUB_EMULATOR_HOST).toBe('127.0.0.1:8085');
    expect(load({ PUBSUB_EMULATOR_HOST: '[::1]:8085' }).config.PUBSUB_EMULATOR_HOST).toBe('[::1]:8085');
    expect(problemsOf({ PUBSUB_EMULATOR_HOST: 'host:99999' })).toEqual(['PUBSUB_EMULATOR_HOST: must be "host:port", got "host:99999"']);
  });

  it.each([
    ['true', true], ['False', false], ['on', true], ['OFF', false], ['1', true], ['0', false], ['yes', true], ['No', false], ['auto', 'auto'],
  ])('reads FILE_SINK=%s', (raw, expected) => {
    expect(load({ FILE_SINK: raw, PUBSUB_TOPIC: 'projects/p/topics/events' }).config.FILE_SINK).toBe(expected);
  });

  it('reports every bad value at once, naming the key and showing what was given', () => {
    const problems = problemsOf({
      APP_ENV: 'qa',
      MQTT_PORT: '70000',
      PORT: '80x',
      MQTT_KEEPALIVE_SECONDS: '1',
      MQTT_PROTOCOL_VERSION: '3',
      MQTT_BROKER: 'http://broker:1883',
      SPOOL_MAX_BYTES: '512KiB',
      PUBSUB_BATCH_MAX_BYTES: '10MB',
      FILE_SINK: 'maybe',
      PUBSUB_EMULATOR_HOST: 'localhost',
      PUBSUB_TOPIC: 'goog-reserved',
      LOG_LEVEL: 'loud',
      MQTT_TOPICS: 'a/#/b, ,c+,$share//x,$share/g/',
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'APP_ENV: must be one of "dev", "pprd" or "prd" (any case), got "qa"',
        'MQTT_PORT: must be a whole number from 1 to 65535, got "70000"',
        'PORT: must be a whole number from 0 to 65535, got "80x"',
        'MQTT_KEEPALIVE_SECONDS: must be a whole number from 5 to 65535, got "1"',
        'MQTT_PROTOCOL_VERSION: must be "4" (MQTT 3.1.1) or "5" (MQTT 5.0), got "3"',
        expect.stringMatching(/^MQTT_BROKER: must be a URL with scheme "mqtt", .*, got "http:\/\/broker:1883"$/),
        expect.stringMatching(/^SPOOL_MAX_BYTES: must be a byte size of at least 1 MiB \(.*KiB.*\), got "512KiB"$/),
        expect.stringMatching(/^PUBSUB_BATCH_MAX_BYTES: must be a byte size from 1 byte to 9000000 bytes .*, got "10MB"$/),
        'FILE_SINK: must be "auto" or a boolean (true/false, on/off, 1/0, yes/no, any case), got "maybe"',
        'PUBSUB_EMULATOR_HOST: must be "host:port", got "localhost"',
        expect.stringMatching(/^PUBSUB_TOPIC: must be a Pub\/Sub topic id.*, got "goog-reserved"$/),
        expect.stringMatching(/^LOG_LEVEL: must be one of .*, got "loud"$/),
        'MQTT_TOPICS: topic filter "a/#/b" uses "#" other than as the whole last level',
        'MQTT_TOPICS: entry 2 is empty',
        'MQTT_TOPICS: topic filter "c+" uses "+" other than as a whole level',
        expect.stringMatching(/^MQTT_TOPICS: topic filter "\$share\/\/x" has an invalid share name/),
        'MQTT_TOPICS: topic filter "$share/g/" needs a topic filter after $share/<group>/',
      ]),
    );
    expect(problems).toHaveLength(17);
  });

  it('reports a bad number once even when it breaks two checks', () => {
    expect(problemsOf({ MQTT_PORT: '-3' })).toEqual(['MQTT_PORT: must be a whole number from 1 to 65535, got "-3"']);
    expect(problemsOf({ MQTT_PORT: '1e3' })).toEqual(['MQTT_PORT: must be a whole number from 1 to 65535, got "1e3"']);
  });

  it('never shows a secret value, nor a password inside a broker URL', () => {
    const file = writeTemp('c.yaml', 'MQTT_PASSWORD: 123456\n');
    const problems = problemsOf({ MQTT_BROKER: 'ftp://user:s3cret@host' }, { file });
    expect(problems.join('\n')).not.toMatch(/123456|s3cret/);
    expect(problems).toContain(
      `MQTT_PASSWORD: must be text (quote it in YAML to make it text), got a secret value, not shown (in config file ${JSON.stringify(file)})`,
    );
  });
});

describe('loadConfig layers', () => {
  it('applies defaults < YAML file < environment and reports each source', () => {
    const file = writeTemp('c.yaml', 'MQTT_PORT: 1884\nPORT: "9090"\nFILE_SINK: off\nMQTT_TOPICS: [a/b, "c/#"]\nAPP_ENV: PRD\nLOG_LEVEL:\n');
    const external = { MQTT_BROKER: 'mqtts://broker.example:8883' }; // prd's broker-security rules concern the node's own broker
    const { config, sources } = load({ PORT: '9191', CONFIG_FILE: '/ignored-because-file-option-wins', ...external }, { file });
    expect(config.MQTT_PORT).toBe(1884);
    expect(config.PORT).toBe(9191);
    expect(config.FILE_SINK).toBe(false);
    expect(config.MQTT_TOPICS).toEqual(['a/b', 'c/#']);
    expect(config.APP_ENV).toBe('prd');
    expect(config.LOG_LEVEL).toBe('info'); // an empty YAML value is unset
    expect(sources).toMatchObject({ MQTT_PORT: 'file', PORT: 'env', FILE_SINK: 'file', LOG_LEVEL: 'default', MQTT_HOST: 'default' });
  });

  it('reads the file named by CONFIG_FILE when no file option is given', () => {
    const file = writeTemp('c.yaml', 'MQTT_PORT: 2883\n');
    expect(load({ CONFIG_FILE: file }).config.MQTT_PORT).toBe(2883);
  });

  it('rejects an unknown YAML key, suggesting the likely one, along with the other problems', () => {
    const file = writeTemp('c.yaml', 'MQTT_PROT: 1883\nmqtt_host: 0.0.0.0\nNOT_A_THING_AT_ALL: 1\nMQTT_PORT: 0\n');
    const problems = problemsOf({}, { file });
    const where = `in config file ${JSON.stringify(file)}`;
    expect(problems).toEqual([
      `MQTT_PROT: unknown key ${where}; did you mean MQTT_PORT?`,
      `mqtt_host: unknown key ${where}; did you mean MQTT_HOST?`,
      `NOT_A_THING_AT_ALL: unknown key ${where}`,
      `MQTT_PORT: must be a whole number from 1 to 65535, got 0 (${where})`,
    ]);
  });

  it('reports an unreadable, malformed or non-mapping file', () => {
    expect(problemsOf({}, { file: '/nonexistent/mqtt-ingest.yaml' })).toEqual([
      'config file "/nonexistent/mqtt-ingest.yaml": cannot read it (no such file)',
    ]);
    const bad = writeTemp('bad.yaml', 'MQTT_PORT: 1\nMQTT_PORT: 2\n');
    expect(problemsOf({}, { file: bad })[0]).toMatch(/^config file ".*bad\.yaml": line 2, column 1: .*unique/i);
    const list = writeTemp('list.yaml', '- MQTT_PORT\n');
    expect(problemsOf({}, { file: list })).toEqual([`config file ${JSON.stringify(list)}: must be a mapping of KEY: value lines, like the environment variables`]);
    expect(load({}, { file: writeTemp('empty.yaml', '# nothing yet\n') }).config.MQTT_PORT).toBe(1883);
  });
});

describe('NAME_FILE for secrets', () => {
  it('reads the value from the file, stripping one trailing newline', () => {
    const file = writeTemp('pw', 'p@ss word\n\n');
    const { config, sources } = load({ MQTT_PASSWORD_FILE: file });
    expect(config.MQTT_PASSWORD).toBe('p@ss word\n');
    expect(sources.MQTT_PASSWORD).toBe('env');
    expect(load({ MQTT_PASSWORD_FILE: writeTemp('pw', 'crlf\r\n') }).config.MQTT_PASSWORD).toBe('crlf');
  });

  it('resolves a relative path in the YAML file against the file\'s folder', () => {
    const dir = tempDir();
    writeTemp('password.txt', 'from-yaml\n', dir);
    const file = writeTemp('c.yaml', 'MQTT_PASSWORD_FILE: password.txt\n', dir);
    const { config, sources } = load({}, { file });
    expect(config.MQTT_PASSWORD).toBe('from-yaml');
    expect(sources.MQTT_PASSWORD).toBe('file');
  });

  it('reports both set, an unreadable file and an empty file, without the value', () => {
    const empty = writeTemp('empty', '\n');
    expect(problemsOf({ MQTT_PASSWORD: 'hunter2', MQTT_PASSWORD_FILE: empty })).toEqual([
      'MQTT_PASSWORD: both MQTT_PASSWORD and MQTT_PASSWORD_FILE are set; set only one',
    ]);
    expect(problemsOf({ MQTT_PASSWORD_FILE: '/nonexistent/pw' })).toEqual([
      'MQTT_PASSWORD_FILE: cannot read the file (no such file): "/nonexistent/pw"',
    ]);
    expect(problemsOf({ MQTT_PASSWORD_FILE: empty })).toEqual([`MQTT_PASSWORD_FILE: the file is empty: ${JSON.stringify(empty)}`]);
  });

  it('lets the environment\'s NAME_FILE override the file\'s NAME, and ignores NAME_FILE of non-secret keys', () => {
    const file = writeTemp('c.yaml', 'MQTT_PASSWORD: from-yaml\n');
    const pw = writeTemp('pw', 'from-env-file');
    expect(load({ MQTT_PASSWORD_FILE: pw }, { file }).config.MQTT_PASSWORD).toBe('from-env-file');
    expect(load({ MQTT_PORT_FILE: pw }).config.MQTT_PORT).toBe(1883);
    expect(problemsOf({}, { file: writeTemp('c.yaml', `MQTT_PORT_FILE: ${pw}\n`) })[0]).toMatch(/^MQTT_PORT_FILE: unknown key/);
  });
});

describe('redaction', () => {
  it('redacts secret values that are set and passwords inside URLs, keeping everything else', () => {
    const { config } = load({ MQTT_PASSWORD: 'hunter2', MQTT_USERNAME: 'ingest', MQTT_BROKER: 'mqtts://ingest:pw1@broker.example:8883' });
    const redacted = redactConfig(config);
    expect(redacted.MQTT_PASSWORD).toBe('[redacted]');
    expect(redacted.MQTT_USERNAME).toBe('ingest');
    expect(redacted.MQTT_BROKER).toBe('mqtts://ingest:[redacted]@broker.example:8883');
    expect(JSON.stringify(redacted)).not.toMatch(/hunter2|pw1/);
    expect(redactConfig(load({}).config).MQTT_PASSWORD).toBeUndefined();
  });

  it('knows which keys are secret', () => {
    expect(isSecretKey('MQTT_PASSWORD')).toBe(true);
    expect(isSecretKey('MQTT_USERNAME')).toBe(false);
    expect(isSecretKey('MQTT_PASSWORD_FILE')).toBe(false);
    expect(isSecretKey('NOT_A_KEY')).toBe(false);
  });
});

describe('rules across keys', () => {
  it('needs GCP_PROJECT_ID for a bare topic id, not for a full topic path', () => {
    expect(problemsOf({ PUBSUB_TOPIC: 'events' })).toEqual([
      'PUBSUB_TOPIC: "events" is a topic id without a project, and GCP_PROJECT_ID is unset; set GCP_PROJECT_ID or give the full path projects/PROJECT/topics/events',
    ]);
    const full = load({ PUBSUB_TOPIC: 'projects/other/topics/events' }).config;
    expect(pubsubTopic(full)).toEqual({ path: 'projects/other/topics/events', projectId: 'other' });
    expect(fileSinkEnabled(full)).toBe(false);
    expect(pubsubTopic(load({ PUBSUB_TOPIC: 'events', GCP_PROJECT_ID: 'my-proj' }).config)).toEqual({ path: 'projects/my-proj/topics/events', projectId: 'my-proj' });
    // The client works in GCP_PROJECT_ID; the path keeps naming the topic's own project.
    expect(pubsubTopic(load({ PUBSUB_TOPIC: 'projects/other/topics/events', GCP_PROJECT_ID: 'mine' }).config)).toEqual({
      path: 'projects/other/topics/events',
      projectId: 'mine',
    });
  });

  it('refuses a topic the Pub/Sub sink could not publish to, before the sink is built', () => {
    for (const topic of ['t1', 'projects/p/subscriptions/events', 'projects/p/topics/goog-x', 'projects//topics/events']) {
      expect(problemsOf({ GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: topic })).toEqual([
        expect.stringMatching(new RegExp(`^PUBSUB_TOPIC: must be a Pub/Sub topic id, or a path "projects/PROJECT/topics/TOPIC", got "${topic}"$`)),
      ]);
    }
  });

  it('rejects MQTT_BROKER_MODE=external without MQTT_BROKER, and MQTT_BROKER with a local broker mode', () => {
    expect(problemsOf({ MQTT_BROKER_MODE: 'external' })).toEqual([
      'MQTT_BROKER_MODE: is "external" but MQTT_BROKER is unset; set MQTT_BROKER to the broker\'s URL',
    ]);
    for (const mode of ['mosquitto', 'Embedded']) {
      const [problem] = problemsOf({ MQTT_BROKER_MODE: mode, MQTT_BROKER: 'mqtt://broker.example' });
      expect(problem).toMatch(/^MQTT_BROKER_MODE: is "(mosquitto|embedded)", .*MQTT_BROKER is set .*; unset one of the two$/);
    }
    expect(load({ MQTT_BROKER_MODE: 'external', MQTT_BROKER: 'mqtt://127.0.0.1' }).warnings).toEqual([]);
  });

  it.each(['mqtt://localhost:1883', 'tcp://127.0.0.1', 'mqtt://[::1]:1883', 'ws://sub.localhost/mqtt'])(
    'warns, without failing, when MQTT_BROKER=%s is a loopback address in auto mode',
    (url) => {
      const { warnings } = load({ MQTT_BROKER: url });
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/^MQTT_BROKER: .* points at this host.*leave it unset/);
    },
  );

  it('warns when FILE_SINK is off and no cloud sink is configured', () => {
    expect(load({ FILE_SINK: 'off' }).warnings).toEqual([
      'FILE_SINK: is off and no cloud sink is configured (PUBSUB_TOPIC and BIGQUERY_DATASET/BIGQUERY_TABLE are unset): the node will only spool and count messages',
    ]);
    expect(fileSinkEnabled(load({ FILE_SINK: 'off' }).config)).toBe(false);
    expect(load({ FILE_SINK: 'off', PUBSUB_TOPIC: 'events', GCP_PROJECT_ID: 'p' }).warnings).toEqual([]);
  });

  it('needs RETRY_MAX_DELAY_MS >= RETRY_INITIAL_DELAY_MS, reported with the other problems', () => {
    expect(problemsOf({ RETRY_INITIAL_DELAY_MS: '5000', RETRY_MAX_DELAY_MS: '100', MQTT_PORT: '0', PUBSUB_TOPIC: 'events' })).toEqual([
      'MQTT_PORT: must be a whole number from 1 to 65535, got "0"',
      expect.stringMatching(/^PUBSUB_TOPIC: "events" is a topic id without a project/),
      'RETRY_MAX_DELAY_MS: must be at least RETRY_INITIAL_DELAY_MS (5000), got 100',
    ]);
  });

  it('skips a rule whose keys are already invalid, so one mistake is reported once', () => {
    expect(problemsOf({ RETRY_INITIAL_DELAY_MS: 'soon', RETRY_MAX_DELAY_MS: '100' })).toHaveLength(1);
  });
});
