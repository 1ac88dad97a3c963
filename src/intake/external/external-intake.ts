import type { Broker, BrokerStatus } from '../intake.js';

/**
 * An existing broker or cluster (MQTT_BROKER): the node starts nothing and only subscribes. Whether it
 * "accepts connections" is what the subscriber sees, so `isUp` asks the subscriber's connection state.
 */
export class ExternalBroker implements Broker {
  readonly mode = 'external' as const;
  private connected: () => boolean = () => false;

  constructor(private readonly url: string) {}

  /** Wires the subscriber's connection state in, once the subscriber exists. */
  observe(connected: () => boolean): void {
    this.connected = connected;
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}

  isUp(): boolean {
    return this.connected();
  }

  status(): BrokerStatus {
    return { mode: 'external', state: this.connected() ? 'up' : 'down', restarts: 0, detail: 'external broker; the node starts none' };
  }

  subscriberUrl(): string {
    return this.url;
  }
}
