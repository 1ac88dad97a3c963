/**
 * What a new user's configuration mistakes now get: a warning or a problem naming the variable, instead of a
 * node that starts and does something else (typos, names of the old deployment, data in the wrong region, a
 * DATA_DIR that cannot hold the spool, credentials sent in clear, follow-on errors of one mistake).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../core/errors.js';
import { loadConfig } from './load.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'mqtt-ingest-hardening-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The problems of a configuration ([] when valid) and its warnings. */
function judge(env: Record<string, string>): { problems: string[]; warnings: string[] } {
  try {
    return { problems: [], warnings: loadConfig({ env: { DATA_DIR: scratch, ...env }, hostname: 'h' }).warnings };
  } catch (err) {
    if (err instanceof ConfigError) return { problems: err.problems, warnings: [] };
    throw err;
  }
}

/** prd with an external TLS broker, so that the rules of the node's own broker are not what these tests meet. */
const PRD_BROKER = { APP_ENV: 'prd', MQTT_BROKER: 'mqtts://broker.plant.local:8883' };

describe('environment variables the node does not know', () => {
  it("names the old deployment's MQTT_TOPIC with its own message: it is not read, MQTT_TOPICS is", () => {
    const { problems, warnings } = judge({ MQTT_TOPIC: 'plant/#' });
    expect(problems).toEqual([]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^MQTT_TOPIC: is the old deployment's name .* not read .*MQTT_TOPICS/);
  });

  it('suggests the nearest known name for a typo with one of the prefixes', () => {
    const { warnings } = judge({ PUBSUB_TOPICS: 'sensors', SPOOL_MAX_BYTE: '1GiB', HTTP_HOTS: '127.0.0.1' });
    expect(warnings).toContain('PUBSUB_TOPICS: unknown environment variable, not read; did you mean PUBSUB_TOPIC?');
    expect(warnings).toContain('SPOOL_MAX_BYTE: unknown environment variable, not read; did you mean SPOOL_MAX_BYTES?');
    expect(warnings).toContain('HTTP_HOTS: unknown environment variable, not read; did you mean HTTP_HOST?');
  });

  it('says that NAME_FILE works for secret keys only', () => {
    const { warnings } = judge({ MQTT_USERNAME_FILE: '/run/secrets/user' });
    expect(warnings).toEqual(['MQTT_USERNAME_FILE: is not read: only secret keys may be given as NAME_FILE; set MQTT_USERNAME itself']);
  });

  it('leaves alone known keys, NAME_FILE of a secret, empty values and variables of other programs', () => {
    const secret = path.join(scratch, 'pw');
    writeFileSync(secret, 'pw\n');
    const { problems, warnings } = judge({
      MQTT_PORT: '1884',
      MQTT_PASSWORD_FILE: secret,
      MQTT_TOPIC: '', // an empty variable counts as unset, as for known keys
      HOME: '/root',
      MQTTX_THEME: 'dark',
      GOOGLE_CLOUD_PROJECT: 'x',
    });
    expect(problems).toEqual([]);
    expect(warnings).toEqual([]);
  });
});

describe('BIGQUERY_LOCATION', () => {
  const bigquery = { GCP_PROJECT_ID: 'p', BIGQUERY_DATASET: 'd', BIGQUERY_TABLE: 't' };

  it.each(['pprd', 'prd'])('%s: must be given explicitly while the BigQuery sink is on', (env) => {
    const { problems } = judge({ ...PRD_BROKER, APP_ENV: env, ...bigquery });
    expect(problems).toEqual([expect.stringMatching(new RegExp(`^BIGQUERY_LOCATION: must be set explicitly in ${env} .*United States`))]);
    expect(judge({ ...PRD_BROKER, APP_ENV: env, ...bigquery, BIGQUERY_LOCATION: 'europe-west1' }).problems).toEqual([]);
    // Given explicitly, even US is a choice, not a default.
    expect(judge({ ...PRD_BROKER, APP_ENV: env, ...bigquery, BIGQUERY_LOCATION: 'US' }).problems).toEqual([]);
  });

  it('is not required in dev, nor in prd without the BigQuery sink', () => {
    expect(judge(bigquery)).toEqual({ problems: [], warnings: [] });
    expect(judge({ ...PRD_BROKER, GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'topic-1' })).toEqual({ problems: [], warnings: [] });
  });
});

describe('prd without a cloud sink', () => {
  it('warns that the NDJSON files go to a disk App Engine discards', () => {
    const { problems, warnings } = judge(PRD_BROKER);
    expect(problems).toEqual([]);
    expect(warnings.filter((w) => w.includes('no cloud sink is configured in prd'))).toHaveLength(1);
    expect(warnings.join('\n')).toMatch(/App Engine discards/);
  });

  it('says nothing of it in dev, or in prd with a cloud sink', () => {
    expect(judge({}).warnings).toEqual([]);
    expect(judge({ ...PRD_BROKER, GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'topic-1' }).warnings.join('\n')).not.toMatch(/no cloud sink/);
  });
});

describe('DATA_DIR', () => {
  it('a regular file is refused, naming DATA_DIR and the path', () => {
    const file = path.join(scratch, 'not-a-dir');
    writeFileSync(file, '');
    expect(judge({ DATA_DIR: file }).problems).toEqual([`DATA_DIR: ${JSON.stringify(file)} is a file, not a directory; DATA_DIR holds the spool and must be a directory the node can write`]);
    expect(judge({ DATA_DIR: path.join(file, 'below') }).problems).toEqual([expect.stringContaining(`cannot be created: ${JSON.stringify(file)} is a file`)]);
  });

  it('a folder that does not exist yet but can be created is fine', () => {
    expect(judge({ DATA_DIR: path.join(scratch, 'new', 'deeper') }).problems).toEqual([]);
  });

  it('a folder that cannot be written is refused: read-only file system (as root) or no write permission', () => {
    const dir = path.join(scratch, 'locked');
    mkdirSync(dir);
    const root = process.getuid?.() === 0;
    if (root) execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', dir]);
    else execFileSync('chmod', ['0555', dir]);
    try {
      const { problems } = judge({ DATA_DIR: path.join(dir, 'data') });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(root ? /^DATA_DIR: .* cannot be written: .* is on a read-only file system/ : /^DATA_DIR: .* is not writable by this user/);
      expect(problems[0]).toContain(dir);
    } finally {
      if (root) execFileSync('umount', [dir]);
      else execFileSync('chmod', ['0755', dir]);
    }
  });

  it('FILE_SINK_DIR is checked the same way while the file sink is on', () => {
    const file = path.join(scratch, 'also-a-file');
    writeFileSync(file, '');
    expect(judge({ FILE_SINK_DIR: file }).problems).toEqual([expect.stringMatching(/^FILE_SINK_DIR: .* is a file, not a directory/)]);
    expect(judge({ FILE_SINK_DIR: file, FILE_SINK: 'off' }).problems).toEqual([]);
  });
});

describe('GOOGLE_APPLICATION_CREDENTIALS', () => {
  const pubsub = { GCP_PROJECT_ID: 'p', PUBSUB_TOPIC: 'topic-1' };

  it('naming no readable file is refused while a cloud sink uses it, naming the variable', () => {
    const missing = path.join(scratch, 'no-such-key.json');
    const { problems } = judge({ ...pubsub, GOOGLE_APPLICATION_CREDENTIALS: missing });
    expect(problems).toEqual([expect.stringMatching(new RegExp(`^GOOGLE_APPLICATION_CREDENTIALS: ${JSON.stringify(missing).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be read \\(no such file\\)`))]);
    expect(problems[0]).toContain('gcloud auth application-default login');
  });

  it('a file that is not a credentials file is refused; a well-formed one passes', () => {
    const notJson = path.join(scratch, 'key.txt');
    writeFileSync(notJson, 'hello');
    expect(judge({ ...pubsub, GOOGLE_APPLICATION_CREDENTIALS: notJson }).problems).toEqual([expect.stringContaining('is not a Google credentials file (not JSON)')]);
    expect(judge({ ...pubsub, GOOGLE_APPLICATION_CREDENTIALS: scratch }).problems).toEqual([expect.stringContaining('is not a file')]);
    const good = path.join(scratch, 'key.json');
    writeFileSync(good, JSON.stringify({ type: 'service_account', client_email: 'a@b', private_key: 'not checked offline' }));
    expect(judge({ ...pubsub, GOOGLE_APPLICATION_CREDENTIALS: good }).problems).toEqual([]);
  });

  it('run starts with a warning instead: the sinks show the missing credentials and deliver once the file appears', () => {
    const missing = path.join(scratch, 'later.json');
    const { warnings } = loadConfig({ env: { DATA_DIR: scratch, ...pubsub, GOOGLE_APPLICATION_CREDENTIALS: missing }, hostname: 'h', credentialsAtRun: true });
    expect(warnings).toEqual([expect.stringMatching(/^GOOGLE_APPLICATION_CREDENTIALS: .* cannot be read \(no such file\).*until then the cloud sinks fail and messages wait in the spool$/)]);
  });

  it('without a cloud sink it is a warning: nothing would use it', () => {
    const { problems, warnings } = judge({ GOOGLE_APPLICATION_CREDENTIALS: path.join(scratch, 'gone.json') });
    expect(problems).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/^GOOGLE_APPLICATION_CREDENTIALS: .* \(no cloud sink or sm:\/\/ reference uses it yet\)$/)]);
  });
});

