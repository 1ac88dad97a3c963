import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

// Cloud Logging reads `severity` and `message`; pino's numeric `level` and `msg` are mapped onto them.
const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

/** Keys whose values are never logged, wherever they appear in a log object. */
const REDACT = [
  'password',
  '*.password',
  'MQTT_PASSWORD',
  '*.MQTT_PASSWORD',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'private_key',
  '*.private_key',
];

export function createLogger(level: LevelWithSilent = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      messageKey: 'message',
      base: { service: 'mqtt-ingest' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT' }),
      },
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    (destination ?? pino.destination({ fd: 1, sync: false })) as pino.DestinationStream,
  );
}
