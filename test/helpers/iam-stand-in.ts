import { startJsonStandIn } from './json-stand-in.js';
import { rawTableResource } from '../../src/sinks/bigquery/schema.js';

/**
 * A local stand-in for what `provision` asks of a project whose resources exist, answering as each REST API does:
 * - Pub/Sub v1: `GET /v1/projects/P/topics/T`, `GET /v1/projects/P/subscriptions/S`,
 *   `POST /v1/projects/P/topics/T:testIamPermissions`
 * - BigQuery v2: dataset and table `GET` (the table with the raw schema), `POST …/tables/T:testIamPermissions`
 * - Secret Manager v1: `POST /v1/projects/P/secrets/S:testIamPermissions`
 * - IAM Credentials v1: `POST /v1/projects/-/serviceAccounts/SA:generateAccessToken` (impersonation)
 * testIamPermissions grants what `grants` lists for the caller's identity: the service account whose token
 * (made by generateAccessToken) is the bearer, or `caller` for a request without one.
 */
export interface IamStandIn {
  url: string;
  /** host:port, as the Pub/Sub client's apiEndpoint takes it. */
  host: string;
  /** "METHOD path identity" of each request. */
  requests: string[];
  stop(): Promise<void>;
}

export async function startIamStandIn(grants: Record<string, string[]>): Promise<IamStandIn> {
  const requests: string[] = [];
  const server = await startJsonStandIn((req, reply) => {
    const p = req.path;
    const bearer = /^Bearer token-for-(.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const identity = bearer ?? 'caller';
    requests.push(`${req.method} ${p} ${identity}`);
    const asked = () => (JSON.parse(req.body || '{}') as { permissions?: string[] }).permissions ?? [];
    const granted = (resource: string) => {
      const mine = new Set(grants[identity] ?? []);
      return asked().filter((perm) => mine.has(`${perm} ${resource}`));
    };

    let m: RegExpExecArray | null;
    if ((m = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/.exec(p)) && req.method === 'POST') {
      return reply(200, { accessToken: `token-for-${decodeURIComponent(m[1]!)}`, expireTime: new Date(Date.now() + 900_000).toISOString() });
    }
    if ((m = /^\/v1\/(projects\/[^/]+\/topics\/[^/:]+)$/.exec(p)) && req.method === 'GET') return reply(200, { name: m[1] });
    if ((m = /^\/v1\/(projects\/[^/]+\/(?:topics|secrets)\/[^/:]+):testIamPermissions$/.exec(p)) && req.method === 'POST') {
      const perms = granted(m[1]!);
      return reply(200, perms.length ? { permissions: perms } : {});
    }
    if ((m = /^\/bigquery\/v2\/projects\/([^/]+)\/datasets\/([^/]+)$/.exec(p)) && req.method === 'GET') {
      return reply(200, { kind: 'bigquery#dataset', id: `${m[1]}:${m[2]}`, datasetReference: { projectId: m[1], datasetId: m[2] }, location: 'EU' });
    }
    if ((m = /^\/bigquery\/v2\/projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/:]+)$/.exec(p)) && req.method === 'GET') {
      return reply(200, { kind: 'bigquery#table', id: `${m[1]}:${m[2]}.${m[3]}`, tableReference: { projectId: m[1], datasetId: m[2], tableId: m[3] }, ...rawTableResource() });
    }
    if ((m = /^\/bigquery\/v2\/projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/:]+):testIamPermissions$/.exec(p)) && req.method === 'POST') {
      const perms = granted(`${m[1]}:${m[2]}.${m[3]}`);
      return reply(200, perms.length ? { permissions: perms } : {});
    }
    return reply(404, { error: { code: 404, message: `no route for ${req.method} ${p}`, status: 'NOT_FOUND' } });
  });
  return { ...server, requests };
}
