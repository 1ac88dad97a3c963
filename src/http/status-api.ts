import type { StatusHistory, StatusHistoryView } from './status-history.js';
import { sinkAction } from './sink-actions.js';

/**
 * What a route shows on the status page: its name and MQTT topic template, and where it sends (routes/describe.ts
 * routeDestinations): names of topics and tables only, no secret.
 */
export interface RouteSummary {
  name: string;
  topic: string;
  decode: string;
  /** `projects/P/topics/T`, null when the route skips Pub/Sub. */
  pubsub: string | null;
  /** `P.dataset.table`, null when the route skips BigQuery. */
  bigquery: string | null;
  file: boolean;
  /** Sent nowhere: acknowledged and counted only. */
  drop: boolean;
}

/**
 * `GET /api/status` (docs/status-page.md): the readiness components, the rates and the spool's last hour, dead
 * letters by sink and reason, and a configuration summary without secrets (no password, key, credential or
 * file content: only the mode, the sinks with their destinations, and the routes' names, topics and destinations).
 */
export interface StatusBody {
  ready: boolean;
  /** The node's clock when it answered: the page compares the sinks' times with it, not with the browser's clock. */
  generatedAt: string;
  version: unknown;
  startedAt: string;
  uptimeSeconds: number;
  components: Record<string, unknown>;
  history: StatusHistoryView;
  config: {
    mode: unknown;
    appEnv: string;
    sinks: Record<string, string>;
    routes: RouteSummary[] | null;
    /** What matches no route (`raw`, `dead_letter`, `drop`); null without a routes file. */
    routesUnmatched: string | null;
  };
  /** The silent sources and their setting, when the node tracks sources: `count` of them, the first 100 in `silent`. */
  sources?: { silentAfterSeconds: number; count: number; silent: Array<{ topic: string; lastSeenAt: string; quietSeconds: number }> };
}

export async function statusBody(o: {
  readiness: { ready: boolean; components: Record<string, unknown> };
  history: StatusHistory;
  startedAt: number;
  /** APP_ENV, and each enabled sink's destination (sinks/registry.ts sinkDestinations). */
  config: { appEnv: string; sinks: Record<string, string> };
  routes: RouteSummary[] | undefined;
  routesUnmatched?: string;
  sources?: StatusBody['sources'];
}): Promise<StatusBody> {
  const components = withSinkActions(o.readiness.components);
  const now = Date.now();
  return {
    ready: o.readiness.ready,
    generatedAt: new Date(now).toISOString(),
    version: components.version,
    startedAt: new Date(o.startedAt).toISOString(),
    uptimeSeconds: Math.round((now - o.startedAt) / 1000),
    components,
    history: await o.history.view(),
    config: {
      mode: components.mode,
      appEnv: o.config.appEnv,
      sinks: o.config.sinks,
      routes: o.routes ?? null,
      routesUnmatched: o.routes ? (o.routesUnmatched ?? null) : null,
    },
    ...(o.sources ? { sources: o.sources } : {}),
  };
}

/**
 * The readiness components, each sink with a problem given `action` (what an operator does, in words) and `runbook`
 * (the section of docs/runbook.md): the page shows them in the sink's banner. /readyz stays as it is.
 */
function withSinkActions(components: Record<string, unknown>): Record<string, unknown> {
  const sinks = components.sinks as Record<string, { state: string; reason?: string; detail?: string }> | undefined;
  if (!sinks) return components;
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(sinks)) {
    const a = sinkAction(name, s);
    out[name] = a ? { ...s, action: a.action, runbook: a.runbook } : s;
  }
  return { ...components, sinks: out };
}
