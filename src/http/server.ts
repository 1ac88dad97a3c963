import http from 'node:http';
import { IngestError, withCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { statusPageHtml } from './status-page.js';
import type { SourcesReport } from '../sources/tracker.js';
import { parseDeadlineSeconds } from './leave-deadline.js';

/** What the HTTP layer needs from the node: kept small so the server does not know the components. */
export interface HealthSource {
  /** Liveness: false only when the node decided it cannot recover (e.g. a broker crash loop). */
  isLive(): boolean;
  /** Readiness: the broker accepts connections, the subscriber is subscribed, the spool is writable and not full. */
  readiness(): { ready: boolean; components: Record<string, unknown> };
  /** Refreshes the gauges that are read from components (spool depth, oldest age) before a scrape. */
  refreshMetrics(): void;
  /** POST /leave: starts the leave (`mqtt-ingest leave`) or reports the one under way (node-leave.ts). */
  leave?(deadlineSeconds: number): { status: number; body: Record<string, unknown> };
}

/** The peers POST /leave is taken from: this host only (`kubectl exec POD -- mqtt-ingest leave`). */
export function isLoopbackPeer(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

/**
 * Health, readiness, metrics and status (contract §3). `/liveness_check` and `/readiness_check` are the
 * App Engine flexible paths; `/healthz` and `/readyz` the Kubernetes ones; both pairs answer the same.
 * The event loop is checked by a timer: a loop blocked for `loopStallMs` makes liveness fail.
 */
export class HttpServer {
  private server: http.Server | undefined;
  private lastTick = Date.now();
  private tick: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: {
      host?: string;
      port: number;
      logger: Logger;
      metrics: Metrics;
      health: HealthSource;
      loopStallMs?: number;
      /** GET /api/status, which the status page reads (status-api.ts). */
      status?: () => Promise<unknown>;
      /** GET /api/sources: the source table (src/sources/). */
      sources?: { report(silentOnly: boolean): SourcesReport };
    },
  ) {}

  async start(): Promise<number> {
    this.tick = setInterval(() => (this.lastTick = Date.now()), 1000);
    this.tick.unref();
    const server = http.createServer((req, res) => {
      this.route(req, res).catch((err: Error) => {
        this.opts.logger.error(withCode('HTTP_HANDLER_FAILED', { err: err.message, url: req.url }), 'http handler failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    server.keepAliveTimeout = 5_000;
    this.server = server;
    const host = this.opts.host ?? '0.0.0.0';
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, host, this.opts.port)));
      server.listen(this.opts.port, host, () => resolve());
    });
    // Errors after listening (a socket error surfacing on the server) are logged, never thrown out of the process.
    server.on('error', (err: Error) => this.opts.logger.error(withCode('HTTP_SERVER_ERROR', { err: err.message }), 'http server error'));
    const port = (server.address() as { port: number }).port;
    this.opts.logger.info(withCode('HTTP_LISTENING', { host, port }), 'http listening');
    return port;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const h = this.opts.health;
    switch (url.pathname) {
      case '/liveness_check':
      case '/healthz': {
        const stalled = Date.now() - this.lastTick > (this.opts.loopStallMs ?? 30_000);
        const live = h.isLive() && !stalled;
        // The same component states as readiness (contract §3: both answers carry them); only the status
        // code differs: a sink or broker outage is not a reason to restart the process.
        return json(res, live ? 200 : 503, { live, loopStalled: stalled, ...h.readiness().components });
      }
      case '/readiness_check':
      case '/readyz': {
        const r = h.readiness();
        this.opts.metrics.ready.set(r.ready ? 1 : 0);
        return json(res, r.ready ? 200 : 503, { ready: r.ready, ...r.components });
      }
      case '/metrics': {
        h.refreshMetrics();
        // ?name=X returns one metric only: a cheap poll for benchmarks and scripts.
        const name = url.searchParams.get('name');
        const body = name
          ? await this.opts.metrics.registry.getSingleMetricAsString(name).catch(() => '')
          : await this.opts.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.opts.metrics.registry.contentType });
        res.end(body);
        return;
      }
      case '/api/status': {
        h.refreshMetrics();
        const body = this.opts.status ? await this.opts.status() : { ready: h.readiness().ready, components: h.readiness().components };
        return json(res, 200, body);
      }
      case '/api/sources': {
        // Which topics went quiet (docs/operations.md, "Silent sources"); ?silent=true lists only those.
        if (!this.opts.sources) return json(res, 503, { error: 'the source table is not loaded yet' });
        return json(res, 200, this.opts.sources.report(url.searchParams.get('silent') === 'true'));
      }
      case '/leave': {
        // Makes the node stop taking messages for good: from this host only, and never by a GET a crawler might send.
        if (req.method !== 'POST') {
          res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' });
          res.end(JSON.stringify({ error: 'POST /leave only (mqtt-ingest leave)' }) + '\n');
          return;
        }
        const peer = req.socket.remoteAddress;
        if (!isLoopbackPeer(peer)) {
          return json(res, 403, { error: `POST /leave is taken from this host only (127.0.0.1 or ::1), not from ${peer ?? 'an unknown address'}: run mqtt-ingest leave where the node runs (kubectl exec POD -- mqtt-ingest leave)` });
        }
        if (!h.leave) return json(res, 503, { error: 'the node is still starting; ask again once it is up' });
        const deadline = parseDeadlineSeconds(url.searchParams.get('deadlineSeconds'));
        if (typeof deadline === 'string') return json(res, 400, { error: deadline });
        const answer = h.leave(deadline);
        if (answer.status < 300) this.opts.logger.info({ peer, deadlineSeconds: deadline, status: answer.status }, 'POST /leave');
        return json(res, answer.status, answer.body);
      }
      case '/': {
        h.refreshMetrics();
        const r = h.readiness();
        if ((req.headers.accept ?? '').includes('application/json')) return json(res, 200, { ready: r.ready, ...r.components });
        // The page draws itself from /api/status (status-page.ts): no state in the HTML, nothing fetched elsewhere.
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(statusPageHtml());
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found: try /readyz, /healthz, /metrics, /api/status or /\n');
    }
  }

  async stop(): Promise<void> {
    if (this.tick) clearInterval(this.tick);
    const server = this.server;
    if (!server) return;
    server.closeIdleConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** A bind failure in words that name the variables to change, as the broker's port errors do. */
function listenError(err: NodeJS.ErrnoException, host: string, port: number): IngestError {
  const why =
    err.code === 'EADDRINUSE'
      ? `port ${port} on ${host} is already in use by another process; set PORT to a free port`
      : err.code === 'EACCES'
        ? `this user may not listen on port ${port}; set PORT to 1024 or above`
        : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND'
          ? `${host} is not an address of this machine; set HTTP_HOST to one (0.0.0.0 for all)`
          : `cannot listen on ${host}:${port} (${err.code ?? err.message}); check PORT and HTTP_HOST`;
  return new IngestError('HTTP_START_FAILED', `HTTP server: ${why}`, { cause: err, context: { host, port } });
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body, null, 2) + '\n');
}
