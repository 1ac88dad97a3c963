import { withCode } from '../core/errors.js';
import { EmbeddedIntake } from './embedded/embedded-intake.js';
import { ExternalIntake } from './external/external-intake.js';
import type { Intake, IntakeDeps, IntakeMode, IntakeSettings } from './intake.js';
import { MosquittoIntake } from './mosquitto/mosquitto-intake.js';
import { findOnPath } from './mosquitto/process-utils.js';

/** auto: external when MQTT_BROKER is set, else Mosquitto when it is on PATH, else the embedded broker. */
export function resolveBrokerMode(config: Pick<IntakeSettings, 'MQTT_BROKER_MODE' | 'MQTT_BROKER' | 'MOSQUITTO_BIN'>, onPath: (bin: string) => string | undefined = findOnPath): IntakeMode {
  if (config.MQTT_BROKER_MODE !== 'auto') return config.MQTT_BROKER_MODE;
  if (config.MQTT_BROKER) return 'external';
  return onPath(config.MOSQUITTO_BIN) ? 'mosquitto' : 'embedded';
}

/** The intake of a resolved broker mode: the one place that tells the modes apart. */
export function createIntake(mode: IntakeMode, deps: IntakeDeps): Intake {
  switch (mode) {
    case 'embedded':
      // Refused by check-config when the mode is set explicitly; `auto` falls back to it only when Mosquitto is missing.
      if (deps.config.MQTT_SHARE_GROUP !== undefined) {
        deps.logger.warn(
          withCode('CONFIG_WARNING', { MQTT_SHARE_GROUP: deps.config.MQTT_SHARE_GROUP }),
          'MQTT_SHARE_GROUP is ignored: Mosquitto was not found, so the node runs the embedded broker, which shares no subscription with other nodes',
        );
      }
      return new EmbeddedIntake(deps);
    case 'mosquitto':
      return new MosquittoIntake(deps);
    case 'external':
      return new ExternalIntake(deps);
  }
}
