/**
 * What a routes file asks of the sinks, as the plain data buildSinks and `provision` take (registry.ts
 * SinkRouting): each route's typed table with its shape, whether the raw table still takes messages, whether
 * Pub/Sub publishes carry ordering keys, and the routes' Pub/Sub topics.
 */
import type { SinkRouting } from '../sinks/registry.js';
import type { RouteTable, TableShape } from '../sinks/bigquery/table-check.js';
import { compareTypedTable, typedTableResource } from './table-schema.js';
import type { Route, RoutesTable } from './types.js';

/** The shape of a route's typed table (table-schema.ts), as the BigQuery sink's table check takes it. */
export function typedTableShape(route: Route): TableShape {
  return {
    rows: `the rows of route ${route.name}`,
    resource: () => ({ ...typedTableResource(route) }),
    compare: (table) => compareTypedTable(route, table),
  };
}

/** What a routes table asks of the sinks (registry.ts SinkRouting): typed tables, raw table use, ordering, topics. */
export function sinkRouting(table: RoutesTable): SinkRouting {
  const bigqueryTables: RouteTable[] = [];
  const pubsubTopics: string[] = [];
  for (const route of table.routes) {
    // Routes writing one table must agree on its columns (a problem of the routes file otherwise): the first one's shape is the table's.
    if (route.bigquery && !bigqueryTables.some((t) => t.table === route.bigquery!.table)) {
      bigqueryTables.push({ table: route.bigquery.table, shape: typedTableShape(route) });
    }
    if (route.pubsub && !pubsubTopics.includes(route.pubsub.topic)) pubsubTopics.push(route.pubsub.topic);
  }
  return {
    bigqueryTables,
    rawTable: table.unmatched === 'raw',
    pubsubOrdered: table.routes.some((r) => r.pubsub?.orderingKey !== undefined),
    pubsubTopics,
  };
}
