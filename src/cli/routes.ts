/**
 * `mqtt-ingest routes test TOPIC [--payload FILE] [--property k=v]…`: what the routes file makes of one message,
 * offline (the configuration is read as `check-config` reads it; nothing is sent): the route that matches, the
 * BigQuery row and Pub/Sub message it gives, or the dead letter and why, or that it is dropped.
 */
import { addPropertyAttributes } from '../sinks/pubsub/property-attributes.js';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ulid } from 'ulid';
import { loadConfig, type LoadOptions } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { encodePayload } from '../core/message.js';
import { topicNameProblem } from '../core/mqtt-topic.js';
import { fsReason } from '../core/settings/text.js';
import { loadRoutes } from '../routes/config.js';
import { describeRoute } from '../routes/describe.js';
import { Router } from '../routes/router.js';
import type { RoutableMessage } from '../routes/types.js';
import { contractAttributes } from '../sinks/pubsub/pubsub-sink.js';

export interface RoutesIo {
  stdout: Pick<NodeJS.WritableStream, 'write'>;
  stderr: Pick<NodeJS.WritableStream, 'write'>;
}

export interface RoutesTestOptions extends LoadOptions {
  topic: string;
  /** A file holding the payload, `-` for standard input; none: an empty payload. */
  payload?: string;
  /** `name=value`, in order; a name given twice is a repeated user property. */
  properties?: string[];
}

/** Prints what the routes do with the message; returns the exit code: 0 when it could tell, 1 when not. */
export function routesTest(opts: RoutesTestOptions, io: RoutesIo): number {
  const fail = (text: string) => (io.stderr.write(`${text}\n`), 1);
  let table;
  let config;
  try {
    config = loadConfig(opts).config;
    table = loadRoutes(config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return fail(`invalid configuration:\n${err.problems.map((p) => `  - ${p}`).join('\n')}`);
  }
  if (!table) return fail('ROUTES_FILE is unset: there are no routes, and every message goes to PUBSUB_TOPIC and the raw table');
  const topicProblem = topicNameProblem(opts.topic);
  if (topicProblem) return fail(`TOPIC ${JSON.stringify(opts.topic)} ${topicProblem}; give a topic name as a publisher sends it`);

  let payload = Buffer.alloc(0);
  if (opts.payload !== undefined) {
    try {
      payload = readFileSync(opts.payload === '-' ? 0 : opts.payload);
    } catch (err) {
      return fail(`--payload: cannot read ${JSON.stringify(opts.payload)} (${fsReason(err)})`);
    }
  }
  const userProperties: Record<string, string | string[]> = {};
  for (const pair of opts.properties ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return fail(`--property: ${JSON.stringify(pair)} is not name=value`);
    const [name, value] = [pair.slice(0, eq), pair.slice(eq + 1)];
    const had = userProperties[name];
    userProperties[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
  }
  const msg: RoutableMessage = {
    seq: 0,
    messageId: ulid(),
    topic: opts.topic,
    payload,
    qos: 1,
    retain: false,
    receivedAt: Date.now(),
    ...(opts.properties?.length ? { properties: { userProperties } } : {}),
  };

  const out: string[] = [];
  const outcome = new Router(table).route(msg);
  switch (outcome.kind) {
    case 'raw':
      out.push(`no route matches ${JSON.stringify(msg.topic)}; unmatched: raw → PUBSUB_TOPIC and the raw table, as without routes`);
      break;
    case 'dropped':
      out.push(outcome.route ? `route ${outcome.route.name}: ${outcome.route.topic.text}` : `no route matches ${JSON.stringify(msg.topic)}; unmatched: drop`);
      out.push('dropped: acknowledged, counted, never sent');
      break;
    case 'dead_letter':
      out.push(outcome.route ? `route ${describeRoute(outcome.route)}` : `no route matches ${JSON.stringify(msg.topic)}; unmatched: dead_letter`);
      out.push(`dead letter: reason ${outcome.reason}: ${outcome.detail}`);
      break;
    case 'routed': {
      out.push(`route ${describeRoute(outcome.route)}`);
      out.push(`variables: ${JSON.stringify(outcome.variables)}`);
      const { pubsub, bigquery } = outcome;
      if (pubsub) {
        const data = encodePayload(pubsub.data);
        const orderingKey = pubsub.orderingKey ?? (config.PUBSUB_ORDERING_KEY === 'mqtt_topic' ? msg.topic : undefined);
        out.push(`pubsub: ${pubsub.topic}`);
        out.push(`  data (${data.payload_encoding}): ${data.payload_encoding === 'utf8' ? JSON.stringify(data.payload) : data.payload}`);
        const attributes = { ...contractAttributes(msg), ...pubsub.attributes };
        if (msg.properties) addPropertyAttributes(attributes, msg.properties);
        out.push(`  attributes: ${JSON.stringify(attributes, null, 2).replace(/\n/g, '\n  ')}`);
        out.push(`  ordering key: ${orderingKey === undefined ? 'none' : JSON.stringify(orderingKey)}`);
      } else out.push('pubsub: not sent (the route does not use Pub/Sub)');
      if (bigquery) {
        for (const [i, r] of bigquery.rows.entries()) {
          if (i === 0 || bigquery.rows.length > 1) out.push(`bigquery: ${bigquery.dataset}.${bigquery.table} (insertId ${r.insertId})`);
          out.push(`  row: ${JSON.stringify(r.row, null, 2).replace(/\n/g, '\n  ')}`);
        }
      } else out.push('bigquery: not sent (the route does not use BigQuery)');
      out.push(`file: ${outcome.file ? 'written (the message as an NDJSON line)' : 'not written'}`);
      break;
    }
  }
  io.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

export function registerRoutes(program: Command): void {
  const routes = program.command('routes').description('the routes file (ROUTES_FILE, docs/routing.md)');
  routes
    .command('test')
    .description('show what the routes do with one message: the route, BigQuery row, Pub/Sub message or dead letter (offline)')
    .argument('<topic>', 'the MQTT topic the message is published to')
    .option('--payload <file>', 'a file holding the payload (- for standard input); default: empty')
    .option('--property <name=value>', 'an MQTT 5 user property; repeat for more', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--config <file>', 'YAML config file (else CONFIG_FILE)')
    .action((topic: string, options: { payload?: string; property: string[]; config?: string }) => {
      process.exitCode = routesTest({ env: process.env, file: options.config, topic, payload: options.payload, properties: options.property }, process);
    });
}
