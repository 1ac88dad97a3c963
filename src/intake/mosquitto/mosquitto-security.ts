import { redactSecrets } from '../../core/redact.js';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BrokerError, withCode } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { BrokerMetrics } from '../broker-metrics.js';
import { listenWebSocket, type Listener, type TlsServerOptions } from '../security/listeners.js';
import type { MosquittoConfOptions } from './mosquitto-conf.js';
import { MosquittoSys } from './mosquitto-sys.js';
import { Acl } from '../security/acl-file.js';
import { subscriberClientId, writeInternalCredential, type InternalCredential } from './internal-credential.js';
import { PasswordFile } from '../security/passwd-file.js';
import { ListenerTls } from '../security/listener-tls.js';
import type { BrokerSecurity } from '../security/policy.js';
import { pickLoopbackPort, portIsFree } from './process-utils.js';

export interface SubscriberAuth {
  username: string;
  password: string;
  /** MQTT_CLIENT_ID with the secret suffix (internal-credential.ts). */
  clientId?: string;
}

/**
 * What the supervised Mosquitto needs beyond its conf: the internal user and loopback listener for the node's
 * own clients, the secret subscriber id, checked TLS files with their expiry watched, the $SYS reader, and the
 * WebSocket listener whose connections the node relays to a loopback listener of Mosquitto (the Debian build
 * of Mosquitto 2.0.11 has no WebSockets).
 */
export class MosquittoSecurity {
  private credential: InternalCredential | undefined;
  private subscriber: { clientId: string; secret: string } | undefined;
  private internalPort: number | undefined;
  private wsRelayPort: number | undefined;
  private sys: MosquittoSys | undefined;
  private ws: Listener | undefined;
  private readonly relayed = new Set<net.Socket>();
  private readonly listenerTls: ListenerTls;
  private tls: TlsServerOptions | undefined;
  /** `mqtt-ingest leave`: Mosquitto has its loopback listener only, and the node serves no WebSocket listener. */
  private publicClosed = false;

  constructor(
    private readonly opts: {
      dir: string;
      security: BrokerSecurity;
      clientId?: string;
      logger: Logger;
      metrics: BrokerMetrics;
    },
  ) {
    this.listenerTls = new ListenerTls({ tls: opts.security.tls, what: 'mosquitto TLS', metrics: opts.metrics, logger: opts.logger });
  }

  /** Writes the internal files, picks the loopback ports and checks the TLS files; throws BrokerError on a bad file. */
  async prepare(): Promise<void> {
    const o = this.opts;
    this.credential = writeInternalCredential(o.dir);
    if (o.clientId !== undefined) this.subscriber = subscriberClientId(o.dir, o.clientId);
    this.internalPort ??= readPort(this.portFile('internal')) ?? (await pickLoopbackPort());
    if (o.security.wsPort !== undefined) this.wsRelayPort ??= readPort(this.portFile('ws-relay')) ?? (await pickLoopbackPort());
    this.readTls();
  }

  /**
   * Keeps the loopback ports the same across node restarts (in DATA_DIR), once a leftover broker is gone: Mosquitto
   * ties a persisted session to the port of the listener it last came in on (per_listener_settings), and at load
   * finds that listener's ACL only on the same port. A session without its ACL takes no message until its client
   * reconnects (2.0.11 logs "Failed to associate persisted user ... with ACLs"), so what was published between a
   * restart and the subscriber's reconnection, QoS 1 or 0, was dropped. A remembered port that another process
   * holds by now is replaced; that one restart has the gap again.
   */
  async settlePorts(): Promise<void> {
    const internal = this.need(this.internalPort, 'internal port');
    if (!(await portIsFree('127.0.0.1', internal))) this.internalPort = await this.replaced('internal', internal);
    if (this.wsRelayPort !== undefined && !(await portIsFree('127.0.0.1', this.wsRelayPort))) {
      this.wsRelayPort = await this.replaced('ws-relay', this.wsRelayPort);
    }
    fs.writeFileSync(this.portFile('internal'), `${this.internalPort}\n`);
    if (this.wsRelayPort !== undefined) fs.writeFileSync(this.portFile('ws-relay'), `${this.wsRelayPort}\n`);
  }

  private async replaced(which: 'internal' | 'ws-relay', port: number): Promise<number> {
    const next = await pickLoopbackPort();
    this.opts.logger.warn(
      { listener: which, port, newPort: next },
      "a loopback port of the node's Mosquitto is taken by another process: a new one is used, and messages published before the node's clients reconnect are not queued for their sessions this time",
    );
    return next;
  }

  private portFile(which: 'internal' | 'ws-relay'): string {
    return path.join(this.opts.dir, `${which}-port`);
  }

  confOptions(): Pick<MosquittoConfOptions, 'security' | 'internal' | 'wsRelayPort'> {
    const c = this.need(this.credential, 'credential');
    return {
      security: this.opts.security,
      internal: { port: this.need(this.internalPort, 'internal port'), passwordFile: c.passwordFile, aclFile: c.aclFile },
      ...(this.wsRelayPort !== undefined ? { wsRelayPort: this.wsRelayPort } : {}),
    };
  }