describe('an external broker over plaintext with credentials', () => {
  const external = { MQTT_BROKER: 'mqtt://broker.plant.local:1883', MQTT_USERNAME: 'ingest', MQTT_PASSWORD: 'pw' };

  it.each(['pprd', 'prd'])('%s: refused unless MQTT_ALLOW_INSECURE', (env) => {
    const { problems } = judge({ APP_ENV: env, ...external });
    expect(problems).toEqual([
      `MQTT_BROKER: mqtt:// is plaintext, so the subscriber's credentials (MQTT_USERNAME, MQTT_PASSWORD) would cross the network in clear in ${env}; use mqtts:// or wss://, or set MQTT_ALLOW_INSECURE=true to accept the risk`,
    ]);
    const allowed = judge({ APP_ENV: env, ...external, MQTT_ALLOW_INSECURE: 'true' });
    expect(allowed.problems).toEqual([]);
    expect(allowed.warnings.filter((w) => w.startsWith('MQTT_BROKER:'))).toEqual([
      expect.stringMatching(/^MQTT_BROKER: mqtt:\/\/ is plaintext.*\(allowed by MQTT_ALLOW_INSECURE=true\)$/),
    ]);
  });

  it('a password inside the URL counts; TLS, or no credentials at all, is fine', () => {
    expect(judge({ APP_ENV: 'prd', MQTT_BROKER: 'ws://u:secret@broker.plant.local/mqtt' }).problems).toEqual([expect.stringContaining('(a password in the URL)')]);
    expect(judge({ APP_ENV: 'prd', ...external, MQTT_BROKER: 'mqtts://broker.plant.local:8883' }).problems).toEqual([]);
    expect(judge({ APP_ENV: 'prd', MQTT_BROKER: 'mqtt://broker.plant.local:1883' }).problems).toEqual([]);
  });

  it('dev: a warning', () => {
    const { problems, warnings } = judge(external);
    expect(problems).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/^MQTT_BROKER: mqtt:\/\/ is plaintext.*use mqtts:\/\/ or wss:\/\/ outside dev$/)]);
  });
});

describe('one mistake, one problem', () => {
  it('APP_ENV=qa is reported alone, without the follow-on MQTT_PLAINTEXT and MQTT_ALLOW_ANONYMOUS errors', () => {
    expect(judge({ APP_ENV: 'qa' }).problems).toEqual(['APP_ENV: must be one of "dev", "pprd" or "prd" (any case), got "qa"']);
  });

  it('the derived keys are still checked when they are given', () => {
    const { problems } = judge({ APP_ENV: 'qa', MQTT_PLAINTEXT: 'off' });
    expect(problems[0]).toMatch(/^APP_ENV:/);
    expect(problems.some((p) => p.startsWith('MQTT_PLAINTEXT: is off and no other listener'))).toBe(true);
  });
});

describe('SPOOL_ACCEPT_LOSS', () => {
  it('is warned about while it is on: it is meant for one start', () => {
    expect(judge({ SPOOL_ACCEPT_LOSS: 'true' }).warnings).toEqual([expect.stringMatching(/^SPOOL_ACCEPT_LOSS: is on, .*set it back to false/)]);
    expect(judge({ SPOOL_ACCEPT_LOSS: 'false' }).warnings).toEqual([]);
  });
});
