/**
 * The intake's configuration: which broker the node takes messages from, where its own broker listens, and how
 * the subscriber connects (client id, credentials, protocol, session). The node's own broker's listeners, users
 * and limits are in security/config.ts.
 */
import { z } from 'zod';
import { topicFilterProblem } from '../core/mqtt-topic.js';
import { oneOf, readWholeNumber, text, wholeNumber, type Field } from '../core/settings/fields.js';
import { key } from '../core/settings/key.js';
import type { EnvironmentConfig } from '../core/settings/node.js';
import type { Rules, Section, Values } from '../core/settings/section.js';
import { quote, show } from '../core/settings/text.js';

const BROKER_SCHEMES = ['mqtt', 'mqtts', 'tcp', 'ssl', 'ws', 'wss'];

function isBrokerUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return BROKER_SCHEMES.includes(url.protocol.slice(0, -1)) && url.hostname !== '';
  } catch {
    return false;
  }
}

const topicFilters = (() => {
  const schema = z
    .preprocess((raw) => {
      // A comma-separated string (the environment's form) or, from YAML, a list of strings.
      if (typeof raw === 'string') return raw.split(',').map((s) => s.trim());
      if (Array.isArray(raw)) return raw.map((s: unknown) => (typeof s === 'string' ? s.trim() : s));
      return raw;
    }, z.array(z.string()).min(1))
    .superRefine((filters, ctx) => {
      for (const [i, filter] of filters.entries()) {
        const why = topicFilterProblem(filter);
        const which = filter === '' ? `entry ${i + 1}` : `topic filter ${JSON.stringify(filter)}`;
        // `explained`: the loader shows this message as it is, instead of the generic "must be …".
        if (why) ctx.addIssue({ code: 'custom', message: `${which} ${why}`, params: { explained: true } });
      }
    });
  return { schema, accepts: 'a comma-separated list of MQTT topic filters', envType: 'list' } satisfies Field<typeof schema>;
})();

