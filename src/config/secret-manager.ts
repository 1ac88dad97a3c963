/**
 * Google access at `run`: where `sm://` references are resolved (secrets.ts), and the credentials file Google's
 * client libraries read for them and for the cloud sinks.
 */
import { readFileSync, statSync } from 'node:fs';
import { text } from '../core/settings/fields.js';
import { key } from '../core/settings/key.js';
import type { Rules, Section, Values } from '../core/settings/section.js';
import { fsReason, isUnset, quote } from '../core/settings/text.js';
import { hasCloudSink, type CloudSinkSwitches } from '../sinks/file/config.js';

const secretManagerKeys = {
  SECRET_MANAGER_API_ENDPOINT: key(
    text('an `http://` or `https://` URL without a path (e.g. `https://secretmanager.europe-west1.rep.googleapis.com`)', {
      test: (v) => /^https?:\/\/[^\s/?#]+\/?$/.test(v),
      envType: 'url',
    }),
    {
      description:
        'Where `run` resolves `sm://` references (see docs/operations.md). Unset: Google\'s global endpoint. An ' +
        '`https://` URL names a regional endpoint; an `http://` URL is a local stand-in, called without credentials.',
    },
  ),
};

export type SecretManagerConfig = Values<typeof secretManagerKeys>;

/**
 * GOOGLE_APPLICATION_CREDENTIALS is read by Google's client libraries, not by the schema: a path that names no
 * readable credentials file would only show as failing sinks once the node runs.
 */
const checkGoogleCredentials: Rules<CloudSinkSwitches> = (c, valid, problems, warnings, { env, usesSecretManager, credentialsAtRun }) => {
  const file = env.GOOGLE_APPLICATION_CREDENTIALS;
  if (isUnset(file) || typeof file !== 'string') return;
  let why: string | undefined;
  try {
    const st = statSync(file);
    if (!st.isFile()) why = 'is not a file';
    else {
      const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { type?: unknown }).type !== 'string') {
        why = 'is not a Google credentials file (a JSON object with a "type")';
      }
    }
  } catch (err) {
    why = err instanceof SyntaxError ? 'is not a Google credentials file (not JSON)' : `cannot be read (${fsReason(err)})`;
  }
  if (why === undefined) return;
  const used = usesSecretManager || (valid('PUBSUB_TOPIC', 'BIGQUERY_DATASET', 'BIGQUERY_TABLE') && hasCloudSink(c as CloudSinkSwitches));
  const message =
    `GOOGLE_APPLICATION_CREDENTIALS: ${quote(file)} ${why}; point it at a service account key file, or unset it to use ` +
    'the attached service account (App Engine, GKE Workload Identity) or `gcloud auth application-default login`';
  if (used && credentialsAtRun) warnings.push(`${message}; until then the cloud sinks fail and messages wait in the spool`);
  else if (used) problems.push(message);
  else warnings.push(`${message} (no cloud sink or sm:// reference uses it yet)`);
};

export const secretManagerSection = {
  keys: secretManagerKeys,
  rules: checkGoogleCredentials,
} satisfies Section<SecretManagerConfig & CloudSinkSwitches>;
