import { BrokerError } from '../../core/errors.js';
import { PublishError, type Intake, type IntakeDeps, type IntakeReadiness, type IntakeStatus, type PublishOptions } from '../intake.js';
import { brokerSecurity, mosquittoWebSocketProblem } from '../security/policy.js';
import { Subscriber } from '../subscriber/subscriber.js';
import { OWN_MOSQUITTO } from '../subscriber/subscription-memory.js';
import { INTERNAL_WRITE_PREFIX } from './internal-credential.js';
import { MosquittoBroker } from './mosquitto.js';

/**
 * Why a node in the mosquitto mode with MQTT_SHARE_GROUP does not leave: the key is set there for the node whose
 * Mosquitto other nodes subscribe to (docs/operations.md, "Several nodes on one broker"). Closing its public listener
 * would cut them off, and what Mosquitto queued or had in flight for their sessions would stay in it, acknowledged
 * to the publishers and handed to nobody.
 */
export const MOSQUITTO_SHARED_LEAVE_REFUSAL =
  'leave is not available in the mosquitto broker mode with MQTT_SHARE_GROUP: other nodes subscribe to this node\'s ' +
  'own Mosquitto, and closing its public listener would cut them off with what it queued for them; leave one of those ' +
  'nodes instead, or stop this one (SIGTERM) keeping its volume (DATA_DIR) (docs/operations.md, "Scaling down: mqtt-ingest leave")';

/** Where a leave is: closing the public listeners, draining the subscriber's session, stopping Mosquitto, done. */
type LeavePhase = 'closing' | 'draining' | 'stopping' | 'left';

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
  private leaving: Promise<void> | undefined;
  private leavePhase: LeavePhase | undefined;

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

  /**
   * `mqtt-ingest leave` (docs/operations.md, "Scaling down"). Mosquitto acknowledged on receipt what it holds for the
   * node's session, so that must come to the node before the session goes:
   * 1. Mosquitto restarts with the loopback listener only (mosquitto.ts, closePublicListeners): the publishers are
   *    disconnected and, the node being not ready, reconnect through the load balancer to another node. The
   *    subscriber stays subscribed until then: unsubscribed, its session would no longer take what they still publish.
   * 2. The subscriber leaves (session-leave.ts): it unsubscribes (Mosquitto 2.0 still delivers what it had queued
   *    for the session), takes everything through the group commit until all is acknowledged and Mosquitto has been
   *    quiet for a second, then disconnects with session expiry 0.
   * 3. Mosquitto is stopped: it holds nothing for anyone, and a supervised child that crash-looped after `left` would
   *    make the node exit, restart and rejoin with its public listeners.
   */
  leave(): Promise<void> {
    const refusal = this.leaveRefusal();
    if (refusal) return Promise.reject(new BrokerError('LEAVE_REFUSED', refusal));
    this.leaving ??= this.leaveSteps();
    return this.leaving;
  }

  private async leaveSteps(): Promise<void> {
    this.leavePhase = 'closing';
    await this.broker.closePublicListeners();
    this.leavePhase = 'draining';
    await this.subscriber.leave();
    // Ended by a stop (SIGTERM) rather than left: the session and its queue stay, and stop() stops Mosquitto.
    if (this.subscriber.status().state !== 'left') return;
    this.leavePhase = 'stopping';
    await this.broker.stop();
    this.leavePhase = 'left';
  }

  leaveRefusal(): string | undefined {
    return this.deps.config.MQTT_SHARE_GROUP ? MOSQUITTO_SHARED_LEAVE_REFUSAL : undefined;
  }

  /** What the leave waits for (node-leave.ts shows it in `components.leave.detail`). */
  leaveProgress(): string | undefined {
    const b = this.broker.status();
    const broker = `mosquitto is ${b.state}${b.detail ? `: ${b.detail}` : ''}`;
    switch (this.leavePhase) {
      case 'closing':
        return `restarting the node's Mosquitto with its loopback listener only, which disconnects the publishers (${broker})`;
      case 'draining': {
        const s = this.subscriber.status() as { state?: string; lastError?: string };
        const sub = `the subscriber is ${s.state ?? 'starting'}${s.lastError ? ` (${s.lastError})` : ''}`;
        return `taking what the node's Mosquitto (loopback listener only) still holds for the node's session: ${sub}${b.state === 'up' ? '' : `; ${broker}`}`;
      }
      case 'stopping':
        return "stopping the node's Mosquitto: the node's session is drained and discarded";
      default:
        return undefined;
    }
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
    const broker = this.broker.status();
    // After a leave Mosquitto is stopped for good: say why, rather than a bare `stopped`.
    if (this.leavePhase === 'left' && broker.state === 'stopped') broker.detail = 'stopped by mqtt-ingest leave, after the node took everything it held; the public listeners stay closed';
    return { mode: this.mode, broker, source: this.subscriber.status() };
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
