import type { Intake, IntakeDeps, IntakeReadiness, IntakeStatus, PublishOptions } from '../intake.js';
import { Subscriber } from '../subscriber/subscriber.js';
import { externalBrokerIdentity, legacySubscriptionsKey } from '../subscriber/subscription-memory.js';

/**
 * An existing broker or cluster (MQTT_BROKER): the node starts nothing and only subscribes. Whether the broker
 * "accepts connections" is what the subscriber sees, so the broker counts as up while the subscriber is subscribed.
 */
export class ExternalIntake implements Intake {
  readonly mode = 'external' as const;
  private readonly subscriber: Subscriber;
  private readonly url: string;

  constructor(private readonly deps: IntakeDeps) {
    this.url = deps.config.MQTT_BROKER as string;
    this.subscriber = new Subscriber(deps);
  }

  async start(): Promise<void> {
    const c = this.deps.config;
    this.subscriber.start({
      url: this.url,
      username: c.MQTT_USERNAME,
      password: c.MQTT_PASSWORD,
      clientId: c.MQTT_CLIENT_ID,
      secretClientId: false,
      broker: externalBrokerIdentity(this.url),
      legacyKey: legacySubscriptionsKey(this.url),
    });
  }

  stopTaking(): Promise<void> {
    return this.subscriber.stop();
  }

  /** Unsubscribes (the broker hands the group's messages to the other members), drains, and ends the session. */
  leave(): Promise<void> {
    return this.subscriber.leave();
  }

  leaveRefusal(): string | undefined {
    return undefined;
  }

  stop(): Promise<void> {
    return this.subscriber.stop();
  }

  readiness(): IntakeReadiness {
    const reason = this.subscriber.notReadyReason();
    return reason === undefined ? { ready: true } : { ready: false, reason };
  }

  status(): IntakeStatus {
    const up = this.subscriber.isSubscribed();
    return {
      mode: this.mode,
      broker: { mode: this.mode, state: up ? 'up' : 'down', restarts: 0, detail: 'external broker; the node starts none' },
      source: this.subscriber.status(),
    };
  }

  async reload(): Promise<void> {
    this.deps.logger.info({ mode: this.mode }, 'SIGHUP: nothing to reload in this broker mode');
  }

  /**
   * On the subscriber's session, with the broker's ACL for MQTT_USERNAME: a denied publish is refused by an MQTT 5
   * broker's PUBACK at QoS 1, and dropped without a word at QoS 0 or by an MQTT 3.1.1 broker.
   */
  publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void> {
    return this.subscriber.publish(topic, payload, opts);
  }
}
