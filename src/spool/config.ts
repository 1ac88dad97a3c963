/** The spool's configuration: its size, the disk it leaves free, how commits are made durable, a damaged start. */
import { boolean, byteSize, MiB, oneOf } from '../core/settings/fields.js';
import { key } from '../core/settings/key.js';
import type { Section, Values } from '../core/settings/section.js';
import type { SpoolOptions } from './spool.js';

const spoolKeys = {
  SPOOL_MAX_BYTES: key(byteSize(MiB), {
    default: '6GiB',
    description:
      "Largest size of the spool. When full, the node stops acknowledging messages (back-pressure) and drops none. The default fits App Engine flex's 10 GB disk with room for the OS, the image, broker persistence and SQLite's write-ahead log.",
  }),
  SPOOL_MIN_FREE_BYTES: key(byteSize(MiB), {
    default: '256MiB',
    description:
      "Free disk the spool leaves on `DATA_DIR`'s file system. A commit that would leave less waits, and the node stops " +
      'acknowledging (back-pressure, readiness 503 with `spool.fullReason` "disk: …") until there is room; free pages ' +
      'inside `spool.db`, which new messages reuse, count as free. The default, about 2.5% of App Engine flex\'s 10 GB ' +
      "disk, holds SQLite's write-ahead log (about 4 MiB, plus one group commit of up to 64 MiB) several times over and " +
      "leaves Mosquitto's database, the logs and the `dlq` commands room to write. Lower it on a small volume: a file " +
      'system no larger than it never takes a message.',
  }),
  SPOOL_SYNC: key(oneOf(['full', 'normal']), {
    default: 'full',
    description:
      '`full`: every spool commit is fsync\'ed before the broker is acknowledged, so an acknowledged message survives power loss. ' +
      '`normal`: it survives a crash or SIGKILL of the process but not of the machine; faster where commits are small.',
  }),
  SPOOL_ACCEPT_LOSS: key(boolean(), {
    default: 'false',
    description:
      'For one start after the spool was damaged (its write-ahead log deleted or truncated, `spool.db` emptied or ' +
      'restored from an older copy): start with what remains instead of refusing with `SPOOL_DAMAGED`. The loss is ' +
      'logged and the damaged log kept aside as `spool.db-wal.damaged-<time>`. Set it back to `false` afterwards, or ' +
      'a later loss would start with only a warning (docs/operations.md).',
  }),
};

export type SpoolConfig = Values<typeof spoolKeys>;

export const spoolSection = {
  keys: spoolKeys,
  rules(c, valid, _problems, warnings) {
    if (valid('SPOOL_ACCEPT_LOSS') && c.SPOOL_ACCEPT_LOSS) {
      warnings.push(
        'SPOOL_ACCEPT_LOSS: is on, so a damaged spool (lost acknowledged messages) starts with a warning instead of ' +
          'being refused; set it back to false after the one start it was meant for',
      );
    }
  },
} satisfies Section<SpoolConfig>;

/** What Spool.open takes from the configuration; the folder, the sinks and the callbacks come from the node. */
export function spoolOptions(c: SpoolConfig): Required<Pick<SpoolOptions, 'maxBytes' | 'minFreeDiskBytes' | 'sync' | 'acceptLoss'>> {
  return { maxBytes: c.SPOOL_MAX_BYTES, minFreeDiskBytes: c.SPOOL_MIN_FREE_BYTES, sync: c.SPOOL_SYNC, acceptLoss: c.SPOOL_ACCEPT_LOSS };
}