  /** Every port Mosquitto binds, to check before it starts (another server there would answer for it). */
  ports(): Array<{ host: string; port: number }> {
    const s = this.opts.security;
    if (this.publicClosed) return [{ host: '127.0.0.1', port: this.need(this.internalPort, 'internal port') }];
    return [
      { host: '127.0.0.1', port: this.need(this.internalPort, 'internal port') },
      ...(s.plaintextPort !== undefined ? [{ host: s.host, port: s.plaintextPort }] : []),
      ...(s.tls ? [{ host: s.host, port: s.tls.port }] : []),
      ...(this.wsRelayPort !== undefined ? [{ host: '127.0.0.1', port: this.wsRelayPort }] : []),
    ];
  }

  /** Another server on one of the ports would make Mosquitto fail to bind: asked first, to say which. */
  async checkPortsFree(): Promise<void> {
    for (const { host, port } of this.ports()) {
      if (await portIsFree(host, port)) continue;
      throw new BrokerError(
        'BROKER_START_FAILED',
        `mosquitto cannot listen on ${host}:${port}: address already in use by another process ` +
          `(another broker, or a mosquitto not started by this node); stop it or choose another port`,
        { context: { host, port } },
      );
    }
  }

  get internalListenerPort(): number {
    return this.need(this.internalPort, 'internal port');
  }

  subscriberAuth(): SubscriberAuth {
    const c = this.need(this.credential, 'credential');
    return { username: c.username, password: c.password, ...(this.subscriber ? { clientId: this.subscriber.clientId } : {}) };
  }

  /** A log line without the subscriber's secret client id suffix. */
  redact(line: string): string {
    const secret = this.subscriber?.secret;
    return redactSecrets(line, [secret]);
  }

  /** Starts the $SYS reader and the WebSocket listener once Mosquitto accepts connections. */
  async startServices(): Promise<void> {
    const o = this.opts;
    const c = this.need(this.credential, 'credential');
    if (!this.sys) {
      this.sys = new MosquittoSys({
        url: `mqtt://127.0.0.1:${this.internalListenerPort}`,
        username: c.username,
        password: c.password,
        metrics: o.metrics,
        logger: o.logger,
      });
      this.sys.start();
    }
    const s = o.security;
    if (s.wsPort !== undefined && !this.ws && !this.publicClosed) {
      const relayPort = this.need(this.wsRelayPort, 'WebSocket relay port');
      this.ws = await listenWebSocket(
        { host: s.host, port: s.wsPort, maxConnections: s.maxConnections, maxMessageBytes: s.maxPacketBytes, ...(this.tls ? { tls: this.tls } : {}) },
        { onRefused: (reason, detail) => this.refused(reason, detail) },
        (stream) => {
          // Mosquitto checks user, password and ACL on the relay listener, as on the others.
          const upstream = net.connect({ host: '127.0.0.1', port: relayPort });
          this.relayed.add(upstream);
          upstream.setNoDelay(true);
          const done = () => {
            this.relayed.delete(upstream);
            upstream.destroy();
            stream.destroy();
          };
          upstream.on('error', done).on('close', done);
          stream.on('error', done).on('close', done);
          stream.pipe(upstream).pipe(stream);
        },
      );
    }
  }

  private refused(reason: Parameters<BrokerMetrics['refused']>[0], detail: string): void {
    this.opts.metrics.refused(reason);
    this.opts.logger.info(withCode('CLIENT_REFUSED', { reason, detail, listener: 'ws' }), 'connection refused');
  }

  /**
   * `mqtt-ingest leave`: closes the WebSocket listener and its relayed connections for good; the $SYS reader stays.
   * From now on ports() names the loopback listener of the node's own clients only.
   */
  async closePublic(): Promise<void> {
    this.publicClosed = true;
    for (const socket of this.relayed) socket.destroy();
    await this.ws?.close();
    this.ws = undefined;
  }

  async stopServices(): Promise<void> {
    this.listenerTls.stop();
    await this.sys?.stop();
    this.sys = undefined;
    for (const socket of this.relayed) socket.destroy();
    await this.ws?.close();
    this.ws = undefined;
  }

  /**
   * Checks the files Mosquitto re-reads on SIGHUP before it is sent: Mosquitto drops a bad password line and
   * keeps going, so a typo would lock a user out silently. Throws BrokerError listing the problems; on success
   * the WebSocket listener takes the new certificates too.
   */
  checkForReload(): void {
    const s = this.opts.security;
    const problems: string[] = [];
    for (const [load, file] of [
      [(f: string) => PasswordFile.load(f), s.authFile],
      [(f: string) => Acl.load(f), s.aclFile],
    ] as const) {
      if (file === undefined) continue;
      try {
        load(file);
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    try {
      this.readTls();
    } catch (err) {
      problems.push((err as Error).message);
    }
    if (problems.length > 0) {
      throw new BrokerError('BROKER_RELOAD_FAILED', `not reloading: ${problems.join('; ')}`, { context: { problems } });
    }
    if (this.tls) this.ws?.setTls?.(this.tls);
  }

  /** Checks the TLS files (a bad one throws BrokerError) and keeps the options for the WebSocket listener. */
  private readTls(): void {
    this.tls = this.listenerTls.read();
  }


  private need<T>(value: T | undefined, what: string): T {
    if (value === undefined) throw new BrokerError('BROKER_START_FAILED', `mosquitto: ${what} used before prepare()`);
    return value;
  }
}

/** A port remembered in `file`, or undefined (no file, or not a port). */
function readPort(file: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
  const port = Number(text);
  return /^\d+$/.test(text) && port >= 1024 && port <= 65535 ? port : undefined;
}
