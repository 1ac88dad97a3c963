/**
 * Google Cloud clients for the operations commands (`provision`, `smoke`), made from the same configuration keys
 * the node uses, so an emulator or a local stand-in set there is honoured the same way.
 */
import { BigQuery, type BigQueryOptions } from '@google-cloud/bigquery';
import { PubSub } from '@google-cloud/pubsub';
import { GoogleAuth, Impersonated, PassThroughClient, type AuthClient } from 'google-auth-library';
import type { Config } from '../config/load.js';
import { baseUrlOf, DEFAULT_API_ENDPOINT } from '../sinks/bigquery/bigquery-sink.js';

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
  config: Pick<Config, 'BIGQUERY_API_ENDPOINT' | 'BIGQUERY_EMULATOR_HOST' | 'BIGQUERY_LOCATION'>,
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
