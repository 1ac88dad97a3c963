/**
 * Errors of the local BigQuery server (bigquery-server.ts) in BigQuery's shape:
 * `{ error: { code, message, errors: [{ message, domain, reason }], status } }`, with BigQuery's words for the
 * failures tests ask for (failNext).
 */

const STATUS_TEXT: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ALREADY_EXISTS',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
};

export const DEFAULT_REASON: Record<number, string> = { 403: 'accessDenied', 404: 'notFound', 429: 'rateLimitExceeded', 500: 'backendError', 503: 'backendError' };

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly domain = 'global',
  ) {
    super(message);
  }
}

export function errorBody(e: HttpError) {
  return {
    error: {
      code: e.status,
      message: e.message,
      errors: [{ message: e.message, domain: e.domain, reason: e.reason }],
      status: STATUS_TEXT[e.status] ?? 'UNKNOWN',
    },
  };
}

export function domainFor(reason: string): string {
  return reason === 'rateLimitExceeded' || reason === 'quotaExceeded' ? 'usageLimits' : 'global';
}

export function messageFor(reason: string): string {
  switch (reason) {
    case 'rateLimitExceeded':
      return 'Exceeded rate limits: too many api requests per user per method for this user_method. For more information, see https://cloud.google.com/bigquery/docs/troubleshoot-quotas';
    case 'quotaExceeded':
      return 'Quota exceeded: Your table exceeded quota for streaming insert bytes per second.';
    case 'accessDenied':
      return 'Access Denied: Table: Permission bigquery.tables.updateData denied (or it may not exist).';
    case 'notFound':
      return 'Not found: Table';
    default:
      return 'Error encountered during execution. Retrying may solve the problem.';
  }
}
