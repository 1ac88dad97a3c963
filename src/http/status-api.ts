import type { StatusHistory, StatusHistoryView } from './status-history.js';

/** What a route shows on the status page: its name and where it sends. */
export interface RouteSummary {
  name: string;
  topic: string;
}

/**
 * `GET /api/status` (docs/status-page.md): the readiness components, the rates and the spool's last hour, dead
 * letters by sink and reason, and a configuration summary without secrets (no password, key, credential or
 * file content: only the mode, the sinks with their destinations, and the routes' names and topics).
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
  sources?: StatusBody['sources'];
}): Promise<StatusBody> {
  const { components } = o.readiness;
  const now = Date.now();
  return {
    ready: o.readiness.ready,
    generatedAt: new Date(now).toISOString(),
    version: components.version,
    startedAt: new Date(o.startedAt).toISOString(),
    uptimeSeconds: Math.round((now - o.startedAt) / 1000),
    components,
    history: await o.history.view(),
    config: { mode: components.mode, appEnv: o.config.appEnv, sinks: o.config.sinks, routes: o.routes ?? null },
    ...(o.sources ? { sources: o.sources } : {}),
  };
}
