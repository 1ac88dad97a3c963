/** How configuration problems quote what they were given: shared by the loader and every section's rules. */
import { redactUrl } from '../redact.js';

export function isUnset(value: unknown): boolean {
  // An empty variable counts as unset (deploy templates often write `NAME=`); so do YAML `KEY:` and `KEY: ""`.
  return value === undefined || value === null || value === '';
}

export function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file',
    EACCES: 'permission denied',
    EISDIR: 'it is a directory',
  };
  return (code && reasons[code]) ?? (err instanceof Error ? err.message : String(err));
}

/** The docs' Markdown `code` becomes "code" in a terminal message. */
export function plain(markdown: string): string {
  return markdown.replace(/`([^`]*)`/g, '"$1"');
}

export function quote(s: string): string {
  return JSON.stringify(s);
}

/** A given value as a problem shows it: quoted, shortened, and without a password inside a URL. */
export function show(value: unknown): string {
  const text = typeof value === 'string' ? quote(redactUrl(value)) : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 76)}…${text.at(-1)}` : text;
}
