/**
 * Renders docs/configuration.md from the schema (every section's keys), so the reference cannot drift from the code: a unit test fails
 * when the committed file differs from this output (regenerate with `npm run docs`). The output must be
 * deterministic: nothing from the machine it runs on (host name, date, paths).
 */
import { BOOLEAN_PAIRS } from '../core/settings/fields.js';
import { CONFIG_KEYS, keyMeta } from './schema.js';

/** A YAML file using a few keys; a unit test loads it, so the example stays valid. */
export const YAML_EXAMPLE = `# mqtt-ingest.yaml: the same flat keys as the environment variables
APP_ENV: prd
MQTT_TOPICS: "sensors/#, $share/ingest/alerts/+"   # or a YAML list
MQTT_SESSION_EXPIRY_SECONDS: 86400
GCP_PROJECT_ID: my-project
PUBSUB_TOPIC: mqtt-ingest
# prd requires TLS and authentication (docs/security.md); files may be Secret Manager references
MQTT_TLS_CERT: sm://projects/my-project/secrets/mqtt-tls-cert/versions/latest
MQTT_TLS_KEY: sm://projects/my-project/secrets/mqtt-tls-key/versions/latest
MQTT_AUTH_FILE: sm://projects/my-project/secrets/mqtt-passwd/versions/latest
FILE_SINK: off
SPOOL_MAX_BYTES: 4GiB
LOG_LEVEL: info
`;

export function renderConfigDocs(): string {
  const rows = CONFIG_KEYS.map((name) => {
    const meta = keyMeta(name);
    const fallback = meta.default !== undefined ? `\`${meta.default}\`` : (meta.derivedDefault ?? 'unset');
    return `| \`${name}\` | ${cell(meta.accepts)} | ${cell(fallback)} | ${meta.secret ? 'yes' : 'no'} | ${cell(meta.description)} |`;
  });
  const secrets = CONFIG_KEYS.filter((name) => keyMeta(name).secret).map((name) => `\`${name}\``);

  return `# Configuration

<!-- Generated from src/config/schema.ts by \`npm run docs\`; do not edit by hand. -->

mqtt-ingest is configured with environment variables, optionally on top of a YAML file.

## Where values come from

Each key is looked up in this order; the first that has it wins:

1. the **environment**;
2. the **YAML file** given with \`--config FILE\`, or else named by \`CONFIG_FILE\`;
3. the **default** below.

An environment variable that is set to the empty string counts as unset, and so does a YAML key with an empty or
null value. Environment variables that are not listed here are ignored; a key in the YAML file that is not listed
here is an error.

The node checks the whole configuration before it starts and, if anything is wrong, stops with a list of every
problem, each naming the variable, what is wrong and what was given. \`mqtt-ingest check-config [--config FILE]\`
runs the same checks offline and prints the effective configuration, with secrets redacted and each key's source.

## Values

- **Booleans** accept ${BOOLEAN_PAIRS.map(([yes, no]) => `\`${yes}\`/\`${no}\``).join(', ')}, in any case.
- **Byte sizes** are a whole number of bytes or a number with a unit: \`B\`, \`KB\`, \`MB\`, \`GB\` (powers of 1000)
  or \`KiB\`, \`MiB\`, \`GiB\` (powers of 1024), in any case, e.g. \`6GiB\`, \`512 MB\`, \`1.5GiB\`.
- **Numbers** in the YAML file may be written as numbers or as strings; text values that look like a number or a
  boolean must be quoted there.
- **Secrets** (${secrets.join(', ')}) may be given as \`NAME_FILE\` instead: the path of a file whose content is the
  value, with one trailing newline removed (for Docker and Kubernetes secrets). Setting both \`NAME\` and
  \`NAME_FILE\` is an error, as is a file that cannot be read or is empty. In the YAML file, a relative path is
  taken from the file's folder. Secret values are never printed.

## YAML file

The file is a flat mapping of the same keys:

\`\`\`yaml
${YAML_EXAMPLE}\`\`\`

## Reference

| variable | type / accepted values | default | secret | description |
|---|---|---|---|---|
${rows.join('\n')}
`;
}

/** Text fit for one Markdown table cell. */
function cell(markdown: string): string {
  return markdown.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}
