/**
 * Whether a service's address can be reached at all, for the operations commands' "cannot reach" lines
 * (src/deploy/waiting.ts): a bare TCP connection to the endpoint's host and port, closed as soon as it is made,
 * and the words for the ways it fails (refused, a name that does not resolve, no connection within the time).
 */
import net from 'node:net';

/** A service's endpoint as waiting.ts names it; `port` applies when `at` names none. */
export interface Endpoint {
  at: string;
  port?: number;
}

export type Reach = { reached: true } | { reached: false; why: string };

const SCHEME_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443, 'mqtt:': 1883, 'tcp:': 1883, 'mqtts:': 8883, 'ssl:': 8883, 'ws:': 80, 'wss:': 443 };

/**
 * The host and port of `at`: a URL (`http://127.0.0.1:9050`, `mqtts://broker:8883`), `host:port`, `[::1]:port`
 * or a bare host (then `port`, else 443, Google's APIs). Undefined when it reads as none of these.
 */
export function hostAndPort(endpoint: Endpoint): { host: string; port: number } | undefined {
  const at = endpoint.at.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(at)) {
    try {
      const url = new URL(at);
      const port = url.port ? Number(url.port) : (SCHEME_PORTS[url.protocol] ?? endpoint.port);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      return host && port ? { host, port } : undefined;
    } catch {
      return undefined;
    }
  }
  const m = /^(?:\[([^\]]+)\]|([^:/\s]+))(?::(\d+))?$/.exec(at);
  if (!m) return undefined;
  return { host: (m[1] ?? m[2])!, port: m[3] ? Number(m[3]) : (endpoint.port ?? 443) };
}

/** The words for a failed connection, by its error code. */
function connectWords(code: string | undefined, host: string, port: number): string {
  switch (code) {
    case 'ECONNREFUSED':
      return `connection refused (nothing listens on ${host}:${port})`;
    case 'ENOTFOUND':
      return `the name ${host} does not resolve (ENOTFOUND)`;
    case 'EAI_AGAIN':
      return `the name ${host} could not be resolved (EAI_AGAIN: no DNS answer)`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `no route to ${host} (${code})`;
    default:
      return `connecting to ${host}:${port} failed (${code ?? 'unknown error'})`;
  }
}

/**
 * Tries a TCP connection to the endpoint: reached when it is made (and then closed at once), otherwise why not.
 * Gives up after `timeoutMs` ("no TCP connection … within"), or when `signal` aborts (then reached, unsaid).
 */
export function probeTcp(endpoint: Endpoint, timeoutMs: number, signal?: AbortSignal): Promise<Reach> {
  const address = hostAndPort(endpoint);
  if (!address) return Promise.resolve({ reached: true });
  const { host, port } = address;
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let finished = false;
    const finish = (reach: Reach) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(reach);
    };
    const onAbort = () => finish({ reached: true });
    const timer = setTimeout(
      () => finish({ reached: false, why: `no TCP connection to ${host}:${port} within ${Math.round(timeoutMs / 100) / 10} s (a wrong address, or a firewall that drops the packets)` }),
      timeoutMs,
    );
    timer.unref();
    signal?.addEventListener('abort', onAbort);
    socket.once('connect', () => finish({ reached: true }));
    socket.once('error', (err: NodeJS.ErrnoException) => finish({ reached: false, why: connectWords(err.code, host, port) }));
  });
}

const UNREACHABLE_CODES = ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT'];
const UNREACHABLE_WORDS = new RegExp(`\\b(${UNREACHABLE_CODES.join('|')})\\b|No connection established|Name resolution failed`);

/**
 * The first line of `err` when it says that the service could not be reached (the connection refused, the name
 * unresolved, no route), as the client libraries report it after their own retries; undefined for any answer
 * the service gave.
 */
export function unreachableWords(err: unknown): string | undefined {
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown } } | null;
  if (!e) return undefined;
  const message = typeof e.message === 'string' ? e.message.split('\n')[0]! : '';
  const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : undefined;
  if (code && UNREACHABLE_CODES.includes(code)) return message || code;
  return UNREACHABLE_WORDS.test(message) ? message : undefined;
}

/** The proxy variable the client libraries would go through, when one is set: then a direct probe proves nothing. */
export function proxyVariable(env: NodeJS.ProcessEnv): string | undefined {
  return ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'grpc_proxy'].find((k) => env[k]);
}
