/**
 * The broker-security settings of the node's own broker, worked out from the configuration, and the rules that
 * make a bad or insecure setup fail at start (ARCHITECTURE §2.5, docs/security.md). They are the own broker's
 * section's (config.ts), which the configuration loader runs so that `check-config` and `run` report every problem
 * at once; both broker modes build their listeners from `brokerSecurity()`, so they enforce the same settings.
 */
import fs from 'node:fs';
import path from 'node:path';
import { looksLikeSecretRef } from '../../core/settings/key.js';
import type { EnvironmentConfig } from '../../core/settings/node.js';
import type { Valid } from '../../core/settings/section.js';
import type { IntakeConfig } from '../config.js';
import type { BrokerSecurityInput, OwnBrokerConfig } from './keys.js';
import { Acl } from './acl-file.js';
import { parsePasswordFile } from './passwd-file.js';
import { loadTlsMaterial } from './tls-material.js';

export interface TlsListenerSettings {
  port: number;
  certFile: string;
  keyFile: string;
  caFile?: string;
  requireClientCert: boolean;
}

export interface BrokerSecurity {
  host: string;
  /** MQTT_PORT when MQTT_PLAINTEXT is on; undefined when the plaintext listener is off. */
  plaintextPort?: number;
  tls?: TlsListenerSettings;
  /** MQTT over WebSockets; secure WebSockets with the TLS settings when `tls` is set. */
  wsPort?: number;
  authFile?: string;
  aclFile?: string;
  allowAnonymous: boolean;
  /** mTLS without a password file: the client certificate's Common Name is the user name (use_identity_as_username). */
  identityFromCert: boolean;
  maxPacketBytes: number;
  maxConnections: number;
  /**
   * The embedded broker's limits on what clients may make it hold (docs/security.md); Mosquitto has its own.
   * Omitted: DEFAULT_EMBEDDED_LIMITS.
   */
  embeddedLimits?: EmbeddedLimits;
}

export interface EmbeddedLimits {
  /** MQTT_MAX_CONNECT_BYTES: the largest first packet of a connection (its CONNECT). */
  maxConnectBytes: number;
  /** MQTT_MAX_PARTIAL_BYTES: bytes of incomplete packets held for all connections together. */
  maxPartialBytes: number;
  /** MQTT_PARTIAL_PACKET_TIMEOUT_SECONDS, in ms: an incomplete packet receiving no byte for this long is dropped. */
  partialPacketTimeoutMs: number;
  /** MQTT_MAX_RETAINED_MESSAGES, MQTT_MAX_RETAINED_BYTES: the retained messages kept (topic and payload bytes). */
  maxRetainedMessages: number;
  maxRetainedBytes: number;
  /** MQTT_MAX_QUEUED_MESSAGES: QoS 1/2 messages queued per persistent session. */
  maxQueuedMessages: number;
  /** MQTT_MAX_SESSION_EXPIRY_SECONDS: how long a disconnected persistent session is kept at most. */
  maxSessionExpirySeconds: number;
}

/** The embedded limits with their configuration defaults. */
export const DEFAULT_EMBEDDED_LIMITS: EmbeddedLimits = {
  maxConnectBytes: 64 * 1024,
  maxPartialBytes: 256 * 1024 * 1024,
  partialPacketTimeoutMs: 60_000,
  maxRetainedMessages: 50_000,
  maxRetainedBytes: 32 * 1024 * 1024,
  maxQueuedMessages: 1000,
  maxSessionExpirySeconds: 14 * 24 * 3600,
};

