/**
 * Resolves Secret Manager references (`sm://projects/P/secrets/S/versions/V`, see secret-ref.ts) when `run` starts.
 *
 * - A secret key (MQTT_PASSWORD) gets the secret's value, with one trailing newline dropped, as NAME_FILE does.
 * - A file key (a certificate, a password file) gets the path of a file holding the secret's bytes unchanged, in a
 *   private folder (0700, files 0600) that is removed when the node stops.
 * Then the configuration is loaded again with those values, so every check of the schema runs on the real content.
 * Values are never logged: the log names the key, the reference and the version that was read.
 *
 * The client uses the REST transport (`fallback: true`) in production too: a handful of calls at start gain
 * nothing from gRPC, and the tests' local stand-in of the Secret Manager API then exercises the same code path.
 */
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { PassThroughClient, type AuthClient } from 'google-auth-library';
import { crc32c } from '../core/crc32c.js';
import { ConfigError, IngestError, withCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { loadConfig, type LoadResult } from './load.js';
import { keyMeta, type ConfigKey } from './schema.js';
import { formatSecretRef, type SecretRef } from './secret-ref.js';
import { waitNoticeMs } from '../deploy/waiting.js';

type ClientOptions = ConstructorParameters<typeof SecretManagerServiceClient>[0];

/** One secret version as read: the bytes and the version's full name (`latest` names a number here). */
export interface SecretPayload {
  data: Buffer;
  versionName: string;
}

export interface SecretAccessor {
  access(ref: SecretRef): Promise<SecretPayload>;
  close(): Promise<void>;
}

/**
 * A Secret Manager client. `endpoint` (SECRET_MANAGER_API_ENDPOINT): an https URL is a regional endpoint, used
 * with Application Default Credentials; an http URL is a local stand-in, called without credentials unless
 * `authClient` is given (provision's check as the node's service account passes one).
 */
export function createSecretManagerClient(endpoint?: string, authClient?: AuthClient): SecretManagerServiceClient {
  // google-gax carries its own copy of google-auth-library, whose class types differ from ours in name only.
  const auth = (a: AuthClient | PassThroughClient) => ({ authClient: a as unknown as NonNullable<ClientOptions>['authClient'] });
  if (!endpoint) return new SecretManagerServiceClient({ fallback: true, ...(authClient ? auth(authClient) : {}) });
  const url = new URL(endpoint);
  const insecure = url.protocol === 'http:';
  return new SecretManagerServiceClient({
    fallback: true,
    apiEndpoint: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: Number(url.port || (insecure ? 80 : 443)),
    protocol: insecure ? 'http' : 'https',
    // Given credentials are used as given; otherwise a plain-http stand-in gets none (no token in clear text).
    ...(authClient ? auth(authClient) : insecure ? auth(new PassThroughClient()) : {}),
  });
}

export function secretManagerAccessor(endpoint?: string): SecretAccessor {
  const client = createSecretManagerClient(endpoint);
  return {
    async access(ref) {
      const [version] = await client.accessSecretVersion({ name: ref.name }, { timeout: 30_000 });
      const data = Buffer.from(version.payload?.data ?? new Uint8Array());
      // The API sends a CRC32C of the payload so a client can tell a damaged one (cloud.google.com/secret-manager/docs/data-integrity).
      const expected = version.payload?.dataCrc32c;
      if (expected !== undefined && expected !== null && BigInt(String(expected)) !== BigInt(crc32c(data))) {
        throw new IngestError('SECRET_UNAVAILABLE', 'the payload does not match its CRC32C checksum (damaged in transit)');
      }
      return { data, versionName: version.name ?? ref.name };
    },
    close: () => client.close(),
  };
}

/** What resolving gives: environment values to load the configuration with, and the private folder to remove. */
export interface ResolvedSecrets {
  /** KEY → value (secret keys) or file path (file keys). */
  values: Partial<Record<ConfigKey, string>>;
  dir: string | undefined;
  cleanup(): void;
}

/**
 * Fetches every reference at once and reports every failure together (fail loudly, listing everything).
 * `tmpRoot` is where the private folder for file keys is made (os.tmpdir() unless given).
 */
export async function resolveSecretRefs(
  refs: Partial<Record<ConfigKey, SecretRef>>,
  opts: { accessor: SecretAccessor; logger?: Logger; tmpRoot?: string },
): Promise<ResolvedSecrets> {
  const entries = Object.entries(refs) as [ConfigKey, SecretRef][];
  const results = await Promise.allSettled(entries.map(([, ref]) => opts.accessor.access(ref)));
  const problems: string[] = [];
  results.forEach((r, i) => {
    const [name, ref] = entries[i]!;
    if (r.status === 'rejected') problems.push(`${name}: cannot read ${formatSecretRef(ref)}: ${describeAccessError(r.reason, ref)}`);
    else if (r.value.data.length === 0) problems.push(`${name}: ${formatSecretRef(ref)} is empty`);
  });
  if (problems.length > 0) {
    throw new IngestError('SECRET_UNAVAILABLE', `cannot resolve Secret Manager references:\n${problems.map((p) => `  - ${p}`).join('\n')}`, {
      context: { problems },
    });
  }

  const values: Partial<Record<ConfigKey, string>> = {};
  let dir: string | undefined;
  const cleanup = () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    results.forEach((r, i) => {
      const [name, ref] = entries[i]!;
      const payload = (r as PromiseFulfilledResult<SecretPayload>).value;
      if (keyMeta(name).file) {
        // mkdtemp makes the folder 0700; chmod again in case a umask or an odd tmpfs left it wider.
        dir ??= mkdtempSync(path.join(opts.tmpRoot ?? os.tmpdir(), 'mqtt-ingest-secrets-'));
        chmodSync(dir, 0o700);
        const file = path.join(dir, name.toLowerCase());
        writeFileSync(file, payload.data, { mode: 0o600, flag: 'wx' });
        values[name] = file;
      } else {
        values[name] = payload.data.toString('utf8').replace(/\r?\n$/, '');
      }
      opts.logger?.info(withCode('SECRET_RESOLVED', { key: name, reference: formatSecretRef(ref), version: payload.versionName }), 'secret resolved');
    });
  } catch (err) {
    cleanup();
    throw err;
  }
  return { values, dir, cleanup };
}

