import path from 'node:path';
import { BrokerError } from '../../core/errors.js';
import type { Intake, IntakeDeps, IntakeReadiness, IntakeStatus, PublishOptions } from '../intake.js';
import { brokerSecurity } from '../security/policy.js';
import { EmbeddedBroker } from './embedded-broker.js';

/**
 * The embedded mode: Aedes in the node's process takes each publish through the group commit before its PUBACK
 * (embedded-broker.ts). There is no subscriber; the broker's listeners are the intake.
 */
export class EmbeddedIntake implements Intake {
  readonly mode = 'embedded' as const;
  readonly broker: EmbeddedBroker;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(deps: IntakeDeps) {
    const c = deps.config;
    this.broker = new EmbeddedBroker({
      host: c.MQTT_HOST,
      port: c.MQTT_PORT,
      // Both own-broker modes build their listeners, users, ACL and limits from the same settings (docs/security.md).
      security: brokerSecurity(c),
      reservedClientId: c.MQTT_CLIENT_ID,
      writer: deps.writer,
      logger: deps.logger,
      metrics: deps.metrics,
      onCommitted: deps.onCommitted,
      stateFile: path.join(c.DATA_DIR, 'broker', 'state.db'),
    });
  }

  start(): Promise<void> {
    if (this.stopping) return Promise.reject(new BrokerError('BROKER_START_FAILED', 'the embedded broker was stopped before it started'));
    this.starting ??= this.broker.start();
    return this.starting;
  }

  /**
   * Closes the listeners and disconnects the publishers: a publish waiting for its commit gets no PUBACK. A start
   * in progress (Aedes and its listeners opening) finishes first, so that nothing it opens stays open.
   */
  stopTaking(): Promise<void> {
    this.stopping ??= (this.starting ?? Promise.resolve()).catch(() => undefined).then(() => this.broker.stop());
    return this.stopping;
  }

  stop(): Promise<void> {
    return this.stopTaking();
  }

  /**
   * The same as stopTaking: the listeners close and the publishers are disconnected, to reconnect to another node
   * through the load balancer; what they sent and got no PUBACK for they resend there. What was committed stays
   * in the spool for the sinks.
   */
  leave(): Promise<void> {
    return this.stopTaking();
  }

  leaveRefusal(): string | undefined {
    return undefined;
  }

  readiness(): IntakeReadiness {
    if (this.broker.isUp()) return { ready: true };
    return { ready: false, reason: `the embedded broker is ${this.broker.status().state}` };
  }

  status(): IntakeStatus {
    return { mode: this.mode, broker: this.broker.status(), source: { state: this.broker.isUp() ? 'in-process' : 'down' } };
  }

  reload(): Promise<void> {
    return this.broker.reload();
  }

  /** Through Aedes, as the broker itself; never taken into the spool (embedded-broker.ts). */
  publish(topic: string, payload: Buffer, opts: PublishOptions): Promise<void> {
    return this.broker.publish(topic, payload, opts);
  }
}