/** The settings both broker modes build their listeners from. File paths are made absolute (Mosquitto's conf needs that). */
export function brokerSecurity(c: OwnBrokerConfig & Pick<IntakeConfig, 'MQTT_HOST' | 'MQTT_PORT'>): BrokerSecurity {
  const abs = (file: string) => path.resolve(file);
  const tls: TlsListenerSettings | undefined =
    c.MQTT_TLS_CERT && c.MQTT_TLS_KEY
      ? {
          port: c.MQTT_TLS_PORT,
          certFile: abs(c.MQTT_TLS_CERT),
          keyFile: abs(c.MQTT_TLS_KEY),
          ...(c.MQTT_TLS_CA ? { caFile: abs(c.MQTT_TLS_CA) } : {}),
          requireClientCert: c.MQTT_TLS_REQUIRE_CLIENT_CERT,
        }
      : undefined;
  return {
    host: c.MQTT_HOST,
    ...(c.MQTT_PLAINTEXT ? { plaintextPort: c.MQTT_PORT } : {}),
    ...(tls ? { tls } : {}),
    ...(c.MQTT_WS_PORT !== undefined ? { wsPort: c.MQTT_WS_PORT } : {}),
    ...(c.MQTT_AUTH_FILE ? { authFile: abs(c.MQTT_AUTH_FILE) } : {}),
    ...(c.MQTT_ACL_FILE ? { aclFile: abs(c.MQTT_ACL_FILE) } : {}),
    allowAnonymous: c.MQTT_ALLOW_ANONYMOUS,
    identityFromCert: tls?.requireClientCert === true && !c.MQTT_AUTH_FILE,
    maxPacketBytes: c.MQTT_MAX_PACKET_BYTES,
    maxConnections: c.MQTT_MAX_CONNECTIONS,
    embeddedLimits: {
      maxConnectBytes: c.MQTT_MAX_CONNECT_BYTES,
      maxPartialBytes: c.MQTT_MAX_PARTIAL_BYTES,
      partialPacketTimeoutMs: c.MQTT_PARTIAL_PACKET_TIMEOUT_SECONDS * 1000,
      maxRetainedMessages: c.MQTT_MAX_RETAINED_MESSAGES,
      maxRetainedBytes: c.MQTT_MAX_RETAINED_BYTES,
      maxQueuedMessages: c.MQTT_MAX_QUEUED_MESSAGES,
      maxSessionExpirySeconds: c.MQTT_MAX_SESSION_EXPIRY_SECONDS,
    },
  };
}

/** One plaintext listener for anonymous clients, no size or count limits: standalone brokers in tests and tools. */
export function openPlaintext(host: string, port: number): BrokerSecurity {
  return {
    host,
    plaintextPort: port,
    allowAnonymous: true,
    identityFromCert: false,
    maxPacketBytes: 268_435_455,
    maxConnections: 1_000_000,
    embeddedLimits: {
      ...DEFAULT_EMBEDDED_LIMITS,
      maxConnectBytes: 268_435_455,
      maxPartialBytes: Number.MAX_SAFE_INTEGER,
      maxRetainedMessages: Number.MAX_SAFE_INTEGER,
      maxRetainedBytes: Number.MAX_SAFE_INTEGER,
    },
  };
}

/** The defaults that follow APP_ENV: open in dev, closed in pprd and prd. Fills only what was not given. */
export function applyBrokerSecurityDefaults(values: Partial<OwnBrokerConfig & EnvironmentConfig>): void {
  const env = values.APP_ENV;
  if (env === undefined) return;
  values.MQTT_PLAINTEXT ??= env === 'dev';
  values.MQTT_ALLOW_ANONYMOUS ??= env === 'dev';
}

/** Whether the node runs a broker of its own (the security keys apply) rather than subscribing to an external one. */
export function runsOwnBroker(c: Partial<Pick<IntakeConfig, 'MQTT_BROKER_MODE' | 'MQTT_BROKER'>>): boolean {
  return c.MQTT_BROKER_MODE === 'mosquitto' || c.MQTT_BROKER_MODE === 'embedded' || (c.MQTT_BROKER_MODE === 'auto' && c.MQTT_BROKER === undefined);
}

const SECURITY_KEYS = ['MQTT_TLS_CERT', 'MQTT_TLS_KEY', 'MQTT_TLS_CA', 'MQTT_WS_PORT', 'MQTT_AUTH_FILE', 'MQTT_ACL_FILE'] as const;

/**
 * The insecure parts of a pprd/prd setup: the plaintext listener, no TLS, anonymous access. Empty in dev.
 * With MQTT_ALLOW_INSECURE these are warnings (at start and in the readiness JSON); without it, problems.
 */
