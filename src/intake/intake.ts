import type { DataDirConfig } from '../core/settings/node.js';
import type { DispatchConfig } from '../dispatch/config.js';
import type { BrokerSecurityInput } from './security/keys.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { SpoolWriter } from '../spool/group-commit.js';
import type { MetaStore } from './subscriber/subscription-memory.js';

/**
 * How messages come in (ARCHITECTURE §1), one implementation per broker mode: the embedded Aedes broker, which
 * commits each publish itself before its PUBACK (embedded/embedded-intake.ts); a supervised Mosquitto child and
 * the node's subscriber to it (mosquitto/mosquitto-intake.ts); the subscriber alone, to an external broker
 * (external/external-intake.ts). create-intake.ts picks one from the resolved mode; node.ts starts it after the
 * spool, the sinks and HTTP, and stops it in two steps around the flush of the sinks.
 */
export type IntakeMode = 'mosquitto' | 'embedded' | 'external';

export type BrokerState = 'starting' | 'up' | 'down' | 'stopped';

/** The broker's part of the readiness JSON (`components.broker`). */
export interface BrokerStatus {
  mode: IntakeMode;
  state: BrokerState;
  /** Restarts after an unexpected death since this broker object was created. */
  restarts: number;
  /** The broker's process id, for a child process. */
  pid?: number;
  /** A human-readable reason for the state, such as the last error. */
  detail?: string;
  /** The MQTT versions publishers may connect with (the node's own broker modes). */
  mqttVersions?: string[];
}

/** What both own-broker modes speak: Aedes 2 and Mosquitto 2. */
export const OWN_BROKER_MQTT_VERSIONS = ['3.1', '3.1.1', '5'];

/** What the readiness endpoint shows of the intake, under `components.broker` and `components.source`. */
export interface IntakeStatus {
  mode: IntakeMode;
  broker: BrokerStatus;
  source: Record<string, unknown>;
}

export interface IntakeReadiness {
  /** True while messages are taken: the broker accepts connections and, with a subscriber, it is subscribed. */
  ready: boolean;
  /** Why not, when not ready. */
  reason?: string;
}

export interface Intake {
  readonly mode: IntakeMode;
  /**
   * Resolves once the broker accepts connections and the subscriber (if any) is connecting; the subscriber
   * reconnects on its own, so readiness says when messages flow. Rejects with BrokerError when the broker
   * cannot start.
   */
  start(): Promise<void>;
  /**
   * SIGTERM, first step: takes no more messages. Messages not yet committed are not acknowledged and stay at
   * the broker (a publisher of the embedded broker resends them). Idempotent.
   */
  stopTaking(): Promise<void>;
  /** Last step, once the spool is closed: also stops what the intake runs (the Mosquitto child). Idempotent. */
  stop(): Promise<void>;
  /**
   * `mqtt-ingest leave` (scale-down, docs/operations.md): stops taking messages for good, so that the publishers or
   * the broker's other subscribers take over, and keeps what must still be drained. Resolves once the node holds
   * nothing at the broker any more (external: unsubscribed, drained, the session discarded). Idempotent; stop()
   * still follows it.
   */
  leave(): Promise<void>;
  /** Why this node cannot leave (the mosquitto mode with MQTT_SHARE_GROUP, whose Mosquitto other nodes use), or undefined. */
  leaveRefusal(): string | undefined;
  /** While leave() is under way, what it waits for, in words for `components.leave.detail`; undefined: the default words. */
  leaveProgress?(): string | undefined;
  readiness(): IntakeReadiness;
  status(): IntakeStatus;
  /** SIGHUP: the broker re-reads its password file, ACL file and certificates; a mode with none says so. */
  reload(): Promise<void>;
  /**
   * Publishes one message as the node (a Sparkplug NCMD to an edge node): the embedded broker publishes it itself,
   * the other modes send it on the subscriber's session. It is a command from the node, not a message to it, so it
   * is never taken into the spool. Resolves once sent (QoS 0) or acknowledged by the broker (QoS 1); rejects with
   * a PublishError when it cannot be, and nothing is queued: the caller retries later.
   */
  publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void>;
}

export interface PublishOptions {
  qos: 0 | 1;
  retain?: boolean;
}

/**
 * Why a publish failed: `unavailable`, no broker or connection to publish on (the caller retries later); `lost`,
 * the connection closed before the publish was written or acknowledged (it may or may not have reached the
 * broker); `busy`, too many publishes await their PUBACK; `refused`, by the broker (an MQTT 5 reason code) or
 * here (a topic the node may not publish to, an invalid topic name).
 */
export type PublishFailure = 'unavailable' | 'lost' | 'busy' | 'refused';

export class PublishError extends Error {
  constructor(
    readonly reason: PublishFailure,
    message: string,
  ) {
    super(message);
    this.name = 'PublishError';
  }
}

/**
 * The configuration an intake reads: its own keys (intake/config.ts) and the own broker's (security/config.ts),
 * APP_ENV, DATA_DIR, the HTTP port no listener may take, and the retry delays the subscriber reconnects with.
 */
export type IntakeSettings = BrokerSecurityInput & DataDirConfig & Pick<DispatchConfig, 'RETRY_INITIAL_DELAY_MS' | 'RETRY_MAX_DELAY_MS'>;

/** What every intake is built from. */
export interface IntakeDeps {
  config: IntakeSettings;
  /** DATA_DIR, absolute. */
  dataDir: string;
  /** The group commit every message goes through before it is acknowledged. */
  writer: SpoolWriter;
  /** Where the subscriber remembers its session's filters (the spool's meta table). */
  meta: MetaStore;
  logger: Logger;
  metrics: Metrics;
  /** Called after each commit, so the dispatcher leases new rows at once. */
  onCommitted: () => void;
  /** The intake cannot recover (Mosquitto's crash loop): the node is no longer live. */
  onFatal: (reason: string) => void;
}
