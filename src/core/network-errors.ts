/**
 * Node socket and DNS error codes that mean the endpoint is unreachable for now (the network is down, the
 * service restarts, a proxy cut the connection): every sink treats them as retryable.
 */
export const SOCKET_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  // undici (fetch) wraps a dropped socket in its own code
  'UND_ERR_SOCKET',
]);
