import { startJsonStandIn } from './json-stand-in.js';
import { crc32c } from '../../src/core/crc32c.js';

/**
 * A local stand-in of the Secret Manager REST API (v1), enough for the client's REST transport:
 * `GET /v1/projects/P/secrets/S/versions/V:access` and `POST /v1/projects/P/secrets/S:testIamPermissions`.
 * Answers as the real API does: the payload base64 with its CRC32C as a decimal int64 string, `latest` read as
 * the highest enabled version, and Google's error body with NOT_FOUND (404), PERMISSION_DENIED (403) or
 * FAILED_PRECONDITION (400, a disabled version).
 */
export interface StandInSecret {
  /** version number → value; a version set to null is disabled. */
  versions: Record<number, string | Buffer | null>;
  /** The caller may not access this secret: access is 403 and testIamPermissions grants nothing. */
  denied?: boolean;
}

export interface SecretManagerServer {
  url: string;
  /** Each request as "METHOD path" (no query). */
  requests: string[];
  stop(): Promise<void>;
}

export async function startSecretManagerServer(secrets: Record<string, StandInSecret>): Promise<SecretManagerServer> {
  const requests: string[] = [];
  const server = await startJsonStandIn((req, reply) => {
    requests.push(`${req.method} ${req.path}`);
    const error = (code: number, status: string, message: string) => reply(code, { error: { code, message, status } });

    const access = /^\/v1\/(projects\/[^/]+\/secrets\/[^/]+)\/versions\/([^/:]+):access$/.exec(req.path);
    if (req.method === 'GET' && access) {
      const [, secretName, version] = access as unknown as [string, string, string];
      const secret = secrets[secretName];
      if (!secret) return error(404, 'NOT_FOUND', `Secret [${secretName}] not found or has no versions.`);
      if (secret.denied) return error(403, 'PERMISSION_DENIED', `Permission 'secretmanager.versions.access' denied for resource '${secretName}/versions/${version}'`);
      const numbers = Object.keys(secret.versions).map(Number).sort((a, b) => b - a);
      const n = version === 'latest' ? numbers.find((v) => secret.versions[v] !== null) : Number(version);
      if (n === undefined || !(n in secret.versions)) return error(404, 'NOT_FOUND', `Secret Version [${secretName}/versions/${version}] not found.`);
      const value = secret.versions[n];
      if (value === null || value === undefined) return error(400, 'FAILED_PRECONDITION', `Secret Version [${secretName}/versions/${n}] is in DISABLED state.`);
      const data = Buffer.isBuffer(value) ? value : Buffer.from(value);
      return reply(200, { name: `${secretName}/versions/${n}`, payload: { data: data.toString('base64'), dataCrc32c: String(crc32c(data)) } });
    }
    const test = /^\/v1\/(projects\/[^/]+\/secrets\/[^/]+):testIamPermissions$/.exec(req.path);
    if (req.method === 'POST' && test) {
      const secret = secrets[test[1]!];
      if (!secret) return error(404, 'NOT_FOUND', `Secret [${test[1]}] not found.`);
      const asked = (JSON.parse(req.body || '{}') as { permissions?: string[] }).permissions ?? [];
      return reply(200, secret.denied ? {} : { permissions: asked });
    }
    return error(404, 'NOT_FOUND', `no route for ${req.method} ${req.path}`);
  });
  return { url: server.url, requests, stop: server.stop };
}
