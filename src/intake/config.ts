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
import type { Section, Values } from '../core/settings/section.js';
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
      'Topic filters to subscribe to, comma-separated (a YAML list works too). `+` and `#` wildcards must fill ' +
      'a whole level; `$share/<group>/<filter>` makes a shared subscription.',
  }),
  MQTT_CLIENT_ID: key(clientId, {
    derivedDefault: '`mqtt-ingest-<hostname>-<APP_ENV>`',
    description:
      "The subscriber's client id. It must stay the same across restarts, or the broker's persistent session (and " +
      'the messages queued in it) is lost. The default uses the host name with characters other than ' +
      '`A-Z a-z 0-9 _ -` replaced by `-`; set it explicitly where the host name changes on every start.',
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

function isLoopback(url: string): boolean {
  // mqtt:// is not a "special" URL scheme, so the host is kept as written: `127.1` is not expanded.
  const host = new URL(url).hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1' || /^::ffff:127\./.test(host);
}

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
  rules(c, valid, problems, warnings) {
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
