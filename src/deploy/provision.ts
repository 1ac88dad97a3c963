/**
 * `mqtt-ingest provision`: creates, idempotently, what the node writes to (the Pub/Sub topic, an optional
 * verification subscription for the smoke test, the BigQuery dataset and raw table, and with a routes file
 * every route's topic and typed table) and checks with testIamPermissions that the node's identity may use
 * them. Every step says what it found and did; with `dryRun` nothing is created and missing resources read
 * "would create". A route's table that lacks only the NULLABLE columns of new optional fields gets them
 * (tables.patch), as the node does at start with BIGQUERY_AUTO_CREATE on.
 *
 * testIamPermissions answers for the caller. So that the check is about the node's service account rather than
 * the operator who provisions, `impersonatedAuth()` lets the check act as that account (the operator needs
 * roles/iam.serviceAccountTokenCreator on it); without it, the caller's own permissions are checked.
 *
 * Every call to a service goes through `opts.call` (the command's ServiceCalls, src/deploy/waiting.ts), which
 * says when a service keeps it waiting and bounds the wait; `opts.progress` hears after each step how far it got.
 */
import type { BigQuery } from '@google-cloud/bigquery';
import type { PubSub } from '@google-cloud/pubsub';
import type { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { layoutWarnings, rawTableResource, schemaDifferences, type TableFieldSchema } from '../sinks/bigquery/schema.js';
import type { RouteTable } from '../sinks/bigquery/table-check.js';

export interface ProvisionTarget {
  projectId: string;
  /** projects/P/topics/T */
  topic?: string;
  /** projects/P/subscriptions/S: a subscription on the topic that receives only smoke-test messages. */
  verificationSubscription?: string;
  /** MQTT topic prefix of the smoke test; the verification subscription filters on it. */
  smokeTopicPrefix: string;
  bigquery?: {
    dataset: string;
    table: string;
    location?: string;
    /** False: no message goes to the raw table (a routes file whose `unmatched` is not raw), so it is not made. */
    rawTable?: boolean;
    /** The routes' typed tables in the dataset (ROUTES_FILE), made from their shapes. */
    routeTables?: RouteTable[];
  };
  /** The routes' Pub/Sub topics (ROUTES_FILE), projects/P/topics/T; `topic` among them is provisioned once. */
  routeTopics?: string[];
  /** Secret Manager secrets the configuration references (projects/P/secrets/S), by config key. */
  secrets: { key: string; secretName: string }[];
}

export interface ProvisionClients {
  pubsub: PubSub;
  bigquery?: BigQuery;
  secretManager?: SecretManagerServiceClient;
  /** The clients the permission check uses (acting as the node's service account); the ones above when absent. */
  check?: { pubsub: PubSub; bigquery?: BigQuery; secretManager?: SecretManagerServiceClient };
}

/** The services provision calls, by the key the command maps to an endpoint. */
export type ServiceKey = 'pubsub' | 'bigquery' | 'secretManager';
/** Runs one call to a service; `what` names it for a message, e.g. `projects/p/topics/t: get`. */
export type CallService = <T>(service: ServiceKey, what: string, fn: () => Promise<T>) => Promise<T>;
const direct: CallService = (_service, _what, fn) => fn();

/** `updated` / `would update`: a route's table gains the NULLABLE columns of new optional fields. */
export type StepState = 'exists' | 'created' | 'would create' | 'updated' | 'would update' | 'differs' | 'failed';
export interface Step {
  what: string;
  state: StepState;
  detail?: string;
}
export type PermissionState = 'granted' | 'missing' | 'not checked';
export interface PermissionResult {
  resource: string;
  permission: string;
  state: PermissionState;
  detail?: string;
}
/** How far provision has got: resources found or made, and permissions checked, of how many planned. */
export interface ProvisionProgress {
  resources: number;
  plannedResources: number;
  permissions: number;
  plannedPermissions: number;
}

export interface ProvisionReport {
  steps: Step[];
  permissions: PermissionResult[];
  /** No failed or differing step and no missing permission. */
  ok: boolean;
}

/** What the node needs on each resource (the roles that grant it in docs/operations.md). */
export const NODE_PERMISSIONS = {
  topic: ['pubsub.topics.publish'], // roles/pubsub.publisher
  table: ['bigquery.tables.get', 'bigquery.tables.updateData'], // roles/bigquery.dataEditor on the dataset
  secret: ['secretmanager.versions.access'], // roles/secretmanager.secretAccessor on each secret
} as const;

/** The smoke test's subscription filter (Pub/Sub filter syntax): only messages the smoke test published. */
export function smokeFilter(prefix: string): string {
  return `hasPrefix(attributes.mqtt_topic, ${JSON.stringify(`${prefix.replace(/\/+$/, '')}/`)})`;
}

function codeOf(err: unknown): number | string | undefined {
  return (err as { code?: number | string } | null)?.code;
}
const isNotFound = (err: unknown) => codeOf(err) === 5 || codeOf(err) === 404;
const isAlreadyExists = (err: unknown) => codeOf(err) === 6 || codeOf(err) === 409;
const isDenied = (err: unknown) => codeOf(err) === 7 || codeOf(err) === 403;
const isUnimplemented = (err: unknown) => codeOf(err) === 12 || codeOf(err) === 501;

/** One line of an error, with the permission it lacks when the API says so. */
function describe(err: unknown, needed?: string): string {
  const message = ((err as Error)?.message ?? String(err)).split('\n')[0]!;
  if (isDenied(err)) return `permission denied${needed ? `: the caller needs ${needed}` : ''} (${message})`;
  return message.length > 240 ? `${message.slice(0, 237)}...` : message;
}

export async function provision(
  target: ProvisionTarget,
  clients: ProvisionClients,
  opts: { dryRun: boolean; call?: CallService; progress?: (p: ProvisionProgress) => void },
): Promise<ProvisionReport> {
  const call = opts.call ?? direct;
  const check = clients.check ?? clients;
  const routeTopics = (target.routeTopics ?? []).filter((t) => t !== target.topic);
  const topics = [...(target.topic ? [target.topic] : []), ...routeTopics];
  const tables = target.bigquery ? (target.bigquery.rawTable === false ? 0 : 1) + (target.bigquery.routeTables ?? []).length : 0;
  const plannedResources = topics.length + (target.topic && target.verificationSubscription ? 1 : 0) + (clients.bigquery && target.bigquery ? 1 + tables : 0);
  const { topic: perTopic, table: perTable, secret: perSecret } = NODE_PERMISSIONS;
  const plannedPermissions = topics.length * perTopic.length + (check.bigquery ? tables * perTable.length : 0) + (check.secretManager ? target.secrets.length * perSecret.length : 0);
  const steps: Step[] = [];
  const permissions: PermissionResult[] = [];
  const tick = () => opts.progress?.({ resources: steps.length, plannedResources, permissions: permissions.length, plannedPermissions });
  tick();
  if (target.topic) {
    const topicOk = await ensureTopic(clients.pubsub, target.topic, opts.dryRun, steps, call);
    tick();
    if (target.verificationSubscription) {
      await ensureVerificationSubscription(clients.pubsub, target, topicOk, opts.dryRun, steps, call);
      tick();
    }
  }
  for (const topic of routeTopics) {
    await ensureTopic(clients.pubsub, topic, opts.dryRun, steps, call);
    tick();
  }
  if (target.bigquery && clients.bigquery) await ensureTables(clients.bigquery, target, opts.dryRun, steps, call, tick);

  // Whether a step found or made the resource: then a NOT_FOUND from testIamPermissions means the endpoint lacks it.
  const present = (what: string) => steps.some((s) => s.what === what && (s.state === 'exists' || s.state === 'created' || s.state === 'updated'));
  for (const topic of topics) {
    permissions.push(...(await checkTopic(check.pubsub, topic, present(`Pub/Sub topic ${topic}`), call)));
    tick();
  }
  if (target.bigquery && check.bigquery) {
    const { dataset, table, rawTable, routeTables } = target.bigquery;
    for (const t of [...(rawTable === false ? [] : [table]), ...(routeTables ?? []).map((r) => r.table)]) {
      const name = `${target.projectId}:${dataset}.${t}`;
      permissions.push(...(await checkTable(check.bigquery, name, dataset, t, present(`BigQuery table ${name}`), call)));
      tick();
    }
  }
  // Secrets are not provisioned here (their values are the operator's): a missing one is reported as such.
  for (const s of check.secretManager ? target.secrets : []) {
    permissions.push(...(await checkSecret(check.secretManager!, s.secretName, call)));
    tick();
  }

  const ok = steps.every((s) => s.state !== 'failed' && s.state !== 'differs') && permissions.every((p) => p.state !== 'missing');
  return { steps, permissions, ok };
}

async function ensureTopic(pubsub: PubSub, name: string, dryRun: boolean, steps: Step[], call: CallService): Promise<boolean> {
  const what = `Pub/Sub topic ${name}`;
  try {
    const [exists] = await call('pubsub', `${name}: get`, () => pubsub.topic(name).exists());
    if (exists) {
      steps.push({ what, state: 'exists' });
      return true;
    }
    if (dryRun) {
      steps.push({ what, state: 'would create' });
      return false;
    }
    await call('pubsub', `${name}: create`, () => pubsub.createTopic(name));
    steps.push({ what, state: 'created' });
    return true;
  } catch (err) {
    if (isAlreadyExists(err)) {
      steps.push({ what, state: 'exists' });
      return true;
    }
    steps.push({ what, state: 'failed', detail: describe(err, 'pubsub.topics.get and pubsub.topics.create (roles/pubsub.editor)') });
    return false;
  }
}

async function ensureVerificationSubscription(
  pubsub: PubSub,
  target: ProvisionTarget,
  topicOk: boolean,
  dryRun: boolean,
  steps: Step[],
  call: CallService,
): Promise<void> {
  const name = target.verificationSubscription!;
  const filter = smokeFilter(target.smokeTopicPrefix);
  const what = `Pub/Sub subscription ${name} (smoke test, filter ${filter})`;
  try {
    const subscription = pubsub.subscription(name);
    const [exists] = await call('pubsub', `${name}: get`, () => subscription.exists());
    if (exists) {
      const [meta] = await call('pubsub', `${name}: get`, () => subscription.getMetadata());
      const problems: string[] = [];
      if (meta.topic !== target.topic) problems.push(`it is on ${meta.topic}, not ${target.topic}`);
      if ((meta.filter ?? '') !== filter) problems.push(`its filter is ${JSON.stringify(meta.filter ?? '')}`);
      // A filter cannot be changed on an existing subscription: it has to be deleted and made again.
      steps.push(problems.length ? { what, state: 'differs', detail: `${problems.join('; ')}; delete it and run provision again` } : { what, state: 'exists' });
      return;
    }
    if (dryRun || !topicOk) {
      steps.push({ what, state: 'would create', detail: topicOk ? undefined : 'after the topic' });
      return;
    }
    await call('pubsub', `${name}: create`, () =>
      pubsub.topic(target.topic!).createSubscription(name, {
        filter,
        ackDeadlineSeconds: 60,
        // Unread smoke messages are not worth keeping: an hour, and the subscription stays even when unused.
        messageRetentionDuration: { seconds: 3600 },
        expirationPolicy: {},
      }),
    );
    steps.push({ what, state: 'created' });
  } catch (err) {
    if (isAlreadyExists(err)) steps.push({ what, state: 'exists' });
    else steps.push({ what, state: 'failed', detail: describe(err, 'pubsub.subscriptions.create (roles/pubsub.editor)') });
  }
}

async function ensureTables(bigquery: BigQuery, target: ProvisionTarget, dryRun: boolean, steps: Step[], call: CallService, tick: () => void): Promise<void> {
  const { dataset: datasetId, table: tableId, location, rawTable, routeTables = [] } = target.bigquery!;
  const dataset = bigquery.dataset(datasetId, location ? { location } : {});
  const datasetWhat = `BigQuery dataset ${target.projectId}:${datasetId}`;
  let datasetExists = false;
  try {
    [datasetExists] = await call('bigquery', `dataset ${target.projectId}:${datasetId}: get`, () => dataset.exists());
    if (datasetExists) steps.push({ what: datasetWhat, state: 'exists' });
    else if (dryRun) steps.push({ what: datasetWhat, state: 'would create', detail: location ? `in ${location}` : undefined });
    else {
      try {
        await call('bigquery', `dataset ${target.projectId}:${datasetId}: insert`, () => bigquery.createDataset(datasetId, location ? { location } : {}));
        steps.push({ what: datasetWhat, state: 'created', detail: location ? `in ${location}` : undefined });
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        steps.push({ what: datasetWhat, state: 'exists' });
      }
      datasetExists = true;
    }
  } catch (err) {
    steps.push({ what: datasetWhat, state: 'failed', detail: describe(err, 'bigquery.datasets.get and bigquery.datasets.create (roles/bigquery.dataEditor)') });
    return;
  }
  tick();
  const tables: TableSpec[] = [];
  if (rawTable !== false) {
    tables.push({
      id: tableId,
      resource: rawTableResource,
      planned: 'with the raw schema (docs/bigquery.md)',
      made: 'with the raw schema, day-partitioned on received_at',
      // Missing columns are differences too: the node adds them at start itself (docs/bigquery.md).
      compare: (meta) => {
        const problems = schemaDifferences((meta.schema as { fields?: TableFieldSchema[] } | undefined)?.fields);
        const warnings = layoutWarnings(meta as Parameters<typeof layoutWarnings>[0]);
        return { add: [], differences: problems, fits: warnings.length ? warnings.join('; ') : 'the raw schema' };
      },
    });
  }
  for (const { table, shape } of routeTables) {
    const typed = `typed, for ${shape.rows}`;
    tables.push({
      id: table,
      resource: () => shape.resource(),
      planned: typed,
      made: `${typed}, day-partitioned on received_at`,
      compare: (meta) => {
        const { add, differences, warnings } = shape.compare(meta);
        return { add, differences, fits: warnings.length ? warnings.join('; ') : typed };
      },
    });
  }
  for (const spec of tables) {
    await ensureTable(bigquery, target, datasetExists, spec, dryRun, steps, call);
    tick();
  }
}

/** One table provision makes: the raw table, or a route's typed table. */
interface TableSpec {
  id: string;
  resource(): Record<string, unknown>;
  /** The detail of `would create` and `created`. */
  planned: string;
  made: string;
  /** An existing table: NULLABLE columns to add, differences, and the detail of `exists`. */
  compare(meta: Record<string, unknown>): { add: TableFieldSchema[]; differences: string[]; fits: string };
}

async function ensureTable(
  bigquery: BigQuery,
  target: ProvisionTarget,
  datasetExists: boolean,
  spec: TableSpec,
  dryRun: boolean,
  steps: Step[],
  call: CallService,
): Promise<void> {
  const { dataset: datasetId, location } = target.bigquery!;
  const tableWhat = `BigQuery table ${target.projectId}:${datasetId}.${spec.id}`;
  if (!datasetExists) {
    steps.push({ what: tableWhat, state: 'would create', detail: spec.planned });
    return;
  }
  const dataset = bigquery.dataset(datasetId, location ? { location } : {});
  const table = dataset.table(spec.id);
  try {
    const tableName = `table ${target.projectId}:${datasetId}.${spec.id}`;
    const [exists] = await call('bigquery', `${tableName}: get`, () => table.exists());
    if (exists) {
      const [meta] = await call('bigquery', `${tableName}: get`, () => table.getMetadata());
      const { add, differences, fits } = spec.compare(meta as Record<string, unknown>);
      const columns = add.map((f) => `${f.name} (${f.type} NULLABLE)`).join(', ');
      if (differences.length > 0) {
        const missing = add.map((f) => `column ${f.name} is missing (want ${f.type} NULLABLE)`);
        steps.push({ what: tableWhat, state: 'differs', detail: [...differences, ...missing].join('; ') });
      } else if (add.length === 0) steps.push({ what: tableWhat, state: 'exists', detail: fits });
      else if (dryRun) steps.push({ what: tableWhat, state: 'would update', detail: `would add the columns ${columns}` });
      else {
        const fields = ((meta as { schema?: { fields?: TableFieldSchema[] } }).schema?.fields ?? []).concat(add);
        await call('bigquery', `${tableName}: patch`, () => table.setMetadata({ schema: { fields } }));
        steps.push({ what: tableWhat, state: 'updated', detail: `added the columns ${columns}` });
      }
      return;
    }
    if (dryRun) {
      steps.push({ what: tableWhat, state: 'would create', detail: spec.planned });
      return;
    }
    await call('bigquery', `${tableName}: insert`, () => dataset.createTable(spec.id, spec.resource()));
    steps.push({ what: tableWhat, state: 'created', detail: spec.made });
  } catch (err) {
    if (isAlreadyExists(err)) steps.push({ what: tableWhat, state: 'exists' });
    else steps.push({ what: tableWhat, state: 'failed', detail: describe(err, 'bigquery.tables.create (roles/bigquery.dataEditor)') });
  }
}

/** Turns a testIamPermissions answer (or its failure) into one result per permission. */
async function permissionResults(
  resource: string,
  wanted: readonly string[],
  call: () => Promise<string[]>,
  knownToExist = false,
): Promise<PermissionResult[]> {
  try {
    const granted = new Set(await call());
    return wanted.map((permission) => ({ resource, permission, state: granted.has(permission) ? 'granted' : 'missing' }));
  } catch (err) {
    // The Pub/Sub emulator answers UNIMPLEMENTED; a resource that does not exist yet (dry run) has no policy.
    const detail =
      isUnimplemented(err) || (isNotFound(err) && knownToExist)
        ? 'this endpoint does not implement testIamPermissions (an emulator?)'
        : isNotFound(err)
          ? 'the resource does not exist'
          : describe(err);
    return wanted.map((permission) => ({ resource, permission, state: 'not checked', detail }));
  }
}

function checkTopic(pubsub: PubSub, topic: string, exists: boolean, call: CallService): Promise<PermissionResult[]> {
  const ask = async () => {
    const [map] = await call('pubsub', `${topic}: testIamPermissions`, () => pubsub.topic(topic).iam.testPermissions([...NODE_PERMISSIONS.topic]));
    return Object.entries(map).filter(([, ok]) => ok).map(([p]) => p);
  };
  return permissionResults(topic, NODE_PERMISSIONS.topic, ask, exists);
}

function checkTable(bigquery: BigQuery, name: string, dataset: string, table: string, exists: boolean, call: CallService): Promise<PermissionResult[]> {
  const ask = async () => {
    const [response] = await call('bigquery', `table ${name}: testIamPermissions`, () =>
      bigquery.dataset(dataset).table(table).testIamPermissions([...NODE_PERMISSIONS.table]),
    );
    return (response as { permissions?: string[] }).permissions ?? [];
  };
  return permissionResults(name, NODE_PERMISSIONS.table, ask, exists);
}

function checkSecret(client: SecretManagerServiceClient, secretName: string, call: CallService): Promise<PermissionResult[]> {
  return permissionResults(secretName, NODE_PERMISSIONS.secret, async () => {
    const [response] = await call('secretManager', `${secretName}: testIamPermissions`, () =>
      client.testIamPermissions({ resource: secretName, permissions: [...NODE_PERMISSIONS.secret] }),
    );
    return response.permissions ?? [];
  });
}
