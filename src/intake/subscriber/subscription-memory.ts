/**
 * The filters the broker's session was last subscribed to, remembered in the spool's meta table so that a node
 * restarted with another MQTT_TOPICS unsubscribes the filters it dropped (connection.ts). They belong to the
 * session, which a broker keeps per client id: the key names the broker and the client id, and nothing that
 * can change from one start to the next (the loopback port of the node's own Mosquitto is kept, but not always).
 */

/** The part of the spool the memory uses. */
export interface MetaStore {
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
  deleteMeta(key: string): void;
  metaKeys(prefix: string): string[];
}

const PREFIX = 'subscriptions ';

/**
 * A key of the form older nodes wrote (`subscriptions <url>`: one space, where a session key has two). Those of
 * the own Mosquitto named a port picked at random, one more at each start; none can be read again.
 */
function isLegacyKey(key: string): boolean {
  return key.startsWith(PREFIX) && !key.slice(PREFIX.length).includes(' ');
}

/** The node's own Mosquitto: one per DATA_DIR, whose persistence (and so the session) lives there too. */
export const OWN_MOSQUITTO = 'own-mosquitto';

const DEFAULT_PORTS: Record<string, number> = { 'mqtt:': 1883, 'mqtts:': 8883, 'ws:': 80, 'wss:': 443 };
const SCHEME_ALIASES: Record<string, string> = { 'tcp:': 'mqtt:', 'ssl:': 'mqtts:' };

/**
 * An external broker as the key names it: scheme (tcp and ssl as their mqtt names), host in lower case and
 * port (the scheme's default when none is given), and the path for a WebSocket URL. No user name, password,
 * query or fragment.
 */
export function externalBrokerIdentity(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '[unparseable url]';
  }
  const scheme = SCHEME_ALIASES[u.protocol] ?? u.protocol;
  const port = u.port === '' ? DEFAULT_PORTS[scheme] : Number(u.port);
  const ws = scheme === 'ws:' || scheme === 'wss:';
  return `${scheme}//${u.hostname.toLowerCase()}${port === undefined ? '' : `:${port}`}${ws ? u.pathname || '/' : ''}`;
}

/**
 * The key of a session's filters. `clientId` is the part of the subscriber's client id that is not secret
 * (MQTT_CLIENT_ID, without the suffix the node adds on its own Mosquitto).
 */
export function subscriptionsKey(broker: string, clientId: string): string {
  return `${PREFIX}${broker} ${clientId}`;
}

/** A session this DATA_DIR's node held on the broker under another client id, with the filters it was subscribed to. */
export interface OtherSession {
  clientId: string;
  filters: string[];
  /** Its key in the meta table, deleted once the session is handed over (session-handover.ts). */
  key: string;
}

/**
 * The sessions remembered for `broker` under a client id other than `clientId`: the node held them before
 * MQTT_CLIENT_ID changed, and the broker may still queue messages for them. A client id may hold spaces (the broker
 * identity holds none, so the key's client id is everything after it). An entry that is not a non-empty list of
 * filters was never written by the subscriber and is left alone.
 */
export function otherSessions(meta: Pick<MetaStore, 'getMeta' | 'metaKeys'>, broker: string, clientId: string): OtherSession[] {
  const prefix = `${PREFIX}${broker} `;
  const out: OtherSession[] = [];
  for (const key of meta.metaKeys(prefix)) {
    const other = key.slice(prefix.length);
    if (other === '' || other === clientId) continue;
    let filters: unknown;
    try {
      filters = JSON.parse(meta.getMeta(key) ?? 'null');
    } catch {
      continue;
    }
    if (!Array.isArray(filters) || filters.length === 0 || !filters.every((f) => typeof f === 'string')) continue;
    out.push({ clientId: other, filters: filters as string[], key });
  }
  return out.sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
}

/**
 * The key nodes wrote before: the subscriber URL through `new URL()`, its password replaced by "redacted".
 * Only an external broker's can still be found; the own Mosquitto's held a port picked at random.
 */
export function legacySubscriptionsKey(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = 'redacted';
    return `subscriptions ${u.toString()}`;
  } catch {
    return 'subscriptions [unparseable url]';
  }
}

/**
 * Loads and saves one session's filters. A session found under `legacyKey` only is copied to `key` when read,
 * so the old key is read at most once; once the broker granted the filters, the keys of the older form are
 * deleted (the legacy one has been read, the others can never be).
 */
export function subscriptionMemory(
  meta: MetaStore,
  key: string,
  legacyKey?: string,
): { load(): string[] | undefined; save(topics: string[]): void; clear(): void } {
  return {
    load: () => {
      let value = meta.getMeta(key);
      if (value === undefined && legacyKey !== undefined) {
        value = meta.getMeta(legacyKey);
        if (value !== undefined) meta.setMeta(key, value);
      }
      return value === undefined ? undefined : (JSON.parse(value) as string[]);
    },
    save: (topics) => {
      meta.setMeta(key, JSON.stringify(topics));
      for (const old of meta.metaKeys(PREFIX)) if (isLegacyKey(old)) meta.deleteMeta(old);
    },
    // The broker discarded the session (a leave): nothing is remembered, so the next start subscribes afresh.
    clear: () => {
      meta.deleteMeta(key);
      if (legacyKey !== undefined) meta.deleteMeta(legacyKey);
    },
  };
}
