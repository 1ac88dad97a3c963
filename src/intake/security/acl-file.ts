/**
 * Mosquitto ACL files (`acl_file`, MQTT_ACL_FILE), read and checked as Mosquitto 2.0.11 does
 * (src/security_default.c: aclfile__parse, mosquitto_acl_check_default), so one file means the same in both
 * broker modes:
 *
 * - Trailing blanks are trimmed; a line whose first character is `#` is a comment; words are separated by
 *   spaces only (a tab is part of a word). `topic`, `pattern` and `user` are the only keywords.
 * - `topic [read|write|readwrite|deny] <filter>`: without an access word it means readwrite; the filter is the
 *   rest of the line and may contain spaces. `topic` lines before the first `user` line apply to clients
 *   without a user name; after `user <name>`, to that user.
 * - `pattern [access] <filter>` applies to every client, with `%c` replaced by the client id and `%u` by the
 *   user name; a pattern with `%u` is skipped for a client without a user name. A client whose user name or
 *   client id contains `+` or `#` is denied by every pattern, so it cannot widen one.
 * - A client's own list is checked first, then the patterns; within each `deny` entries come first; the first
 *   match that allows the access wins. No match is a denial. A filter not starting with `$` never matches a
 *   `$` topic (MQTT-4.7.2-1), so `$SYS` needs its own lines.
 * - Subscriptions are always allowed by the file (Mosquitto 2.0.11's mosquitto_acl_check_default returns
 *   success for MOSQ_ACL_SUBSCRIBE); `read` is checked on each message delivered instead.
 */
import fs from 'node:fs';
import { IngestError } from '../../core/errors.js';
import { topicFilterProblem } from '../../core/mqtt-topic.js';

export type Access = 'read' | 'write';

const READ = 1;
const WRITE = 2;
const NONE = 0; // `deny`

interface Rule {
  filter: string;
  access: number;
}

export interface AclSubject {
  /** The user name (from CONNECT, or the certificate's CN); undefined for an anonymous client. */
  username: string | undefined;
  clientId: string;
}

export class Acl {
  private constructor(
    /** Rules per user; the key `null` holds the rules for clients without a user name. */
    private readonly users: Map<string | null, Rule[]>,
    private readonly patterns: Rule[],
  ) {}

  static parse(text: string): { acl: Acl; problems: string[] } {
    const users = new Map<string | null, Rule[]>();
    const patterns: Rule[] = [];
    const problems: string[] = [];
    let user: string | null = null;
    for (const [i, raw] of text.split('\n').entries()) {
      const line = raw.replace(/\s+$/, '');
      if (line.startsWith('#')) continue;
      const words = line.split(' ').filter((w) => w !== '');
      const keyword = words[0];
      if (keyword === undefined) continue;
      const where = `line ${i + 1}`;
      if (keyword === 'user') {
        const name = line.slice(line.indexOf('user') + 4).trim();
        if (name === '') problems.push(`${where}: "user" without a user name`);
        else user = name;
        continue;
      }
      if (keyword !== 'topic' && keyword !== 'pattern') {
        problems.push(`${where}: unknown keyword ${JSON.stringify(keyword)} (expected topic, pattern or user)`);
        continue;
      }
      const rest = line.slice(line.indexOf(keyword) + keyword.length).replace(/^ +/, '');
      const accessWord = words.length > 2 ? words[1]! : undefined;
      const filter = accessWord === undefined ? rest : rest.slice(accessWord.length).trim();
      const access = accessWord === undefined ? READ | WRITE : ACCESS_WORDS[accessWord];
      if (filter === '') {
        problems.push(`${where}: empty topic`);
        continue;
      }
      if (access === undefined) {
        problems.push(`${where}: invalid access ${JSON.stringify(accessWord)} (expected read, write, readwrite or deny)`);
        continue;
      }
      const why = topicFilterProblem(filter);
      if (why) {
        problems.push(`${where}: topic ${JSON.stringify(filter)} ${why}`);
        continue;
      }
      const list = keyword === 'pattern' ? patterns : getOrCreate(users, user);
      // Mosquitto puts `deny` entries at the front of their list, so they win over any allowing entry.
      if (access === NONE) list.unshift({ filter, access });
      else list.push({ filter, access });
    }
    return { acl: new Acl(users, patterns), problems };
  }

  static load(file: string): Acl {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new AclFileError(file, [`cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
    }
    const { acl, problems } = Acl.parse(text);
    if (problems.length > 0) throw new AclFileError(file, problems);
    return acl;
  }

  /** Whether `subject` may publish to (`write`) or receive from (`read`) the topic name `topic`. */
  allows(subject: AclSubject, topic: string, access: Access): boolean {
    const want = access === 'read' ? READ : WRITE;
    const own = this.users.get(subject.username ?? null);
    if (own === undefined && this.patterns.length === 0) return false;
    for (const rule of own ?? []) {
      if (topic.startsWith('$') && !rule.filter.startsWith('$')) continue;
      if (!topicMatches(rule.filter, topic)) continue;
      if (rule.access === NONE) return false;
      if (rule.access & want) return true;
    }
    if (this.patterns.length === 0) return false;
    if (/[+#]/.test(subject.username ?? '') || /[+#]/.test(subject.clientId)) return false;
    for (const rule of this.patterns) {
      if (rule.filter.includes('%u') && subject.username === undefined) continue;
      const filter = expandPattern(rule.filter, subject);
      if (!topicMatches(filter, topic)) continue;
      if (rule.access === NONE) return false;
      if (rule.access & want) return true;
    }
    return false;
  }
}

export class AclFileError extends IngestError {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super('ACL_FILE_INVALID', `ACL file ${JSON.stringify(file)}: ${problems.join('; ')}`, { context: { file, problems } });
  }
}

const ACCESS_WORDS: Record<string, number> = { read: READ, write: WRITE, readwrite: READ | WRITE, deny: NONE };

function getOrCreate(users: Map<string | null, Rule[]>, user: string | null): Rule[] {
  let list = users.get(user);
  if (!list) users.set(user, (list = []));
  return list;
}

/** `%c` → client id, `%u` → user name, one pass left to right, as Mosquitto substitutes. */
function expandPattern(filter: string, subject: AclSubject): string {
  return filter.replace(/%([cu])/g, (whole, which: string) =>
    which === 'c' ? subject.clientId : subject.username !== undefined ? subject.username : whole,
  );
}

/**
 * Whether the topic name `topic` matches the filter `filter` (MQTT-4.7). A `$` topic matches only a filter
 * that starts with `$` (MQTT-4.7.2-1); `#` also matches the parent level (`a/#` matches `a`).
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') !== filter.startsWith('$')) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}
