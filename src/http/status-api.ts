import type { Config } from '../config/schema.js';
import { enabledSinks } from '../sinks/registry.js';
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
  /** The silent sources and their setting, when the node tracks sources. */
  sources?: { silentAfterSeconds: number; silent: Array<{ topic: string; lastSeenAt: string; quietSeconds: number }> };
}

/** Where each enabled sink writes, in words an operator recognises; never a credential. */
export function sinkDestinations(c: Config): Record<string, string> {
  const out: Record<string, string> = {};
  for (const sink of enabledSinks(c)) {
    if (sink === 'pubsub') out.pubsub = `projects/${c.GCP_PROJECT_ID ?? '?'}/topics/${c.PUBSUB_TOPIC ?? '?'}`;
    else if (sink === 'bigquery') out.bigquery = `${c.GCP_PROJECT_ID ?? '?'}.${c.BIGQUERY_DATASET ?? '?'}.${c.BIGQUERY_TABLE ?? '?'}`;
    else if (sink === 'file') out.file = c.FILE_SINK_DIR;
    else out[sink] = 'on';
  }
  return out;
}

export async function statusBody(o: {
  readiness: { ready: boolean; components: Record<string, unknown> };
  history: StatusHistory;
  startedAt: number;
  config: Config;
  routes: RouteSummary[] | undefined;
  sources?: StatusBody['sources'];
}): Promise<StatusBody> {
  const { components } = o.readiness;
  return {
    ready: o.readiness.ready,
    version: components.version,
    startedAt: new Date(o.startedAt).toISOString(),
    uptimeSeconds: Math.round((Date.now() - o.startedAt) / 1000),
    components,
    history: await o.history.view(),
    config: { mode: components.mode, appEnv: o.config.APP_ENV, sinks: sinkDestinations(o.config), routes: o.routes ?? null },
    ...(o.sources ? { sources: o.sources } : {}),
  };
}
