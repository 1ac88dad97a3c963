/**
 * The common interface of every broker mode (ARCHITECTURE §1): a supervised Mosquitto child, the embedded
 * Aedes broker, or an external broker the node only connects to. The supervisor starts the broker first and
 * stops it last; readiness asks `isUp()`.
 */
export type BrokerState = 'starting' | 'up' | 'down' | 'stopped';

export interface BrokerStatus {
  mode: 'mosquitto' | 'embedded' | 'external';
  state: BrokerState;
  /** Restarts after an unexpected death since this broker object was created. */
  restarts: number;
  /** The broker's process id, for a child process. */
  pid?: number;
  /** A human-readable reason for the state, such as the last error. */
  detail?: string;
}

export interface Broker {
  readonly mode: 'mosquitto' | 'embedded' | 'external';
  /** Resolves once the broker accepts connections; rejects with BrokerError when it cannot start. */
  start(): Promise<void>;
  /** Stops the broker (SIGTERM, then SIGKILL after a grace period for a child). Idempotent. */
  stop(): Promise<void>;
  isUp(): boolean;
  status(): BrokerStatus;
  /** mqtt:// URL the node's own subscriber connects to (loopback for a local broker). */
  subscriberUrl(): string;
  /** The internal credential (and secret client id) of the node's subscriber, for a broker that makes one. */
  subscriberAuth?(): { username: string; password: string; clientId?: string };
  /** SIGHUP: re-reads the password file, ACL file and certificates without dropping connected clients. */
  reload?(): Promise<void>;
}