export function insecureFindings(c: Partial<BrokerSecurityInput>): string[] {
  if (c.APP_ENV === 'dev') return [];
  if (!runsOwnBroker(c)) {
    const clear = externalCredentialsInClear(c);
    return clear ? [`${clear} in ${c.APP_ENV}; use mqtts:// or wss://`] : [];
  }
  const env = c.APP_ENV;
  const found: string[] = [];
  if (c.MQTT_PLAINTEXT) found.push(`MQTT_PLAINTEXT: the plaintext listener on MQTT_PORT (${c.MQTT_PORT}) is on in ${env}; set MQTT_PLAINTEXT=off`);
  if (!(c.MQTT_TLS_CERT && c.MQTT_TLS_KEY)) {
    found.push(`MQTT_TLS_CERT: TLS is not configured in ${env}; set MQTT_TLS_CERT and MQTT_TLS_KEY`);
  }
  if (c.MQTT_ALLOW_ANONYMOUS) {
    found.push(`MQTT_ALLOW_ANONYMOUS: anonymous access is allowed in ${env}; set MQTT_ALLOW_ANONYMOUS=false and MQTT_AUTH_FILE or client certificates`);
  }
  return found;
}

/**
 * The subscriber would send a password to an external broker over a plaintext connection (mqtt://, tcp://, ws://):
 * anyone on the path reads it. The same rule as for the node's own plaintext listener: refused in pprd/prd unless
 * MQTT_ALLOW_INSECURE, a warning in dev.
 */
export function externalCredentialsInClear(c: Partial<BrokerSecurityInput>): string | undefined {
  if (c.MQTT_BROKER === undefined || runsOwnBroker(c)) return undefined;
  let url: URL;
  try {
    url = new URL(c.MQTT_BROKER);
  } catch {
    return undefined;
  }
  const scheme = url.protocol.slice(0, -1).toLowerCase();
  if (!['mqtt', 'tcp', 'ws'].includes(scheme)) return undefined;
  const credentials = [c.MQTT_USERNAME !== undefined && 'MQTT_USERNAME', c.MQTT_PASSWORD !== undefined && 'MQTT_PASSWORD', url.password !== '' && 'a password in the URL'].filter(Boolean);
  if (credentials.length === 0) return undefined;
  return `MQTT_BROKER: ${scheme}:// is plaintext, so the subscriber's credentials (${credentials.join(', ')}) would cross the network in clear`;
}

/**
 * Cross-key rules of the broker-security keys. `valid` tells whether keys parsed; a rule runs only on valid
 * keys, so one mistake is reported once.
 */
