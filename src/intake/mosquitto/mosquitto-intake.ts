import { BrokerError } from '../../core/errors.js';
import { PublishError, type Intake, type IntakeDeps, type IntakeReadiness, type IntakeStatus, type PublishOptions } from '../intake.js';
import { brokerSecurity, mosquittoWebSocketProblem } from '../security/policy.js';
import { Subscriber } from '../subscriber/subscriber.js';
import { OWN_MOSQUITTO } from '../subscriber/subscription-memory.js';
import { INTERNAL_WRITE_PREFIX } from './internal-credential.js';
import { MosquittoBroker } from './mosquitto.js';

/**
 * Why a node in the mosquitto mode does not leave: its publishers connect to its own Mosquitto, which acknowledges
 * each message on receipt; unsubscribing would leave those it still holds to nobody. docs/operations.md gives the
 * way to scale such nodes down.
 */
export const MOSQUITTO_LEAVE_REFUSAL =
  'leave is not available in the mosquitto broker mode: the publishers connect to this node\'s own Mosquitto, which ' +
  'has acknowledged what it holds, so the node cannot hand it to another; scale down by stopping the node (SIGTERM) ' +
  'and keeping its volume (DATA_DIR) for a node that starts on it later (docs/operations.md, "Scaling down: mqtt-ingest leave")';

/**
 * The mosquitto mode: a supervised Mosquitto child takes the publishers (mosquitto.ts), and the node's subscriber
 * takes its messages over the loopback listener with the internal credential and a client id with a secret
 * suffix (internal-credential.ts). The child's crash loop makes the node not live (`onFatal`).
 */
export class MosquittoIntake implements Intake {
  readonly mode = 'mosquitto' as const;
  readonly broker: MosquittoBroker;
  private readonly subscriber: Subscriber;
  private stopping: Promise<void> | undefined;

  constructor(private readonly deps: IntakeDeps) {
    const c = deps.config;
    this.broker = new MosquittoBroker({
      bin: c.MOSQUITTO_BIN,
      host: c.MQTT_HOST,
      port: c.MQTT_PORT,
      dataDir: deps.dataDir,
      logger: deps.logger,
      metrics: deps.metrics,
      // Both own-broker modes build their listeners, users, ACL and limits from the same settings (docs/security.md).
      security: brokerSecurity(c),
      clientId: c.MQTT_CLIENT_ID,
    });
    // A crash loop: no longer live, and `run` exits non-zero so that the platform restarts the container.
    this.broker.on('fatal', (err: Error) => deps.onFatal(err.message));
    this.subscriber = new Subscriber(deps);
  }

  async start(): Promise<void> {
    // check-config knows the mode only when it is set explicitly; with `auto` this is the first place it is known.
    const wsProblem = mosquittoWebSocketProblem(this.deps.config);
    if (wsProblem) throw new BrokerError('BROKER_START_FAILED', wsProblem);
    await this.broker.start();
    const auth = this.broker.subscriberAuth();
    this.subscriber.start({
      url: this.broker.subscriberUrl(),
      username: auth.username,
      password: auth.password,
      clientId: auth.clientId ?? this.deps.config.MQTT_CLIENT_ID,
      secretClientId: auth.clientId !== undefined,
      // The loopback port can change between starts (mosquitto-security.ts); the broker, its persistence under DATA_DIR, does not.
      broker: OWN_MOSQUITTO,
    });
  }

  /** Disconnects the subscriber; the publishers stay connected to Mosquitto, which keeps what it has not delivered. */
  stopTaking(): Promise<void> {
    return this.subscriber.stop();
  }

  /** Refused (leaveRefusal): the node's Mosquitto acknowledged on receipt what it holds, and only it can hand it over. */
  leave(): Promise<void> {
    return Promise.reject(new BrokerError('LEAVE_REFUSED', MOSQUITTO_LEAVE_REFUSAL));
  }

  leaveRefusal(): string | undefined {
    return MOSQUITTO_LEAVE_REFUSAL;
  }

  /** Stops the child (SIGTERM: it saves its database; SIGKILL after the grace period). */
  stop(): Promise<void> {
    this.stopping ??= this.stopTaking().then(() => this.broker.stop());
    return this.stopping;
  }

  readiness(): IntakeReadiness {
    if (!this.broker.isUp()) {
      const s = this.broker.status();
      return { ready: false, reason: `mosquitto is ${s.state}${s.detail ? `: ${s.detail}` : ''}` };
    }
    const reason = this.subscriber.notReadyReason();
    return reason === undefined ? { ready: true } : { ready: false, reason };
  }

  status(): IntakeStatus {
    return { mode: this.mode, broker: this.broker.status(), source: this.subscriber.status() };
  }

  reload(): Promise<void> {
    return this.broker.reload();
  }

  /**
   * On the subscriber's session over the loopback listener, whose ACL lets the node write the Sparkplug namespace
   * only (internal-credential.ts): another topic is refused here rather than dropped by Mosquitto without a word.
   */
  publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void> {
    if (!topic.startsWith(INTERNAL_WRITE_PREFIX)) {
      return Promise.reject(new PublishError('refused', `not published: the node publishes on its own Mosquitto under ${INTERNAL_WRITE_PREFIX} only`));
    }
    return this.subscriber.publish(topic, payload, opts);
  }
}
