/**
 * The routes file (`ROUTES_FILE`): YAML with `routes` (tried in order, the first match wins) and `unmatched`.
 * Every problem is found in one reading and reported together, each with its line, the route (by name, or
 * by position when it has no usable name) and the key, so an operator fixes the file in one round.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { fsReason } from '../core/settings/text.js';
import { readRoute, ROUTE_NAME, type RoutesContext } from './route-reader.js';
import { typedTableFields } from './table-schema.js';
import { covers, type TopicTemplate } from './template.js';
import { UNMATCHED, type Route, type RoutesTable, type Unmatched } from './types.js';
import { NodeReader, type Problem } from './yaml-nodes.js';

export type { Problem } from './yaml-nodes.js';
export type { RoutesContext } from './route-reader.js';

export type RoutesReading = { table: RoutesTable; problems: [] } | { table?: undefined; problems: Problem[] };

/** Reads and checks the routes file at `file`. */
export function readRoutesFile(file: string, ctx: RoutesContext): RoutesReading {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { problems: [{ message: `cannot read the routes file (${fsReason(err)})` }] };
  }
  return parseRoutes(text, file, ctx);
}

/** Checks the text of a routes file; `file` is only named in the result. */
export function parseRoutes(text: string, file: string, ctx: RoutesContext): RoutesReading {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const problems: Problem[] = [];
  for (const err of doc.errors) {
    const { line, col } = lines.linePos(err.pos[0]);
    problems.push({ line, message: `column ${col}: ${err.message.split('\n')[0]}` });
  }
  if (problems.length > 0) return { problems };
  const r = new NodeReader(doc, lines, problems);

  const top = r.entries(doc.contents);
  if (!top) {
    problems.push({ line: r.line(doc.contents) ?? 1, message: 'must be a mapping with a routes list (and optionally unmatched)' });
    return { problems };
  }
  for (const e of top) {
    if (e.key !== 'routes' && e.key !== 'unmatched') problems.push({ line: r.line(e.keyNode), key: e.key, message: 'is not a routes file key (routes or unmatched)' });
  }

  const unmatchedEntry = top.find((e) => e.key === 'unmatched');
  const unmatched = unmatchedEntry ? r.scalar(unmatchedEntry.value) : 'raw';
  if (typeof unmatched !== 'string' || !(UNMATCHED as readonly string[]).includes(unmatched)) {
    problems.push({
      line: r.line(unmatchedEntry?.value),
      key: 'unmatched',
      message: `must be raw (the raw topic and table), dead_letter or drop, got ${r.kind(unmatchedEntry?.value)}`,
    });
  }

  const routesEntry = top.find((e) => e.key === 'routes');
  const items = routesEntry ? r.items(routesEntry.value) : undefined;
  if (!routesEntry) problems.push({ line: 1, key: 'routes', message: 'is missing: the file lists its routes under routes:' });
  else if (!items) problems.push({ line: r.line(routesEntry.value) ?? r.line(routesEntry.keyNode), key: 'routes', message: `must be a list of routes, got ${r.kind(routesEntry.value)}` });
  else if (items.length === 0) problems.push({ line: r.line(routesEntry.keyNode), key: 'routes', message: 'is empty' });

  const routes: Route[] = [];
  const topics: { label: string; topic: TopicTemplate }[] = [];
  const seen = new Map<string, number>();
  for (const [index, node] of (items ?? []).entries()) {
    const { route, topic } = readRoute(r, node, index, ctx);
    const name = r.text(r.entries(node)?.find((e) => e.key === 'name')?.value);
    const label = name !== undefined && ROUTE_NAME.test(name) ? `route ${JSON.stringify(name)}` : `routes[${index}]`;
    if (name !== undefined) {
      const first = seen.get(name);
      if (first !== undefined) {
        problems.push({ line: r.line(node), route: label, key: 'name', message: `is also the name of routes[${first}]; route names are unique (they label metrics)` });
      } else seen.set(name, index);
    }
    if (topic) {
      // Checked on every sound topic, so a route with other mistakes is not spared this one.
      const earlier = topics.find((e) => covers(e.topic, topic));
      if (earlier) {
        problems.push({
          line: r.line(node),
          route: label,
          key: 'topic',
          message: `${JSON.stringify(topic.text)} can never match: the earlier ${earlier.label} (${JSON.stringify(earlier.topic.text)}) takes every topic it would; move it above or narrow the earlier one`,
        });
      }
      topics.push({ label, topic });
    }
    if (route) {
      routes.push(route);
      tableProblems(route, routes, unmatched === 'raw' ? ctx.bigqueryRawTable : undefined, (message) =>
        problems.push({ line: r.line(node), route: label, key: 'bigquery.table', message }),
      );
    }
  }
  // In file order, as an operator reads the file.
  problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  if (problems.length > 0) return { problems };
  return { table: { file, routes, unmatched: unmatched as Unmatched }, problems: [] };
}

/**
 * A route's table must take its rows alone: another route writing to the same table must make the same columns,
 * and the raw table (`unmatched: raw` writes raw rows to it) is no route's table.
 */
function tableProblems(route: Route, earlier: readonly Route[], rawTable: string | undefined, problem: (message: string) => void): void {
  const table = route.bigquery?.table;
  if (table === undefined) return;
  if (table === rawTable) {
    problem(`${JSON.stringify(table)} is BIGQUERY_TABLE, the raw table that unmatched: raw writes to; give the route a table of its own`);
    return;
  }
  const columns = (r: Route) => JSON.stringify(typedTableFields(r).map((f) => [f.name, f.type, f.mode]));
  const other = earlier.find((e) => e !== route && e.bigquery?.table === table);
  if (other && columns(other) !== columns(route)) {
    problem(`${JSON.stringify(table)} is also the table of route ${JSON.stringify(other.name)}, whose rows have other columns; give each route its own table, or both the same variables and fields`);
  }
}

/** A problem as one line: `line 7, route "pressure", fields.bar.type: "flaot" is not a field type; …`. */
export function describeProblem(p: Problem): string {
  const where = [p.line !== undefined ? `line ${p.line}` : undefined, p.route, p.key]
    .filter((part) => part !== undefined)
    .join(', ');
  return where ? `${where}: ${p.message}` : p.message;
}