export function checkBrokerSecurity(
  c: Partial<BrokerSecurityInput>,
  valid: Valid<BrokerSecurityInput>,
  problems: string[],
  warnings: string[],
): void {
  if (!valid('MQTT_BROKER', 'MQTT_BROKER_MODE')) return;
  if (!runsOwnBroker(c)) {
    const ignored = SECURITY_KEYS.filter((k) => c[k] !== undefined);
    if (ignored.length > 0) {
      warnings.push(`${ignored.join(', ')}: ignored: the node subscribes to the external broker MQTT_BROKER and starts none of its own`);
    }
    if (valid('APP_ENV', 'MQTT_ALLOW_INSECURE', 'MQTT_USERNAME', 'MQTT_PASSWORD')) {
      const clear = externalCredentialsInClear(c);
      if (clear && c.APP_ENV === 'dev') warnings.push(`${clear}; use mqtts:// or wss:// outside dev`);
      for (const finding of insecureFindings(c)) {
        if (c.MQTT_ALLOW_INSECURE) warnings.push(`${finding} (allowed by MQTT_ALLOW_INSECURE=true)`);
        else problems.push(`${finding}, or set MQTT_ALLOW_INSECURE=true to accept the risk`);
      }
    }
    return;
  }
  const tlsOn = !!(c.MQTT_TLS_CERT && c.MQTT_TLS_KEY);
  if (valid('MQTT_TLS_CERT', 'MQTT_TLS_KEY')) {
    if (c.MQTT_TLS_CERT && !c.MQTT_TLS_KEY) problems.push('MQTT_TLS_KEY: is unset while MQTT_TLS_CERT is set; set both to turn the TLS listener on');
    if (c.MQTT_TLS_KEY && !c.MQTT_TLS_CERT) problems.push('MQTT_TLS_CERT: is unset while MQTT_TLS_KEY is set; set both to turn the TLS listener on');
  }
  if (valid('MQTT_TLS_REQUIRE_CLIENT_CERT', 'MQTT_TLS_CA', 'MQTT_TLS_CERT', 'MQTT_TLS_KEY')) {
    if (c.MQTT_TLS_REQUIRE_CLIENT_CERT && !c.MQTT_TLS_CA) {
      problems.push('MQTT_TLS_REQUIRE_CLIENT_CERT: is on but MQTT_TLS_CA is unset; set it to the authorities that sign client certificates');
    }
    if (c.MQTT_TLS_REQUIRE_CLIENT_CERT && !tlsOn) {
      problems.push('MQTT_TLS_REQUIRE_CLIENT_CERT: is on but there is no TLS listener; set MQTT_TLS_CERT and MQTT_TLS_KEY');
    }
    if (c.MQTT_TLS_CA && !tlsOn) problems.push('MQTT_TLS_CA: is used only by the TLS listener; set MQTT_TLS_CERT and MQTT_TLS_KEY too');
    if (c.MQTT_TLS_CA && tlsOn && !c.MQTT_TLS_REQUIRE_CLIENT_CERT) {
      warnings.push('MQTT_TLS_CA: is set but MQTT_TLS_REQUIRE_CLIENT_CERT is off, so client certificates are not asked for');
    }
  }
  if (valid('MQTT_PLAINTEXT', 'MQTT_WS_PORT', 'MQTT_TLS_CERT', 'MQTT_TLS_KEY')) {
    if (!c.MQTT_PLAINTEXT && !tlsOn && c.MQTT_WS_PORT === undefined) {
      problems.push('MQTT_PLAINTEXT: is off and no other listener is configured (MQTT_TLS_CERT and MQTT_TLS_KEY, or MQTT_WS_PORT): no client could connect');
    } else if (!c.MQTT_PLAINTEXT && !tlsOn && c.MQTT_WS_PORT !== undefined) {
      problems.push('MQTT_WS_PORT: would take plaintext WebSockets while MQTT_PLAINTEXT is off; set MQTT_TLS_CERT and MQTT_TLS_KEY for secure WebSockets');
    }
  }
  if (valid('MQTT_PLAINTEXT', 'MQTT_PORT', 'MQTT_TLS_PORT', 'MQTT_WS_PORT', 'PORT', 'MQTT_TLS_CERT', 'MQTT_TLS_KEY')) {
    checkPorts(c, tlsOn, problems);
  }
  if (valid('MQTT_ALLOW_ANONYMOUS', 'MQTT_AUTH_FILE', 'MQTT_TLS_REQUIRE_CLIENT_CERT')) {
    if (!c.MQTT_ALLOW_ANONYMOUS && !c.MQTT_AUTH_FILE && !c.MQTT_TLS_REQUIRE_CLIENT_CERT) {
      problems.push(
        'MQTT_ALLOW_ANONYMOUS: is false but no client could authenticate; set MQTT_AUTH_FILE (passwords) or ' +
          'MQTT_TLS_REQUIRE_CLIENT_CERT with MQTT_TLS_CA (certificates)',
      );
    }
  }
  if (valid('MQTT_BROKER_MODE', 'MQTT_WS_PORT', 'MQTT_TLS_REQUIRE_CLIENT_CERT', 'MQTT_AUTH_FILE')) {
    if (c.MQTT_BROKER_MODE === 'mosquitto') {
      const problem = mosquittoWebSocketProblem(c);
      if (problem) problems.push(problem);
    }
  }
  if (valid('APP_ENV', 'MQTT_ALLOW_INSECURE', 'MQTT_PLAINTEXT', 'MQTT_ALLOW_ANONYMOUS', 'MQTT_TLS_CERT', 'MQTT_TLS_KEY')) {
    for (const finding of insecureFindings(c)) {
      if (c.MQTT_ALLOW_INSECURE) warnings.push(`${finding} (allowed by MQTT_ALLOW_INSECURE=true)`);
      else problems.push(`${finding}, or set MQTT_ALLOW_INSECURE=true to accept the risk`);
    }
  }
  checkFiles(c, valid, problems);
}