/** The API's answer in words an operator can act on; never a value. */
function describeAccessError(err: unknown, ref: SecretRef): string {
  const e = err as { code?: number | string; message?: string };
  const code = typeof e.code === 'string' ? e.code : e.code;
  // The REST transport reports HTTP statuses, gRPC its own codes: both are mapped.
  if (code === 5 || code === 404) return 'the secret or that version does not exist';
  if (code === 7 || code === 403) return `permission denied: the node's service account needs secretmanager.versions.access on ${ref.secretName} (roles/secretmanager.secretAccessor)`;
  if (code === 9 || code === 400) return 'the version is disabled or destroyed';
  if (code === 16 || code === 401) return 'no valid credentials (Application Default Credentials)';
  const message = (e.message ?? String(err)).split('\n')[0]!;
  return message.length > 200 ? `${message.slice(0, 197)}...` : message;
}

/**
 * For `run`: when the loaded configuration holds references, resolve them and load the configuration again with
 * the values (an environment override, so they win over the file layer too). Returns the configuration to run
 * with and the clean-up to call at exit.
 */
export async function resolveConfigSecrets(
  loaded: LoadResult,
  opts: { env: NodeJS.ProcessEnv; file?: string; logger?: Logger; accessor?: SecretAccessor; tmpRoot?: string },
): Promise<{ loaded: LoadResult; cleanup: () => void }> {
  if (Object.keys(loaded.secretRefs).length === 0) return { loaded, cleanup: () => undefined };
  const accessor = opts.accessor ?? secretManagerAccessor(loaded.config.SECRET_MANAGER_API_ENDPOINT);
  let resolved: ResolvedSecrets;
  // Each read may take up to its 30 s deadline: say what the start waits for rather than sitting silent.
  const endpoint = loaded.config.SECRET_MANAGER_API_ENDPOINT ?? 'secretmanager.googleapis.com';
  const count = Object.keys(loaded.secretRefs).length;
  const started = Date.now();
  const notice = setInterval(() => {
    const s = Math.round((Date.now() - started) / 1000);
    opts.logger?.warn(withCode('SECRET_MANAGER_SLOW', { endpoint, references: count }), `still waiting for Secret Manager at ${endpoint} (${count} sm:// references) after ${s} s…`);
  }, waitNoticeMs(opts.env));
  notice.unref();
  try {
    resolved = await resolveSecretRefs(loaded.secretRefs, { accessor, logger: opts.logger, tmpRoot: opts.tmpRoot });
  } finally {
    clearInterval(notice);
    await accessor.close().catch(() => undefined);
  }
  const env: NodeJS.ProcessEnv = { ...opts.env };
  for (const [name, value] of Object.entries(resolved.values)) {
    delete env[`${name}_FILE`]; // NAME_FILE=sm://… was the reference; the value now comes as NAME
    env[name] = value;
  }
  try {
    const again = loadConfig({ env, file: opts.file, credentialsAtRun: true });
    if (Object.keys(again.secretRefs).length > 0) {
      // A secret whose value is itself a reference: refused rather than followed (no chains, no loops).
      throw new ConfigError(Object.keys(again.secretRefs).map((k) => `${k}: the secret's value is itself a Secret Manager reference`));
    }
    return { loaded: again, cleanup: resolved.cleanup };
  } catch (err) {
    resolved.cleanup();
    throw err;
  }
}
