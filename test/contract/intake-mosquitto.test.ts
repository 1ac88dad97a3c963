import fs from 'node:fs';
import path from 'node:path';
import { describe } from 'vitest';
import type { MosquittoIntake } from '../../src/intake/mosquitto/mosquitto-intake.js';
import { hasMosquitto, mosquittoBin } from '../helpers/mosquitto.js';
import { serviceAvailable } from '../helpers/skip.js';
import { intakeContract } from './intake-contract.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

describe.runIf(run)('intake contract: supervised Mosquitto and its subscriber', () =>
  intakeContract({
    mode: 'mosquitto',
    env: () => ({ MQTT_BROKER_MODE: 'mosquitto', MOSQUITTO_BIN: mosquittoBin()! }),
    publishPort: (config) => config.MQTT_PORT,
    acksPublishers: false,
    secrets: (rig) => [
      // The subscriber's client id suffix and the internal user's password (src/intake/mosquitto/internal-credential.ts).
      fs.readFileSync(path.join(rig.dataDir, 'mosquitto', 'subscriber-id'), 'utf8').trim(),
      (rig.intake as MosquittoIntake).broker.subscriberAuth().password,
    ],
  }));
