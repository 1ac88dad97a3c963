import type { Logger } from '../../core/logger.js';
import { BrokerError } from '../../core/errors.js';
import type { BrokerMetrics } from '../broker-metrics.js';
import type { TlsServerOptions } from './listeners.js';
import { CertWatch } from './cert-watch.js';
import type { TlsListenerSettings } from './policy.js';
import { loadTlsMaterial } from './tls-material.js';

/**
 * The TLS files of the node's listeners, read at start and at every reload, in both broker modes: checked
 * (a bad file is a BrokerError naming every problem), turned into Node's TLS options, and their expiry watched
 * (security/cert-watch.ts).
 */
export class ListenerTls {
  private certWatch: CertWatch | undefined;

  constructor(
    private readonly opts: {
      tls: TlsListenerSettings | undefined;
      /** Names the broker in error messages ("embedded broker TLS", "mosquitto TLS"). */
      what: string;
      metrics: BrokerMetrics;
      logger: Logger;
    },
  ) {}

  /** Reads and checks the files; undefined without TLS. Throws BrokerError (BROKER_START_FAILED) on a bad file. */
  read(): TlsServerOptions | undefined {
    const t = this.opts.tls;
    if (!t) return undefined;
    const { material, problems } = loadTlsMaterial(t);
    if (!material) throw new BrokerError('BROKER_START_FAILED', `${this.opts.what}: ${problems.join('; ')}`, { context: { problems } });
    this.certWatch ??= new CertWatch({ metrics: this.opts.metrics, logger: this.opts.logger });
    this.certWatch.update(material);
    return { cert: material.cert, key: material.key, ...(material.ca ? { ca: material.ca } : {}), requireClientCert: t.requireClientCert };
  }

  /** Stops the expiry check. */
  stop(): void {
    this.certWatch?.stop();
  }
}
