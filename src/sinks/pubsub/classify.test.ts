import { describe, it, expect } from 'vitest';
import { classifyPublishError, errorText, GrpcStatus } from './classify.js';

const TOPIC = 'projects/demo-project/topics/telemetry';

/** An error shaped as grpc-js/google-gax deliver them: numeric code, server text in `details`. */
function grpcError(code: number, details: string): Error {
  const name = Object.entries(GrpcStatus).find(([, v]) => v === code)?.[0] ?? String(code);
  return Object.assign(new Error(`${code} ${name}: ${details}`), { code, details, metadata: {} });
}

describe('classifyPublishError', () => {
  it('NOT_FOUND is a missing topic: failing, with what to fix', () => {
    const c = classifyPublishError(grpcError(GrpcStatus.NOT_FOUND, 'Topic not found'), TOPIC);
    expect(c).toMatchObject({ kind: 'failing', reason: 'topic_not_found' });
    expect(c.detail).toContain(TOPIC);
    expect(c.detail).toMatch(/create it/);
    expect(c.detail).toContain('Topic not found');
  });

  it('NOT_FOUND names `mqtt-ingest provision` first, the gcloud command for this topic second', () => {
    const { detail } = classifyPublishError(grpcError(GrpcStatus.NOT_FOUND, 'Topic not found'), TOPIC);
    const provision = detail.indexOf('`mqtt-ingest provision`');
    const gcloud = detail.indexOf('`gcloud pubsub topics create telemetry --project=demo-project`');
    expect(provision).toBeGreaterThan(0);
    expect(gcloud).toBeGreaterThan(provision);
  });

  it("a route's topic names where it is set instead of PUBSUB_TOPIC", () => {
    const route = 'projects/demo-project/topics/pressure-readings';
    const missing = classifyPublishError(grpcError(GrpcStatus.NOT_FOUND, 'Topic not found'), route, "the route's pubsub.topic in ROUTES_FILE");
    expect(missing.detail).toContain(`Pub/Sub topic ${route} does not exist`);
    expect(missing.detail).toContain('`gcloud pubsub topics create pressure-readings --project=demo-project`');
    expect(missing.detail).toContain("or correct the route's pubsub.topic in ROUTES_FILE");
    expect(missing.detail).not.toContain('PUBSUB_TOPIC');
    expect(classifyPublishError(grpcError(GrpcStatus.NOT_FOUND, 'Topic not found'), TOPIC).detail).toContain('or correct PUBSUB_TOPIC / GCP_PROJECT_ID');
  });

  it.each([GrpcStatus.PERMISSION_DENIED, GrpcStatus.UNAUTHENTICATED])('code %i is a permission problem', (code) => {
    const c = classifyPublishError(grpcError(code, 'User not authorized to perform this action.'), TOPIC);
    expect(c).toMatchObject({ kind: 'failing', reason: 'permission_denied' });
    expect(c.detail).toMatch(/roles\/pubsub\.publisher/);
  });

  it('missing Application Default Credentials are a permission problem, not an outage', () => {
    const c = classifyPublishError(new Error('Could not load the default credentials. Browse to ...'), TOPIC);
    expect(c).toMatchObject({ kind: 'failing', reason: 'permission_denied' });
    const refused = Object.assign(new Error('invalid_grant'), { response: { status: 400 } });
    expect(classifyPublishError(refused, TOPIC).reason).toBe('permission_denied');
    const forbidden = Object.assign(new Error('token endpoint said no'), { response: { status: 403 } });
    expect(classifyPublishError(forbidden, TOPIC).reason).toBe('permission_denied');
  });

  it('says how to give the node credentials when there are none, and marks credential failures apart from a missing role', () => {
    const none = classifyPublishError(new Error('Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.'), TOPIC);
    expect(none).toMatchObject({ kind: 'failing', reason: 'permission_denied', credentials: true });
    for (const words of ['gcloud auth application-default login', 'GOOGLE_APPLICATION_CREDENTIALS', 'service account']) expect(none.detail).toContain(words);
    const gone = classifyPublishError(new Error('The file at /keys/sa.json does not exist, or it is not a file. ENOENT: no such file or directory'), TOPIC);
    expect(gone).toMatchObject({ kind: 'failing', reason: 'permission_denied', credentials: true });
    expect(gone.detail).toContain('The file at /keys/sa.json does not exist');
    // grpc-js reports credentials that fail during a call (a revoked refresh token) as UNKNOWN, in these words.
    const revoked = grpcError(GrpcStatus.UNKNOWN, 'Getting metadata from plugin failed with error: invalid_grant');
    expect(classifyPublishError(revoked, TOPIC)).toMatchObject({ kind: 'failing', reason: 'permission_denied', credentials: true });
    // …or with the auth library's numeric code, the token endpoint's HTTP status.
    const refused = Object.assign(new Error('400 undefined: Getting metadata from plugin failed with error: Error code invalid_grant: revoked'), {
      code: 400,
      details: 'Getting metadata from plugin failed with error: Error code invalid_grant: revoked',
    });
    expect(classifyPublishError(refused, TOPIC)).toMatchObject({ kind: 'failing', reason: 'permission_denied', credentials: true });
    expect(classifyPublishError(grpcError(GrpcStatus.UNAUTHENTICATED, 'Request had invalid authentication credentials.'), TOPIC)).toMatchObject({ credentials: true });
    // PERMISSION_DENIED from Pub/Sub: the credentials work, a role is missing.
    const role = classifyPublishError(grpcError(GrpcStatus.PERMISSION_DENIED, 'User not authorized to perform this action.'), TOPIC);
    expect(role).not.toHaveProperty('credentials');
    expect(role.detail).toMatch(/roles\/pubsub\.publisher/);
  });

  it.each([
    [GrpcStatus.UNAVAILABLE, 'unavailable'],
    [GrpcStatus.DEADLINE_EXCEEDED, 'deadline_exceeded'],
    [GrpcStatus.RESOURCE_EXHAUSTED, 'resource_exhausted'],
    [GrpcStatus.INTERNAL, 'internal'],
    [GrpcStatus.ABORTED, 'aborted'],
    [GrpcStatus.CANCELLED, 'cancelled'],
    [GrpcStatus.UNKNOWN, 'unknown'],
  ])('code %i is transient: degraded with reason %s', (code, reason) => {
    expect(classifyPublishError(grpcError(code, 'try later'), TOPIC)).toMatchObject({ kind: 'degraded', reason });
  });

  it("google-gax's total-timeout error reports the last attempt's code", () => {
    const text =
      'Total timeout of API google.pubsub.v1.Publisher exceeded 2000 milliseconds retrying error Error: 14 UNAVAILABLE: ' +
      'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:44087. before any response was ' +
      'received. : Previous errors : [{message: 14 UNAVAILABLE: read ECONNRESET, code: 14, details: , note: }]';
    const c = classifyPublishError(Object.assign(new Error(text), { code: GrpcStatus.DEADLINE_EXCEEDED }), TOPIC);
    expect(c).toMatchObject({ kind: 'degraded', reason: 'unavailable' });
    expect(c.detail).toMatch(/ECONNREFUSED/);
    expect(c.detail).not.toMatch(/Previous errors/);
  });

  it("google-gax's total-timeout error without an inner error is deadline_exceeded", () => {
    const err = Object.assign(new Error('Total timeout of API google.pubsub.v1.Publisher exceeded 2000 milliseconds'), {
      code: GrpcStatus.DEADLINE_EXCEEDED,
    });
    const c = classifyPublishError(err, TOPIC);
    expect(c).toMatchObject({ kind: 'degraded', reason: 'deadline_exceeded' });
    expect(c.detail).toMatch(/Total timeout/);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN'])('socket error %s is unavailable', (code) => {
    const err = Object.assign(new Error(`connect ${code} 10.0.0.1:443`), { code });
    expect(classifyPublishError(err, TOPIC)).toMatchObject({ kind: 'degraded', reason: 'unavailable' });
  });

  it('INVALID_ARGUMENT about the message is invalid (rejected when alone in its request)', () => {
    const err = grpcError(GrpcStatus.INVALID_ARGUMENT, 'Invalid data in message: Message failed schema validation.');
    expect(classifyPublishError(err, TOPIC)).toMatchObject({ kind: 'invalid', reason: 'invalid_argument' });
  });

  it('INVALID_ARGUMENT about the topic name is a configuration to fix, never a rejection', () => {
    const emulator = grpcError(GrpcStatus.INVALID_ARGUMENT, 'Invalid [topics] name: (name=projects/p/topics/t1)');
    expect(classifyPublishError(emulator, TOPIC)).toMatchObject({ kind: 'failing', reason: 'invalid_topic' });
    const real = grpcError(GrpcStatus.INVALID_ARGUMENT, 'Invalid resource name given (name=projects/x/topics/t).');
    expect(classifyPublishError(real, TOPIC)).toMatchObject({ kind: 'failing', reason: 'invalid_topic' });
  });

  it('FAILED_PRECONDITION (e.g. a disabled KMS key) is failing', () => {
    const c = classifyPublishError(grpcError(GrpcStatus.FAILED_PRECONDITION, 'Cloud KMS key is disabled.'), TOPIC);
    expect(c).toMatchObject({ kind: 'failing', reason: 'failed_precondition' });
  });

  it('anything else is retryable with reason error', () => {
    expect(classifyPublishError(new Error('boom'), TOPIC)).toMatchObject({ kind: 'degraded', reason: 'error' });
    expect(classifyPublishError('a string', TOPIC)).toMatchObject({ kind: 'degraded', reason: 'error' });
    expect(classifyPublishError(undefined, TOPIC)).toMatchObject({ kind: 'degraded', reason: 'error' });
    // The library's "Cannot use a closed PubSub object." carries code 0.
    const closed = Object.assign(new Error('Cannot use a closed PubSub object.'), { code: 0, details: 'Cannot use a closed PubSub object.' });
    expect(classifyPublishError(closed, TOPIC)).toMatchObject({ kind: 'degraded', reason: 'error' });
  });
});

describe('errorText', () => {
  it('names the gRPC code and keeps the server text', () => {
    expect(errorText(grpcError(GrpcStatus.NOT_FOUND, 'Topic not found'))).toBe('NOT_FOUND: Topic not found');
  });
  it('truncates long messages', () => {
    expect(errorText(new Error('x'.repeat(2000))).length).toBe(500);
  });
});
