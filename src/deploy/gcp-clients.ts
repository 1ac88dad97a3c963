/**
 * Google Cloud clients for the operations commands (`provision`, `smoke`), made from the same configuration keys
 * the node uses, so an emulator or a local stand-in set there is honoured the same way.
 */
import { BigQuery, type BigQueryOptions } from '@google-cloud/bigquery';
import { PubSub } from '@google-cloud/pubsub';
import { GoogleAuth, Impersonated, PassThroughClient, type AuthClient } from 'google-auth-library';
import { baseUrlOf, DEFAULT_API_ENDPOINT } from '../sinks/bigquery/bigquery-sink.js';
import type { BigQueryConfig } from '../sinks/bigquery/config.js';

export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

/**
 * The client libraries carry copies of google-auth-library of their own versions; an AuthClient from ours is
 * the same class in all but name, so it is passed through this one cast.
 */
type AnyAuth = AuthClient | PassThroughClient;
function asLibraryAuth<T>(auth: AnyAuth): T {
  return auth as unknown as T;
}

export function pubsubClient(projectId: string, opts: { emulatorHost?: string; authClient?: AnyAuth } = {}): PubSub {
  if (opts.emulatorHost) return new PubSub({ projectId, apiEndpoint: opts.emulatorHost, emulatorMode: true });
  return new PubSub({ projectId, ...(opts.authClient ? { authClient: asLibraryAuth(opts.authClient) } : {}) });
}

export function bigqueryClient(
  config: Pick<BigQueryConfig, 'BIGQUERY_API_ENDPOINT' | 'BIGQUERY_EMULATOR_HOST' | 'BIGQUERY_LOCATION'>,
  projectId: string,
  authClient?: AnyAuth,
): BigQuery {
  const endpoints = { apiEndpoint: config.BIGQUERY_API_ENDPOINT, emulatorHost: config.BIGQUERY_EMULATOR_HOST };
  const baseUrl = baseUrlOf(endpoints);
  const options: BigQueryOptions = {
    projectId,
    location: config.BIGQUERY_LOCATION,
    apiEndpoint: endpoints.emulatorHost ? undefined : (endpoints.apiEndpoint ?? DEFAULT_API_ENDPOINT),
  };
  // Given credentials are used as given. Otherwise a plain-http endpoint (a local server or an emulator) gets
  // none: no token may travel there in clear text.
  if (authClient) options.authClient = asLibraryAuth(authClient);
  else if (baseUrl.startsWith('http://')) options.authClient = asLibraryAuth(new PassThroughClient());
  const client = new BigQuery(options);
  // As the sink does: the configuration decides the base URL, not a BIGQUERY_EMULATOR_HOST left in process.env.
  client.baseUrl = baseUrl;
  return client;
}

/** Where the credentials lookup can wait: Google's library asks the metadata server when no ADC file is found. */
export const METADATA_SERVER = { name: 'the metadata server', at: '169.254.169.254', port: 80 } as const;

/** What is wrong with the caller's credentials, and the fix in words. */
export interface CredentialsProblem {
  problem: string;
  fix: string;
}

const ATTACHED = 'run where a service account is attached (Compute Engine, GKE, App Engine, Cloud Run, Cloud Shell)';

/**
 * Why the caller has no usable Application Default Credentials; undefined when it has. Asked before any
 * client is made: without it, the client libraries fail the first call with a stack trace and throw the same
 * error again, unhandled, from inside their channel set-up.
 */
export async function credentialsProblem(env: NodeJS.ProcessEnv = process.env): Promise<CredentialsProblem | undefined> {
  try {
    await new GoogleAuth({ scopes: [CLOUD_PLATFORM_SCOPE] }).getClient();
    return undefined;
  } catch (err) {
    const words = ((err as Error).message ?? String(err)).split('\n')[0];
    const file = env.GOOGLE_APPLICATION_CREDENTIALS;
    if (file) {
      return {
        problem: `GOOGLE_APPLICATION_CREDENTIALS names ${file}, which gives no usable Google credentials (${words})`,
        fix: `set GOOGLE_APPLICATION_CREDENTIALS to a readable service account key file, or unset it and run \`gcloud auth application-default login\`, or ${ATTACHED}`,
      };
    }
    return {
      problem: 'no Google credentials found (Application Default Credentials)',
      fix: `run \`gcloud auth application-default login\`, or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or ${ATTACHED}`,
    };
  }
}

/** The one message a command prints for missing credentials: what, for which services, and the fix. */
export function credentialsMessage(c: CredentialsProblem, neededFor: string[]): string {
  return `${c.problem}, needed for ${neededFor.join(' and ')}. To fix: ${c.fix}`;
}

/**
 * Credentials that act as `serviceAccount`, obtained with the caller's Application Default Credentials through
 * the IAM Credentials API (the caller needs roles/iam.serviceAccountTokenCreator on that account).
 * `endpoint` and `sourceClient` exist for tests with a local stand-in of that API.
 */
export async function impersonatedAuth(serviceAccount: string, opts: { endpoint?: string; sourceClient?: AuthClient } = {}): Promise<Impersonated> {
  const sourceClient = opts.sourceClient ?? ((await new GoogleAuth({ scopes: [CLOUD_PLATFORM_SCOPE] }).getClient()) as AuthClient);
  return new Impersonated({
    sourceClient,
    targetPrincipal: serviceAccount,
    targetScopes: [CLOUD_PLATFORM_SCOPE],
    lifetime: 900,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
  });
}
