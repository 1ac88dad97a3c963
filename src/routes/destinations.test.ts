import { describe, expect, it } from 'vitest';
import { describeProblem, parseRoutes } from './routes-file.js';
import { sinkRouting, typedTableShape } from './destinations.js';
import { typedTableResource } from './table-schema.js';
import type { RoutesTable } from './types.js';

const CTX = { pubsubTopic: 'projects/p/topics/raw', gcpProjectId: 'p', bigqueryDataset: 'ds', fileSink: false };

function routes(text: string): RoutesTable {
  const r = parseRoutes(text, 'routes.yaml', CTX);
  if (!r.table) throw new Error(r.problems.map(describeProblem).join('\n'));
  return r.table;
}

const FILE = `routes:
  - name: pressure
    topic: plant/{site}/pressure/{sensor}
    decode: json
    fields:
      bar: { from: payload.bar, type: float }
    pubsub:
      topic: readings
      ordering_key: "{site}/{sensor}"
    bigquery:
      table: pressure
  - name: pressure_old
    topic: old/{site}/pressure/{sensor}
    decode: json
    fields:
      bar: { from: payload.bar, type: float }
    pubsub:
      topic: readings
    bigquery:
      table: pressure
  - name: flow
    topic: plant/{site}/flow
    pubsub:
      topic: projects/other/topics/flow
  - name: vibration
    topic: plant/{site}/vibration
    pubsub: false
  - name: debug
    topic: debug/#
    drop: true
unmatched: dead_letter
`;

describe('sinkRouting', () => {
  it('lists each route table once with its typed shape, the distinct topics, ordering and the raw table off', () => {
    const table = routes(FILE);
    const routing = sinkRouting(table);
    // vibration has no table of its own named: it takes its route's name.
    expect(routing.bigqueryTables.map((t) => t.table)).toEqual(['pressure', 'flow', 'vibration']);
    expect(routing.bigqueryTables.map((t) => t.shape.rows)).toEqual(['the rows of route pressure', 'the rows of route flow', 'the rows of route vibration']);
    expect(routing.bigqueryTables[0]!.shape.resource()).toEqual(typedTableResource(table.routes[0]!));
    expect(routing.pubsubTopics).toEqual(['projects/p/topics/readings', 'projects/other/topics/flow']);
    expect(routing.pubsubOrdered).toBe(true);
    expect(routing.rawTable).toBe(false);
  });

  it('keeps the raw table with unmatched: raw (the default), and has no ordering without an ordering key', () => {
    const routing = sinkRouting(routes('routes:\n  - name: a\n    topic: a/#\n    bigquery: false\n'));
    expect(routing).toEqual({ bigqueryTables: [], rawTable: true, pubsubOrdered: false, pubsubTopics: ['projects/p/topics/raw'] });
  });

  it("compares an existing table with the route's: a new optional field is a column to add, a new required one a difference", () => {
    const before = routes(FILE).routes[0]!;
    const after = routes(FILE.replaceAll('      bar: { from: payload.bar, type: float }\n', '      bar: { from: payload.bar, type: float }\n      n: { from: payload.n, type: int, optional: true }\n      m: { from: payload.m, type: int }\n')).routes[0]!;
    const c = typedTableShape(after).compare({ ...typedTableResource(before) });
    expect(c.add.map((f) => `${f.name} ${f.type} ${f.mode}`)).toEqual(['n INTEGER NULLABLE']);
    expect(c.differences).toEqual([expect.stringMatching(/^column m is missing \(want INTEGER REQUIRED/)]);
    expect(typedTableShape(before).compare({ ...typedTableResource(before) })).toEqual({ add: [], differences: [], warnings: [] });
  });
});
