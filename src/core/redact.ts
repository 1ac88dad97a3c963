/**
 * Redaction, in one place: what the node prints or logs never holds a password or a secret. Every URL a log line,
 * a status or a problem shows goes through `redactUrl`; secrets known by value (a password, the secret suffix of
 * the subscriber's client id) through `redactSecrets`.
 */
export const REDACTED = '[redacted]';

/** `mqtt://user:pw@host` → `mqtt://user:[redacted]@host`. Text that is no URL, or has no password, is returned as it is. */
export function redactUrl(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@/\s]+@/i, `$1${REDACTED}@`);
}

/** `text` with every occurrence of each secret replaced by `[redacted]`; empty secrets are ignored. */
export function redactSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) if (secret) out = out.split(secret).join(REDACTED);
  return out;
}

/**
 * `text` without the password of `url`, as written and percent-decoded (a server's error may quote either), for
 * printing an error about a connection to that URL.
 */
export function withoutUrlPassword(text: string, url: string): string {
  let password = '';
  try {
    password = new URL(url).password;
  } catch {
    return text;
  }
  let decoded = password;
  try {
    decoded = decodeURIComponent(password);
  } catch {
    // a malformed escape: only the raw form can appear
  }
  return redactSecrets(text, [password, decoded]);
}
