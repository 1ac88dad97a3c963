/** The loaded routes in words, one line each: what `check-config` and `routes test` print. */
import type { Route, RoutesTable } from './types.js';

export function describeRoute(route: Route): string {
  const head = `${route.name}: ${route.topic.text}`;
  if (route.drop) return `${head} → dropped`;
  const to: string[] = [];
  if (route.pubsub) {
    const extras = [
      route.pubsub.attributes.length ? `attributes ${route.pubsub.attributes.join(', ')}` : '',
      route.pubsub.orderingKey ? `ordering key ${route.pubsub.orderingKey.text}` : '',
      route.pubsub.data === 'fields' ? 'data fields' : '',
    ].filter(Boolean);
    to.push(`Pub/Sub ${route.pubsub.topic}${extras.length ? ` (${extras.join('; ')})` : ''}`);
  }
  if (route.bigquery) to.push(`BigQuery ${route.bigquery.dataset}.${route.bigquery.table}`);
  if (route.file) to.push('file');
  const fields = route.fields.map((f) => `${f.name} ${f.type}${f.optional ? '?' : ''} ← ${f.from.text}`);
  return `${head} (decode ${route.decode}${fields.length ? `; ${fields.join(', ')}` : ''}) → ${to.join(', ')}`;
}

/** The routes file as lines: the file, each route in order, and what happens to what matches none. */
export function describeRoutes(table: RoutesTable): string[] {
  const unmatched = { raw: 'the raw topic and table', dead_letter: 'dead-lettered (no_route)', drop: 'dropped' }[table.unmatched];
  return [
    `routes from ${JSON.stringify(table.file)}, tried in order:`,
    ...table.routes.map((r, i) => `  ${i + 1}. ${describeRoute(r)}`),
    `  unmatched: ${table.unmatched} (${unmatched})`,
  ];
}

/**
 * A route and where it sends, as plain data for the status page (`config.routes` of GET /api/status): names of
 * topics and tables only, which hold no secret. `pubsub` and `bigquery` are null when the route skips that sink.
 */
export interface RouteDestinations {
  name: string;
  topic: string;
  decode: Route['decode'];
  /** `projects/P/topics/T` */
  pubsub: string | null;
  /** `P.dataset.table`, P being `GCP_PROJECT_ID` as for the raw table. */
  bigquery: string | null;
  file: boolean;
  /** Acknowledged, counted and sent nowhere. */
  drop: boolean;
}

export function routeDestinations(route: Route, projectId: string | undefined): RouteDestinations {
  return {
    name: route.name,
    topic: route.topic.text,
    decode: route.decode,
    pubsub: route.pubsub?.topic ?? null,
    bigquery: route.bigquery ? `${projectId ?? '?'}.${route.bigquery.dataset}.${route.bigquery.table}` : null,
    file: route.file,
    drop: route.drop,
  };
}
