/**
 * Authentication and authorisation of the embedded (Aedes) broker, with Mosquitto 2.0.11's semantics, so that
 * the same MQTT_AUTH_FILE, MQTT_ACL_FILE and TLS settings mean the same in both modes (docs/security.md):
 *
 * - With a password file, a client that gives a user name needs that user's password; a client without one is
 *   anonymous. Without a password file the user name is not checked (it only selects ACL entries).
 * - Anonymous clients are accepted only with MQTT_ALLOW_ANONYMOUS. (Mosquitto answers every refusal of an
 *   MQTT 3.1.1 client with return code 5, "not authorised"; so does this.)
 * - mTLS without a password file: on the TLS listeners the client certificate's Common Name is the user name
 *   and the CONNECT's user name and password are ignored (Mosquitto's use_identity_as_username).
 * - The ACL allows every subscription and checks `read` on each message forwarded (as Mosquitto does), and
 *   `write` on each publish. A denied publish is acknowledged and dropped, as Mosquitto does for MQTT 3.1.1
 *   (MQTT-3.3.5-2 lets a server acknowledge or disconnect; disconnecting makes a QoS 1 publisher resend forever).
 * - MQTT_CLIENT_ID, the node's subscriber id, is refused to every client: the embedded broker has no
 *   subscriber, and no one may hold a session under that name.
 * - On reload (SIGHUP) the files are read again and connected clients whose credentials no longer pass are
 *   disconnected, as Mosquitto's reload does; the others stay connected.
 */
import type { Aedes, AuthenticateError, Client } from 'aedes';
import { withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../core/metrics.js';
import { brokerMetrics, type BrokerMetrics } from '../broker-metrics.js';
import { Acl } from '../security/acl-file.js';
import { PasswordFile } from '../security/passwd-file.js';
import type { BrokerSecurity } from '../security/policy.js';

export type ListenerKind = 'mqtt' | 'mqtts' | 'ws' | 'wss';

export interface ConnectionInfo {
  listener: ListenerKind;
  /** The verified client certificate's first CN, on a TLS listener. */
  certCommonName?: string;
}

interface Identity {
  username: string | undefined;
  /** Kept, as Mosquitto keeps it, to check the client again after a reload. */
  password: Buffer | undefined;
  listener: ListenerKind;
}

/** MQTT 3.1.1 CONNACK return codes (§3.2.2.3). */
const IDENTIFIER_REJECTED = 2;
const NOT_AUTHORIZED = 5;

export class EmbeddedAuth {
  private passwords: PasswordFile | undefined;
  private acl: Acl | undefined;
  private readonly connections = new WeakMap<object, ConnectionInfo>();
  private readonly identities = new WeakMap<Client, Identity>();
  /** Payloads of denied publishes: Aedes copies the packet but keeps the payload, so this finds it when forwarding. */
  private readonly denied = new WeakSet<Buffer>();
  private readonly m: BrokerMetrics;

  constructor(
    private readonly opts: {
      security: BrokerSecurity;
      /** MQTT_CLIENT_ID: the subscriber's id, refused to every client here. */
      reservedClientId: string;
      logger: Logger;
      metrics: Metrics;
    },
  ) {
    this.m = brokerMetrics(opts.metrics);
    this.load();
  }

  /** Reads the password and ACL files; throws PasswordFileError or AclFileError listing each bad line. */
  private load(): void {
    const s = this.opts.security;
    const passwords = s.authFile ? PasswordFile.load(s.authFile) : undefined;
    const acl = s.aclFile ? Acl.load(s.aclFile) : undefined;
    this.passwords = passwords;
    this.acl = acl;
  }

  /** Remembers which listener a connection came in on (and its certificate) before Aedes takes it. */
  tag(connection: object, info: ConnectionInfo): void {
    this.connections.set(connection, info);
  }

  readonly authenticate = (
    client: Client,
    username: Readonly<string | undefined>,
    password: Readonly<Buffer | undefined>,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void => {
    const info = this.connections.get(client.conn) ?? { listener: 'mqtt' };
    if (client.id === this.opts.reservedClientId) {
      return this.refuse(client, done, IDENTIFIER_REJECTED, 'the client id is reserved for the node');
    }
    const identity: Identity = { username, password: password ? Buffer.from(password) : undefined, listener: info.listener };
    if (this.usesCertIdentity(info.listener)) identity.username = info.certCommonName;
    const why = this.check(identity);
    if (why) return this.refuse(client, done, NOT_AUTHORIZED, why);
    this.identities.set(client, identity);
    done(null, true);
  };

  private usesCertIdentity(listener: ListenerKind): boolean {
    return this.opts.security.identityFromCert && (listener === 'mqtts' || listener === 'wss');
  }

  /** Why the identity is refused, or undefined when it passes. */
  private check(identity: Identity): string | undefined {
    const s = this.opts.security;
    if (this.usesCertIdentity(identity.listener)) {
      return identity.username === undefined ? 'the client certificate has no Common Name' : undefined;
    }
    if (identity.username === undefined) return s.allowAnonymous ? undefined : 'anonymous clients are not allowed';
    if (!this.passwords) return s.allowAnonymous ? undefined : 'no password file, and anonymous clients are not allowed';
    return this.passwords.verify(identity.username, identity.password) ? undefined : 'bad user name or password';
  }

  private refuse(
    client: Client,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
    returnCode: number,
    why: string,
  ): void {
    this.m.refused('not_authorized');
    // The user name is not logged: a mistyped password is often typed into it.
    this.opts.logger.info(withCode('CLIENT_REFUSED', { clientId: client.id, reason: why }), 'connection refused');
    const err = Object.assign(new Error(why), { returnCode }) as AuthenticateError;
    done(err, false);
  }

  /** Whether `client` may publish to `topic`; without an ACL file everything is allowed. */
  mayPublish(client: Client | null, topic: string): boolean {
    if (!this.acl || !client) return true;
    return this.acl.allows(this.subjectOf(client), topic, 'write');
  }

  /**
   * Marks a publish the ACL denied, before it is acknowledged: it is not forwarded to any subscriber and not
   * kept as a retained message (an empty retained payload would also delete the retained message).
   */
  markDenied(packet: { payload: Buffer | string; retain: boolean }): void {
    const payload = Buffer.from(packet.payload as Buffer); // a copy of our own, so no other packet shares it
    packet.payload = payload;
    packet.retain = false;
    this.denied.add(payload);
  }

  readonly authorizeForward = <P extends { topic: string; payload: Buffer | string }>(client: Client, packet: P): P | null => {
    if (Buffer.isBuffer(packet.payload) && this.denied.has(packet.payload)) return null;
    if (this.acl && !this.acl.allows(this.subjectOf(client), packet.topic, 'read')) return null;
    return packet;
  };

  private subjectOf(client: Client): { username: string | undefined; clientId: string } {
    return { username: this.identities.get(client)?.username, clientId: client.id };
  }

  /**
   * Reads the files again (SIGHUP). On a bad file the old users and ACL stay in force and the error is thrown.
   * Clients whose credentials no longer pass are disconnected; returns how many.
   */
  reload(aedes: Aedes): number {
    this.load();
    let dropped = 0;
    const clients = (aedes as unknown as { clients: Record<string, Client> }).clients;
    for (const client of Object.values(clients)) {
      const identity = this.identities.get(client);
      if (!identity || this.check(identity) === undefined) continue;
      dropped += 1;
      this.opts.logger.info({ clientId: client.id }, 'disconnecting a client whose credentials no longer pass after the reload');
      client.close();
    }
    return dropped;
  }
}