/**
 * Mosquitto 2.0.11 as packaged by Debian has no WebSockets, so the node relays WebSocket clients to a loopback
 * listener. Mosquitto then sees no client certificate, so it cannot take the user name from one.
 */
export function mosquittoWebSocketProblem(c: Partial<BrokerSecurityInput>): string | undefined {
  if (c.MQTT_WS_PORT === undefined || !c.MQTT_TLS_REQUIRE_CLIENT_CERT || c.MQTT_AUTH_FILE) return undefined;
  return (
    'MQTT_WS_PORT: with MQTT_TLS_REQUIRE_CLIENT_CERT and no MQTT_AUTH_FILE the user name comes from the client ' +
    'certificate, which Mosquitto cannot see on WebSocket connections the node relays to it; set MQTT_AUTH_FILE, ' +
    'unset MQTT_WS_PORT or use MQTT_BROKER_MODE=embedded'
  );
}

function checkPorts(c: Partial<BrokerSecurityInput>, tlsOn: boolean, problems: string[]): void {
  const listeners: Array<[string, number]> = [];
  if (c.MQTT_PLAINTEXT) listeners.push(['MQTT_PORT', c.MQTT_PORT!]);
  if (tlsOn) listeners.push(['MQTT_TLS_PORT', c.MQTT_TLS_PORT!]);
  if (c.MQTT_WS_PORT !== undefined) listeners.push(['MQTT_WS_PORT', c.MQTT_WS_PORT]);
  if (c.PORT) listeners.push(['PORT', c.PORT]); // 0 picks a free port: no clash
  for (let i = 0; i < listeners.length; i++) {
    for (let j = 0; j < i; j++) {
      const [a, pa] = listeners[j]!;
      const [b, pb] = listeners[i]!;
      if (pa === pb) problems.push(`${b}: ${pb} is also ${a}; each listener needs its own port`);
    }
  }
}

/** The files must be readable and valid now; a Secret Manager reference is checked after `run` fetched it. */
function checkFiles(c: Partial<BrokerSecurityInput>, valid: Valid<BrokerSecurityInput>, problems: string[]): void {
  const given = (k: 'MQTT_TLS_CERT' | 'MQTT_TLS_KEY' | 'MQTT_TLS_CA' | 'MQTT_AUTH_FILE' | 'MQTT_ACL_FILE') =>
    valid(k) && c[k] !== undefined && !looksLikeSecretRef(c[k]) ? c[k] : undefined;
  const certFile = given('MQTT_TLS_CERT');
  const keyFile = given('MQTT_TLS_KEY');
  if (certFile && keyFile) {
    const caFile = given('MQTT_TLS_CA');
    problems.push(...loadTlsMaterial({ certFile, keyFile, ...(caFile ? { caFile } : {}) }).problems);
  }
  const authFile = given('MQTT_AUTH_FILE');
  if (authFile) {
    const text = readText('MQTT_AUTH_FILE', authFile, problems);
    if (text !== undefined) {
      for (const p of parsePasswordFile(text).problems) problems.push(`MQTT_AUTH_FILE: ${JSON.stringify(authFile)} ${p}`);
    }
  }
  const aclFile = given('MQTT_ACL_FILE');
  if (aclFile) {
    const text = readText('MQTT_ACL_FILE', aclFile, problems);
    if (text !== undefined) {
      for (const p of Acl.parse(text).problems) problems.push(`MQTT_ACL_FILE: ${JSON.stringify(aclFile)} ${p}`);
    }
  }
}

function readText(name: string, file: string, problems: string[]): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`${name}: cannot read ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    return undefined;
  }
}
