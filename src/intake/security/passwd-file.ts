/**
 * Mosquitto password files (`password_file`, MQTT_AUTH_FILE): one `user:hash` line per user.
 *
 * The format, as Mosquitto 2.0.11 reads it (src/security_default.c, pwfile__parse and unpwd__decode_passwords):
 * - a line starting with `#` is a comment; a line without `:` is ignored; user name and hash are trimmed;
 * - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512, what `mosquitto_passwd` 2.0 writes (101 iterations);
 * - `$6$<salt>$<hash>`: one SHA-512 over password then salt, written by Mosquitto 1.x;
 * - salt and hash are standard base64 (with padding); the salt must decode to 12 bytes and the hash to 64, or
 *   Mosquitto drops the entry with an error line and starts anyway. Here such a line is a problem to fix before
 *   start, so both broker modes accept exactly the same users.
 * - the client's password is used up to its first NUL byte (Mosquitto passes it on as a C string).
 */
import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { IngestError } from '../../core/errors.js';

/** What `mosquitto_passwd` 2.0 writes: PBKDF2-SHA512, 101 iterations, a 12-byte salt, a 64-byte hash. */
export const PBKDF2_ITERATIONS = 101;
const SALT_BYTES = 12;
const HASH_BYTES = 64;

interface Entry {
  kind: 6 | 7;
  iterations: number;
  salt: Buffer;
  hash: Buffer;
}

export interface ParsedPasswordFile {
  users: Map<string, Entry>;
  /** Each line that Mosquitto would drop or misread, with its line number; never the hash itself. */
  problems: string[];
}

/** Parses the text of a password file. Problems name the line and the user, never the hash. */
export function parsePasswordFile(text: string): ParsedPasswordFile {
  const users = new Map<string, Entry>();
  const problems: string[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/\r$/, '');
    if (line.startsWith('#') || !line.includes(':')) continue;
    const [userPart = '', hashPart] = line.split(':');
    const user = userPart.trim();
    const where = `line ${i + 1}`;
    if (user === '') {
      problems.push(`${where}: empty user name`);
      continue;
    }
    if (users.has(user)) {
      problems.push(`${where}: user ${JSON.stringify(user)} appears twice`);
      continue;
    }
    const entry = decodeHash((hashPart ?? '').trim());
    if (typeof entry === 'string') problems.push(`${where}: user ${JSON.stringify(user)}: ${entry}`);
    else users.set(user, entry);
  }
  return { users, problems };
}

function decodeHash(text: string): Entry | string {
  // Mosquitto splits with strtok, which skips empty fields: "$7$101$salt$hash" gives 7, 101, salt, hash.
  const fields = text.split('$').filter((f) => f !== '');
  const kind = fields[0];
  if (kind !== '6' && kind !== '7') return 'the hash must start with $7$ (or $6$); write it with `mqtt-ingest passwd` or mosquitto_passwd';
  const iterations = kind === '7' ? Number.parseInt(fields[1] ?? '', 10) : 1;
  if (kind === '7' && !(iterations >= 1)) return 'invalid iteration count';
  const [saltText, hashText] = kind === '7' ? fields.slice(2) : fields.slice(1);
  const salt = decodeBase64(saltText);
  const hash = decodeBase64(hashText);
  if (salt?.length !== SALT_BYTES) return `the salt must be ${SALT_BYTES} bytes of base64`;
  if (hash?.length !== HASH_BYTES) return `the hash must be ${HASH_BYTES} bytes of base64`;
  return { kind: kind === '7' ? 7 : 6, iterations, salt, hash };
}

