import { withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { BrokerMetrics } from '../broker-metrics.js';
import { earliestExpiry, type TlsMaterial } from './tls-material.js';

const DAY_MS = 86_400_000;

/**
 * Certificate expiry as a metric (`mqtt_ingest_tls_cert_expiry_seconds`) and a warning from 14 days ahead:
 * at start, at every reload, and then once a day (checked hourly) until the files are replaced.
 */
export class CertWatch {
  private expiries: Array<{ cert: 'server' | 'client_ca'; at: number }> = [];
  private timer: NodeJS.Timeout | undefined;
  private lastWarned = 0;

  constructor(
    private readonly opts: { metrics: BrokerMetrics; logger: Logger; warnDays?: number; now?: () => number },
  ) {}

  /** Takes the certificates now in use (at start and after each reload). */
  update(material: TlsMaterial): void {
    const server = earliestExpiry(material.chain);
    const ca = earliestExpiry(material.caCerts);
    this.expiries = [
      ...(server !== undefined ? [{ cert: 'server' as const, at: server }] : []),
      ...(ca !== undefined ? [{ cert: 'client_ca' as const, at: ca }] : []),
    ];
    this.lastWarned = 0;
    this.check();
    if (!this.timer) {
      this.timer = setInterval(() => this.check(), 3_600_000);
      this.timer.unref();
    }
  }

  private check(): void {
    const now = (this.opts.now ?? Date.now)();
    const warnMs = (this.opts.warnDays ?? 14) * DAY_MS;
    const soon: string[] = [];
    for (const { cert, at } of this.expiries) {
      this.opts.metrics.tlsCertExpiry.set({ cert }, Math.round((at - now) / 1000));
      if (at - now < warnMs) soon.push(`${cert} (${new Date(at).toISOString()})`);
    }
    if (soon.length > 0 && now - this.lastWarned >= DAY_MS) {
      this.lastWarned = now;
      this.opts.logger.warn(
        withCode('TLS_CERT_EXPIRING', { expiring: soon }),
        `TLS certificates expire within ${this.opts.warnDays ?? 14} days: replace the files and send SIGHUP (docs/security.md)`,
      );
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
