/**
 * `mqtt-ingest check-config [--config FILE]`: validates the configuration and prints the effective values.
 * It only reads the environment and files: no network, no broker, no spool, so it is safe in CI and on a laptop.
 */
import { loadRoutes } from '../routes/config.js';
import { describeRoutes } from '../routes/describe.js';
import type { Command } from 'commander';
import { Document, isMap, isScalar, isSeq, type Node } from 'yaml';
import { ConfigError } from '../core/errors.js';
import { loadConfig, redactConfig, type LoadOptions } from '../config/load.js';
import { isConfigKey, keyMeta } from '../config/schema.js';

export interface CheckConfigIo {
  stdout: Pick<NodeJS.WritableStream, 'write'>;
  stderr: Pick<NodeJS.WritableStream, 'write'>;
}

/** Prints the effective configuration as YAML (secrets redacted) and returns the exit code: 0 valid, 1 invalid. */
export function checkConfig(opts: LoadOptions, io: CheckConfigIo): number {
  let result;
  try {
    result = loadConfig(opts);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr.write(`invalid configuration:\n${err.problems.map((p) => `  - ${p}\n`).join('')}`);
    return 1;
  }
  for (const warning of result.warnings) io.stderr.write(`warning: ${warning}\n`);
  io.stdout.write(renderEffectiveConfig(redactConfig(result.config), result.sources));
  const routes = loadRoutes(result.config);
  if (routes) io.stdout.write(describeRoutes(routes).map((line) => `# ${line}\n`).join(''));
  return 0;
}

/**
 * The values as a YAML config file with each key's source as a comment. Unset keys print as `null`, which the
 * loader reads as unset, so the output (with real secrets put back) loads as the same configuration.
 */
export function renderEffectiveConfig(values: Record<string, unknown>, sources: Record<string, string>): string {
  const doc = new Document(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v ?? null])));
  doc.commentBefore = ' effective configuration (secrets redacted); each comment gives the source: default < file < env';
  if (isMap(doc.contents)) {
    for (const pair of doc.contents.items) {
      const name = isScalar(pair.key) ? String(pair.key.value) : '';
      const value = pair.value as Node | null;
      if (!value) continue;
      if (isSeq(value)) value.flow = true; // MQTT_TOPICS on one line, like the environment variable
      const source = sources[name] ?? 'default';
      const derived = source === 'default' && isConfigKey(name) && keyMeta(name).derivedDefault !== undefined;
      value.comment = ` ${isScalar(value) && value.value === null ? 'unset' : derived ? 'derived' : source}`;
    }
  }
  return doc.toString({ lineWidth: 0 });
}

export function registerCheckConfig(program: Command): void {
  program
    .command('check-config')
    .description('check the configuration and print the effective values with secrets redacted (offline)')
    .option('--config <file>', 'YAML config file (else CONFIG_FILE)')
    .action((options: { config?: string }) => {
      process.exitCode = checkConfig({ env: process.env, file: options.config }, process);
    });
}
