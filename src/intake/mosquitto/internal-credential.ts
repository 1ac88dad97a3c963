/**
 * The node's own credential on its supervised Mosquitto (docs/security.md, "The node's subscriber"):
 *
 * - a user that exists only in a password file of the node's loopback listener, with a random password made at
 *   every start and never written anywhere but as a hash (nor logged);
 * - an ACL for that listener that lets the user read every topic and $SYS, and write the Sparkplug namespace (the
 *   commands the node sends to edge nodes, Intake.publish);
 * - a client id for the subscriber that nobody else knows: MQTT_CLIENT_ID plus a random suffix kept in
 *   DATA_DIR. Mosquitto 2.0.11 lets any authenticated client on any listener take over a session by naming its
 *   client id, and nothing in its password or ACL files can bind an id to a user; an id that cannot be guessed
 *   (128 random bits) is what keeps others out of the subscriber's session and its queued messages.
 *   The suffix stays the same across restarts (the persistent session depends on it) and is removed from the
 *   broker's log lines before they are relayed.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { hashPassword } from '../security/passwd-file.js';

/** The internal user's name. It is not secret; the password is. */
export const INTERNAL_USER = 'mqtt-ingest-node';

/** The topics the internal user may publish to: the Sparkplug namespace (`spBv1.0/#` in its ACL). */
export const INTERNAL_WRITE_PREFIX = 'spBv1.0/';

export interface InternalCredential {
  username: string;
  password: string;
  passwordFile: string;
  aclFile: string;
}

/** Makes a new password and writes the internal listener's password and ACL files (0600) into `dir`. */
export function writeInternalCredential(dir: string): InternalCredential {
  fs.mkdirSync(dir, { recursive: true });
  const password = randomBytes(32).toString('base64url');
  const passwordFile = path.join(dir, 'internal.passwd');
  const aclFile = path.join(dir, 'internal.acl');
  writePrivate(passwordFile, `${INTERNAL_USER}:${hashPassword(password)}\n`);
  writePrivate(
    aclFile,
    [
      '# Rendered by mqtt-ingest at every start: the node reads every topic, and $SYS for its metrics, and writes',
      '# the Sparkplug commands it sends to edge nodes.',
      `user ${INTERNAL_USER}`,
      'topic read #',
      'topic read $SYS/#',
      `topic write ${INTERNAL_WRITE_PREFIX}#`,
      '',
    ].join('\n'),
  );
  return { username: INTERNAL_USER, password, passwordFile, aclFile };
}

/**
 * The subscriber's client id: `<clientId>-<suffix>`, the suffix read from `<dir>/subscriber-id` or made once.
 * Returns the suffix too, so log lines can be cleaned of it.
 */
export function subscriberClientId(dir: string, clientId: string): { clientId: string; secret: string } {
  const file = path.join(dir, 'subscriber-id');
  let secret: string | undefined;
  try {
    secret = fs.readFileSync(file, 'utf8').trim();
  } catch {
    // First start on this DATA_DIR.
  }
  if (!secret || !/^[A-Za-z0-9_-]{22,}$/.test(secret)) {
    secret = randomBytes(16).toString('base64url');
    fs.mkdirSync(dir, { recursive: true });
    writePrivate(file, `${secret}\n`);
  }
  return { clientId: `${clientId}-${secret}`, secret };
}

function writePrivate(file: string, text: string): void {
  fs.writeFileSync(file, text, { mode: 0o600 });
  fs.chmodSync(file, 0o600); // an existing file keeps its old mode otherwise
}