function decodeBase64(text: string | undefined): Buffer | undefined {
  if (!text || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}

function digest(password: Buffer, entry: Entry): Buffer {
  if (entry.kind === 7) return pbkdf2Sync(password, entry.salt, entry.iterations, HASH_BYTES, 'sha512');
  return createHash('sha512').update(password).update(entry.salt).digest();
}

/** A password as Mosquitto sees it: the bytes before the first NUL. */
function asCString(password: Buffer | string): Buffer {
  const bytes = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const nul = bytes.indexOf(0);
  return nul === -1 ? bytes : bytes.subarray(0, nul);
}

/** The users of one password file, checked as Mosquitto checks them. */
export class PasswordFile {
  private constructor(private readonly users: Map<string, Entry>) {}

  /** Reads and parses `file`; throws PasswordFileError listing every bad line. */
  static load(file: string): PasswordFile {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new PasswordFileError(file, [`cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
    }
    const parsed = parsePasswordFile(text);
    if (parsed.problems.length > 0) throw new PasswordFileError(file, parsed.problems);
    return new PasswordFile(parsed.users);
  }

  static fromText(text: string): PasswordFile {
    return new PasswordFile(parsePasswordFile(text).users);
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  get size(): number {
    return this.users.size;
  }

  /** True when `user` is listed and `password` matches its hash (compared in constant time). */
  verify(user: string, password: Buffer | string | undefined): boolean {
    const entry = this.users.get(user);
    if (!entry || password === undefined) return false;
    const candidate = digest(asCString(password), entry);
    return candidate.length === entry.hash.length && timingSafeEqual(candidate, entry.hash);
  }
}

export class PasswordFileError extends IngestError {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super('PASSWORD_FILE_INVALID', `password file ${JSON.stringify(file)}: ${problems.join('; ')}`, { context: { file, problems } });
  }
}

/** The `$7$` hash `mosquitto_passwd` 2.0 writes for `password`, with a fresh random salt. */
export function hashPassword(password: string, salt: Buffer = randomBytes(SALT_BYTES)): string {
  const hash = pbkdf2Sync(asCString(password), salt, PBKDF2_ITERATIONS, HASH_BYTES, 'sha512');
  return `$7$${PBKDF2_ITERATIONS}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Why a user name cannot go into a password file, or undefined. */
export function userNameProblem(user: string): string | undefined {
  if (user === '') return 'the user name is empty';
  // `:` separates name and hash; a newline would start another entry; Mosquitto trims blanks at both ends.
  if (/[:\r\n\0]/.test(user)) return 'the user name must not contain ":", a newline or NUL';
  if (user.trim() !== user) return 'the user name must not start or end with blanks';
  if (Buffer.byteLength(user, 'utf8') > 65535) return 'the user name is longer than 65535 bytes';
  return undefined;
}

/**
 * Adds or replaces `user` (with `passwordHash`) or, when `passwordHash` is undefined, deletes it. Other lines,
 * comments included, are kept as they are. Returns the new text and whether the user was there before.
 */
export function updatePasswordText(text: string, user: string, passwordHash: string | undefined): { text: string; existed: boolean } {
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  let existed = false;
  const out: string[] = [];
  for (const line of lines) {
    const isUser = !line.startsWith('#') && line.includes(':') && line.split(':')[0]!.trim() === user;
    if (!isUser) {
      out.push(line);
      continue;
    }
    if (!existed && passwordHash !== undefined) out.push(`${user}:${passwordHash}`);
    existed = true;
  }
  if (!existed && passwordHash !== undefined) out.push(`${user}:${passwordHash}`);
  return { text: out.length === 0 ? '' : `${out.join('\n')}\n`, existed };
}

/**
 * Replaces `file` atomically (a temporary file in the same folder, then rename), so a broker reloading at that
 * moment reads either the old or the new file. A new file is created with mode 0600; an existing one keeps its mode.
 */
export function writeFileAtomic(file: string, text: string): void {
  let mode = 0o600;
  try {
    mode = fs.statSync(file).mode & 0o777;
  } catch {
    // A new file.
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    fs.writeFileSync(tmp, text, { mode });
    fs.chmodSync(tmp, mode); // the umask applies to writeFileSync's mode
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
