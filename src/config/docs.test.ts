import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { renderConfigDocs, YAML_EXAMPLE } from './docs.js';
import { loadConfig } from './load.js';
import { CONFIG_KEYS } from './schema.js';

const DOCS_FILE = new URL('../../docs/configuration.md', import.meta.url);

describe('docs/configuration.md', () => {
  it('is what the schema generates', () => {
    let committed = '';
    try {
      committed = readFileSync(DOCS_FILE, 'utf8');
    } catch {
      // a missing file is stale too; the message below says how to make it
    }
    // A plain comparison, not toEqual, so the failure message says what to do rather than a 200-line diff.
    const fresh = committed === renderConfigDocs();
    expect(fresh, 'docs/configuration.md is stale: run `npm run docs` and commit the result').toBe(true);
  });

  it('lists every key with its secret flag', () => {
    const docs = renderConfigDocs();
    for (const name of CONFIG_KEYS) expect(docs).toContain(`| \`${name}\` |`);
    expect(docs).toMatch(/\| `MQTT_PASSWORD` \| .* \| unset \| yes \|/);
    expect(docs).toMatch(/\| `SPOOL_MAX_BYTES` \| .* \| `6GiB` \| no \|/);
  });

  it('shows a YAML example that loads', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mqtt-ingest-docs-'));
    const file = path.join(dir, 'example.yaml');
    writeFileSync(file, YAML_EXAMPLE);
    const { config, sources } = loadConfig({ env: {}, file, hostname: 'h' });
    expect(config.MQTT_TOPICS).toEqual(['sensors/#', '$share/ingest/alerts/+']);
    expect(config.FILE_SINK).toBe(false);
    expect(sources.APP_ENV).toBe('file');
    expect(renderConfigDocs()).toContain(YAML_EXAMPLE);
  });
});
