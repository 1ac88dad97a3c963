/** The HTTP server's configuration: where health checks, metrics and the status page are served. */
import { text, wholeNumber } from '../core/settings/fields.js';
import { key } from '../core/settings/key.js';
import type { Section, Values } from '../core/settings/section.js';

const httpKeys = {
  PORT: key(wholeNumber(0, 65535), {
    default: '8080',
    description: 'HTTP port for health checks, metrics and the status page; `0` picks any free port.',
  }),
  HTTP_HOST: key(text('a host name or IP address'), {
    default: '0.0.0.0',
    description:
      'Address the HTTP server (health checks, metrics, status page) listens on. App Engine and Kubernetes probes ' +
      'need `0.0.0.0`; `127.0.0.1` keeps it to this host. What each endpoint reveals: docs/security.md.',
  }),
};

export type HttpConfig = Values<typeof httpKeys>;

/** A broker listener on PORT is refused by the broker's rules (intake/security/policy.ts), which read it. */
export const httpSection = { keys: httpKeys } satisfies Section<HttpConfig>;

/** Where HttpServer listens. */
export function httpOptions(c: HttpConfig): { host: string; port: number } {
  return { host: c.HTTP_HOST, port: c.PORT };
}