/** MQTT-4.8.2-1, -2: a share name is a non-empty UTF-8 string without "/", "+" or "#" (nor U+0000, MQTT-1.5.4-2). */
const shareName = text('a share name: text without `/`, `+` or `#`', {
  test: (v) => !/[/+#\u0000]/.test(v) && Buffer.byteLength(v, 'utf8') <= 65535,
});

const clientId = text('text of 1 to 65535 bytes', {
  test: (v) => Buffer.byteLength(v, 'utf8') <= 65535 && !v.includes('\u0000'), // MQTT-1.5.4
});

const protocolVersion = (() => {
  const schema = z.preprocess(readWholeNumber, z.literal([4, 5]));
  return { schema, accepts: '`4` (MQTT 3.1.1) or `5` (MQTT 5.0)', envType: 'enum' } satisfies Field<typeof schema>;
})();

const intakeKeys = {
  MQTT_BROKER: key(
    text('a URL with scheme `mqtt`, `mqtts`, `tcp`, `ssl`, `ws` or `wss` (e.g. `mqtts://broker.example.com:8883`)', {
      test: isBrokerUrl,
      envType: 'url',
    }),
    {
      description:
        'URL of an external broker to subscribe to. When set (with `MQTT_BROKER_MODE=auto`) the node starts no broker ' +
        'of its own. A loopback URL earns a warning: the old Python deployment pointed this at the in-container broker; ' +
        'here leave it unset and the node runs its own.',
    },
  ),
  MQTT_BROKER_MODE: key(oneOf(['auto', 'mosquitto', 'embedded', 'external']), {
    default: 'auto',
    description:
      'Which broker to use. `auto`: the external one when `MQTT_BROKER` is set, else Mosquitto when `MOSQUITTO_BIN` ' +
      'is found on `PATH` at start, else the embedded broker. `mosquitto` supervises a Mosquitto child process, ' +
      '`embedded` runs a broker in-process, `external` requires `MQTT_BROKER`.',
  }),
  MQTT_HOST: key(text('a host name or IP address'), {
    default: '0.0.0.0',
    description: "Address the node's own broker listens on.",
  }),
  MQTT_PORT: key(wholeNumber(1, 65535), {
    default: '1883',
    description: "Port the node's own broker listens on.",
  }),
  MQTT_TOPICS: key(topicFilters, {
    default: '#',
    description:
      "Topic filters the node's subscriber subscribes to (mosquitto and external modes), comma-separated (a YAML " +
      'list works too). `+` and `#` wildcards must fill a whole level; `$share/<group>/<filter>` makes a shared ' +
      'subscription. The embedded broker has no subscriber: it takes every publish its ACL (`MQTT_ACL_FILE`) allows.',
  }),
  MQTT_SHARE_GROUP: key(shareName, {
    description:
      'Several nodes on one broker (external and mosquitto modes): the subscriber subscribes ' +
      '`$share/<MQTT_SHARE_GROUP>/<filter>` for each filter of `MQTT_TOPICS`, so that the broker hands each message ' +
      'to one node of the group instead of to every node. A filter already written `$share/<group>/…` keeps its own ' +
      'group, as written. Each node needs its own client id that stays the same across its restarts (the default, ' +
      'from the host name, is one per StatefulSet pod): see docs/operations.md, "Several nodes on one broker". ' +
      "Changing the group unsubscribes the old group's filters at the next start. Refused with " +
      "`MQTT_BROKER_MODE=embedded`, where publishers connect to the node's own broker and there is nothing to share.",
  }),
  MQTT_CLIENT_ID: key(clientId, {
    derivedDefault: '`mqtt-ingest-<hostname>-<APP_ENV>`',
    description:
      "The subscriber's client id. It must stay the same across restarts: the broker keeps the persistent session, " +
      'and the messages queued in it, under this id. When it changes (set to another value, or the default derived ' +
      'from another host name), the node hands the old session over at its next start on the same `DATA_DIR`: it ' +
      'connects once more with the old id, stores what the broker queued for it, unsubscribes its filters and has ' +
      'the broker discard it (`SESSION_HANDED_OVER`; on failure `SESSION_HANDOVER_FAILED`, tried again at the next ' +
      'start), while its own subscription starts on the new id. The default uses the host name with characters ' +
      'other than `A-Z a-z 0-9 _ -` replaced by `-`; set it explicitly where the host name changes on every start.',
  }),
  MQTT_USERNAME: key(text('text'), {
    description:
      "The subscriber's user name on an external broker. With its own broker the node makes an internal credential.",
  }),
  MQTT_PASSWORD: key(text('text'), {
    secret: true,
    description: "The subscriber's password on an external broker.",
  }),
  MQTT_PROTOCOL_VERSION: key(protocolVersion, {
    default: '5',
    description: 'MQTT protocol version the subscriber speaks.',
  }),
  MQTT_SESSION_EXPIRY_SECONDS: key(wholeNumber(0, 4294967295), {
    default: '604800',
    description:
      "How long the broker keeps the subscriber's session, and queues its QoS 1 messages, while the node is down " +
      '(MQTT 5 Session Expiry Interval; 604800 is 7 days).',
  }),
  MQTT_KEEPALIVE_SECONDS: key(wholeNumber(5, 65535), {
    default: '30',
    description: "The subscriber's keep-alive interval.",
  }),
};

/** The intake's values. MQTT_CLIENT_ID is always set: unset, it is derived. */
export type IntakeConfig = Omit<Values<typeof intakeKeys>, 'MQTT_CLIENT_ID'> & { MQTT_CLIENT_ID: string };

/** `mqtt-ingest-<hostname>-<app_env>`, safe as a client id everywhere. Never random: see MQTT_CLIENT_ID. */
export function deriveClientId(hostname: string, appEnv: string): string {
  return `mqtt-ingest-${hostname}-${appEnv}`.replace(/[^A-Za-z0-9_-]/g, '-');
}

/**
 * The filters the subscriber subscribes: MQTT_TOPICS, each as a shared subscription of MQTT_SHARE_GROUP when it is
 * set. A filter already written `$share/…` is kept as it is (its own group); a filter given twice is subscribed once.
 */
export function subscribedFilters(topics: readonly string[], shareGroup: string | undefined): string[] {
  const filters = topics.map((t) => (shareGroup === undefined || t.startsWith('$share/') ? t : `$share/${shareGroup}/${t}`));
  return [...new Set(filters)];
}

/**
 * Why a derived client id's host name changes when the machine is replaced, or undefined when it does not look so:
 * a Kubernetes Deployment's pod (`<name>-<pod-template-hash>-<5 characters>`, from the alphabet Kubernetes uses for
 * generated names) or a Docker container without a host name of its own (the container id's first 12 hex digits).
 */
export function unstableHostName(hostname: string): string | undefined {
  const generated = '[bcdfghjklmnpqrstvwxz2456789]';
  if (new RegExp(`^.+-${generated}{6,10}-${generated}{5}$`).test(hostname)) return "a Kubernetes Deployment pod's name, which changes with every new pod";
  if (/^[0-9a-f]{12}$/.test(hostname)) return "a Docker container id, which changes with every new container";
  return undefined;
}

/** The host name a client id derived by deriveClientId holds, or undefined when it is not one. */
function derivedHostName(clientId: string, appEnv: string): string | undefined {
  const prefix = 'mqtt-ingest-';
  const suffix = `-${appEnv}`;
  if (!clientId.startsWith(prefix) || !clientId.endsWith(suffix) || clientId.length <= prefix.length + suffix.length) return undefined;
  return clientId.slice(prefix.length, -suffix.length);
}

function isLoopback(url: string): boolean {
  // mqtt:// is not a "special" URL scheme, so the host is kept as written: `127.1` is not expanded.
  const host = new URL(url).hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1' || /^::ffff:127\./.test(host);
}

/**
 * MQTT_SHARE_GROUP: refused where there is no subscriber (embedded mode), each shared filter valid, and warnings
 * where the replicas would not have a client id of their own that stays the same (their sessions are the members
 * the broker hands messages to, online or not: docs/operations.md).
 */
const shareGroupRules: Rules<IntakeConfig & EnvironmentConfig> = (c, valid, problems, warnings, { sources }) => {
  const group = c.MQTT_SHARE_GROUP;
  if (group === undefined || !valid('MQTT_SHARE_GROUP', 'MQTT_BROKER', 'MQTT_BROKER_MODE')) return;
  if (c.MQTT_BROKER_MODE === 'embedded') {
    problems.push(
      `MQTT_SHARE_GROUP: is set (${show(group)}), but MQTT_BROKER_MODE is "embedded": publishers connect to this ` +
        "node's own broker and no subscription is shared with other nodes; unset MQTT_SHARE_GROUP, or subscribe to the " +
        'shared broker (MQTT_BROKER)',
    );
    return;
  }
  if (valid('MQTT_TOPICS') && c.MQTT_TOPICS !== undefined) {
    for (const filter of subscribedFilters(c.MQTT_TOPICS, group)) {
      const why = topicFilterProblem(filter);
      if (why) problems.push(`MQTT_SHARE_GROUP: makes the shared subscription ${show(filter)}, which ${why}`);
    }
  }
  if (!valid('MQTT_CLIENT_ID', 'APP_ENV') || c.MQTT_CLIENT_ID === undefined) return;
  // On its own Mosquitto the subscriber's client id has a secret suffix (mosquitto/internal-credential.ts): a value
  // given to every replica is still one session per node there. Against an external broker it is the session.
  if (sources.MQTT_CLIENT_ID !== 'default' && c.MQTT_BROKER !== undefined) {
    warnings.push(
      `MQTT_CLIENT_ID: is set to ${show(c.MQTT_CLIENT_ID)} while MQTT_SHARE_GROUP makes this node one of several on ` +
        'the broker: replicas given this same value take over each other\'s session (each connection ends the other\'s, ' +
        'and the messages queued for one go to whichever is connected). Give each replica its own client id that stays ' +
        'the same across its restarts, or unset MQTT_CLIENT_ID: the default, mqtt-ingest-<hostname>-<APP_ENV>, is one ' +
        'per pod of a StatefulSet',
    );
  }
  const host = sources.MQTT_CLIENT_ID === 'default' && c.APP_ENV !== undefined ? derivedHostName(c.MQTT_CLIENT_ID, c.APP_ENV) : undefined;
  const unstable = host === undefined ? undefined : unstableHostName(host);
  if (host !== undefined && unstable !== undefined) {
    warnings.push(
      `MQTT_CLIENT_ID: is derived from the host name ${show(host)}, which looks like ${unstable}. Each new one ` +
        "starts a new session, and with MQTT_SHARE_GROUP the broker may keep handing the old session its share of " +
        'the messages until that session expires (Mosquitto does not check whether a member is connected). Run the ' +
        'replicas as a StatefulSet (stable pod names) or with a fixed host name, or set MQTT_CLIENT_ID to a value ' +
        'of its own per replica that stays the same across restarts',
    );
  }
};

export const intakeSection = {
  keys: intakeKeys,
  derived: [
    {
      keys: ['MQTT_CLIENT_ID'],
      from: ['APP_ENV'],
      fill(v, { hostname }) {
        if (v.MQTT_CLIENT_ID === undefined && v.APP_ENV !== undefined) v.MQTT_CLIENT_ID = deriveClientId(hostname, v.APP_ENV);
      },
    },
  ],
  rules(c, valid, problems, warnings, context) {
    shareGroupRules(c, valid, problems, warnings, context);
    if (!valid('MQTT_BROKER', 'MQTT_BROKER_MODE')) return;
    const mode = c.MQTT_BROKER_MODE;
    if (mode === 'external' && c.MQTT_BROKER === undefined) {
      problems.push('MQTT_BROKER_MODE: is "external" but MQTT_BROKER is unset; set MQTT_BROKER to the broker\'s URL');
    }
    if ((mode === 'mosquitto' || mode === 'embedded') && c.MQTT_BROKER !== undefined) {
      problems.push(
        `MQTT_BROKER_MODE: is ${quote(mode)}, which runs a broker here, but MQTT_BROKER is set to an external broker ` +
          `(${show(c.MQTT_BROKER)}); unset one of the two`,
      );
    }
    if (mode === 'auto' && c.MQTT_BROKER !== undefined && isLoopback(c.MQTT_BROKER)) {
      warnings.push(
        `MQTT_BROKER: ${show(c.MQTT_BROKER)} points at this host, so it is used as an external broker and the node ` +
          'starts none of its own. The old Python deployment set MQTT_BROKER to its in-container broker; here leave ' +
          'it unset and the node runs its own broker (or set MQTT_BROKER_MODE=external if a separate broker really ' +
          'listens there).',
      );
    }
  },
} satisfies Section<IntakeConfig & EnvironmentConfig>;
