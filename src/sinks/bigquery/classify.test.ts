import { describe, expect, it } from 'vitest';
import { classifyRequestError, RequestTimeoutError, rowOutcomes } from './classify.js';

/** An error shaped as @google-cloud/common's ApiError for a BigQuery error body. */
function apiError(code: number, reason: string, message = `${reason} happened`): Error {
  return Object.assign(new Error(message), { code, errors: [{ message, domain: 'global', reason }] });
}

const T = 'p:d.t';

describe('classifyRequestError', () => {
  it('decides by the reason, not the status: throttling over 403 is transient, accessDenied over 403 needs a person', () => {
    expect(classifyRequestError(apiError(403, 'rateLimitExceeded'), T)).toMatchObject({ kind: 'degraded', reason: 'rate_limited' });
    expect(classifyRequestError(apiError(403, 'quotaExceeded'), T)).toMatchObject({ kind: 'degraded', reason: 'quota_exceeded' });
    const denied = classifyRequestError(apiError(403, 'accessDenied'), T);
    expect(denied).toMatchObject({ kind: 'failing', reason: 'access_denied' });
    expect(denied.detail).toContain('roles/bigquery.dataEditor');
  });

  it('makes 429, 5xx, backendError and socket errors transient', () => {
    expect(classifyRequestError(apiError(429, 'rateLimitExceeded'), T)).toMatchObject({ kind: 'degraded', reason: 'rate_limited' });
    expect(classifyRequestError(apiError(503, 'backendError'), T)).toMatchObject({ kind: 'degraded', reason: 'backend_error' });
    expect(classifyRequestError(apiError(500, 'somethingNew'), T)).toMatchObject({ kind: 'degraded', reason: 'backend_error' });
    expect(classifyRequestError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), T)).toMatchObject({ kind: 'degraded', reason: 'unavailable' });
    expect(classifyRequestError(new RequestTimeoutError('insertAll', 100), T)).toMatchObject({ kind: 'degraded', reason: 'timeout' });
  });

  it('makes a missing table or dataset failing, with what to do', () => {
    const cls = classifyRequestError(apiError(404, 'notFound', 'Not found: Table p:d.t'), T);
    expect(cls).toMatchObject({ kind: 'failing', reason: 'not_found' });
    expect(cls.detail).toMatch(/provision|BIGQUERY_AUTO_CREATE/);
  });

  it('treats a request refused as a whole as invalid, and an oversized one as too_large', () => {
    expect(classifyRequestError(apiError(400, 'invalid', 'No rows present in the request.'), T)).toMatchObject({ kind: 'invalid', reason: 'invalid' });
    expect(classifyRequestError(apiError(400, 'badRequest', 'Request payload size exceeds the limit: 10485760 bytes.'), T)).toMatchObject({
      kind: 'invalid',
      reason: 'too_large',
    });
    expect(classifyRequestError(Object.assign(new Error('Request Too Large'), { code: 413 }), T)).toMatchObject({ kind: 'invalid', reason: 'too_large' });
  });

  it('treats missing credentials as failing', () => {
    expect(classifyRequestError(new Error('Could not load the default credentials.'), T)).toMatchObject({ kind: 'failing', reason: 'access_denied' });
  });

  it('says how to give the node credentials when there are none, and marks credential failures apart from a missing role', () => {
    const none = classifyRequestError(new Error('Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.'), T);
    expect(none).toMatchObject({ kind: 'failing', reason: 'access_denied', credentials: true });
    for (const words of ['gcloud auth application-default login', 'GOOGLE_APPLICATION_CREDENTIALS', 'service account']) expect(none.detail).toContain(words);
    const gone = classifyRequestError(new Error('The file at /keys/sa.json does not exist, or it is not a file. ENOENT: no such file or directory'), T);
    expect(gone).toMatchObject({ kind: 'failing', reason: 'access_denied', credentials: true });
    expect(gone.detail).toContain('The file at /keys/sa.json does not exist');
    expect(gone.detail).toContain('gcloud auth application-default login');
    // A token BigQuery does not take (401) is the credentials' fault too; a 403 is a missing role, with its own fix.
    expect(classifyRequestError(apiError(401, 'required', 'Request had invalid authentication credentials.'), T)).toMatchObject({ credentials: true });
    // The token endpoint's invalid_grant carries its HTTP 400 (google-auth-library copies the Gaxios error's fields):
    // a credentials problem, not rows BigQuery refused (which would be dead-lettered).
    const revoked = Object.assign(new Error('Error code invalid_grant: the refresh token is expired or revoked'), { code: 400, status: 400 });
    expect(classifyRequestError(revoked, T)).toMatchObject({ kind: 'failing', reason: 'access_denied', credentials: true });
    const role = classifyRequestError(apiError(403, 'accessDenied'), T);
    expect(role).not.toHaveProperty('credentials');
    expect(role.detail).not.toContain('gcloud auth application-default login');
  });
});

describe('rowOutcomes', () => {
  it('rejects invalid rows with BigQuery words, retries stopped ones, delivers the unlisted', () => {
    const outcomes = rowOutcomes(4, [
      { index: 1, errors: [{ reason: 'invalid', location: 'data', message: 'JSON nesting depth 600 exceeds the limit of 500.' }] },
      { index: 0, errors: [{ reason: 'stopped', location: '', message: '' }] },
      { index: 2, errors: [{ reason: 'stopped', location: '', message: '' }] },
    ]);
    expect(outcomes[0]).toMatchObject({ kind: 'retryable', reason: 'stopped' });
    expect(outcomes[1]).toEqual({ kind: 'rejected', reason: 'invalid', detail: 'data: JSON nesting depth 600 exceeds the limit of 500. (invalid)' });
    expect(outcomes[2]).toMatchObject({ kind: 'retryable', reason: 'stopped' });
    expect(outcomes[3]).toEqual({ kind: 'delivered' });
  });

  it('rejects a row for any reason that is not transient, and retries a backend error', () => {
    const outcomes = rowOutcomes(2, [
      { index: 0, errors: [{ reason: 'somethingElse', message: 'no' }] },
      { index: 1, errors: [{ reason: 'backendError', message: 'try again' }] },
    ]);
    expect(outcomes[0]).toMatchObject({ kind: 'rejected', reason: 'rejected', detail: 'no (somethingElse)' });
    expect(outcomes[1]).toMatchObject({ kind: 'retryable', reason: 'backend_error' });
  });

  it('ignores indexes outside the request', () => {
    expect(rowOutcomes(1, [{ index: 5, errors: [{ reason: 'invalid' }] }])).toEqual([{ kind: 'delivered' }]);
  });
});
