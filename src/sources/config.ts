/** The source table's configuration: how many topics it follows and when a quiet one counts as silent. */
import { wholeNumber } from '../core/settings/fields.js';
import { key } from '../core/settings/key.js';
import type { Section, Values } from '../core/settings/section.js';

const sourcesKeys = {
  SOURCES_MAX: key(wholeNumber(1, 1_000_000), {
    default: '10000',
    description:
      'Most MQTT topics whose last message time and rate the node follows (`GET /api/sources`, docs/operations.md, ' +
      '"Silent sources"); kept in `DATA_DIR/sources.db`, roughly 200 bytes plus the topic\'s length each in memory. Messages on topics first seen ' +
      'once the table is full are counted in `mqtt_ingest_sources_untracked_total`, not tracked.',
  }),
  SILENT_AFTER_SECONDS: key(wholeNumber(1, 31_536_000), {
    default: '600',
    description:
      'A tracked topic with no message for longer than this is silent: listed first by `GET /api/sources` and counted ' +
      'in `mqtt_ingest_sources_silent`. Set it above the longest normal gap between two messages of a topic.',
  }),
};

export type SourcesConfig = Values<typeof sourcesKeys>;

export const sourcesSection = { keys: sourcesKeys } satisfies Section<SourcesConfig>;
