import { describe } from 'vitest';
import { hasMosquitto, startMosquitto, type TestMosquitto } from '../helpers/mosquitto.js';
import { serviceAvailable } from '../helpers/skip.js';
import { intakeContract } from './intake-contract.js';

const run = serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

// The test broker has no password file: it takes any user name and password, and the status must not show them.
const PASSWORD = 'contract-external-secret';

describe.runIf(run)('intake contract: external broker', () => {
  let broker: TestMosquitto;
  intakeContract({
    mode: 'external',
    before: async () => {
      broker = await startMosquitto({ persistence: true });
    },
    after: async () => {
      await broker?.stop();
    },
    env: () => ({ MQTT_BROKER: broker.url, MQTT_USERNAME: 'contract', MQTT_PASSWORD: PASSWORD }),
    publishPort: () => broker.port,
    acksPublishers: false,
    secrets: () => [PASSWORD],
  });
});
