import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../core/metrics.js';
import type { BrokerSecurity } from '../security/policy.js';
import type { BrokerProbeOptions } from './broker-probe.js';
import type { MosquittoConfOptions } from './mosquitto-conf.js';

/** What the supervisor of the node's Mosquitto (mosquitto.ts) is built from. */
export interface MosquittoBrokerOptions {
  /** The mosquitto binary (a name on PATH or a path). */
  bin: string;
  host: string;
  port: number;
  /** The node's DATA_DIR (absolute); the broker's conf, pid file and database go in `<dataDir>/mosquitto/`. */
  dataDir: string;
  logger: Logger;
  metrics?: Metrics;
  /** First restart delay after a crash (default 500 ms), doubling up to restartCapMs (default 30 s). */
  restartBaseMs?: number;
  restartCapMs?: number;
  /** Time between SIGTERM and SIGKILL (default 5 s). Mosquitto saves its database on SIGTERM. */
  stopGraceMs?: number;
  /** How long start-up may take before the child is killed and start() rejects (default 30 s). */
  startTimeoutMs?: number;
  /** A broker up this long has recovered: the restart backoff starts again from restartBaseMs (default 30 s). */
  stableAfterMs?: number;
  /** Queue limits and other settings of the rendered mosquitto.conf. */
  conf?: Pick<MosquittoConfOptions, 'maxInflightMessages' | 'maxQueuedMessages' | 'persistentClientExpiration' | 'autosaveIntervalS' | 'sysIntervalS'>;
  /** Listeners, users, ACL and limits. Omitted: one plaintext listener on host:port for anonymous clients. */
  security?: BrokerSecurity;
  /** MQTT_CLIENT_ID: the subscriber's client id, which gets a secret suffix (internal-credential.ts). */
  clientId?: string;
  /**
   * Unexpected deaths and failed restarts within crashLoopWindowMs after which the broker stops restarting and
   * emits 'fatal' (default 5 within 120 s): a container restart then does better than a node without a broker.
   */
  crashLoopFailures?: number;
  crashLoopWindowMs?: number;
  /** The hang check (broker-probe.ts): interval, timeout and unanswered probes before the child is killed. */
  probe?: Pick<BrokerProbeOptions, 'intervalMs' | 'timeoutMs' | 'failures'>;
}
