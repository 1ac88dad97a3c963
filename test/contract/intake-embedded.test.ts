import { describe } from 'vitest';
import { intakeContract } from './intake-contract.js';

describe('intake contract: embedded broker', () =>
  intakeContract({
    mode: 'embedded',
    env: () => ({ MQTT_BROKER_MODE: 'embedded' }),
    publishPort: (config) => config.MQTT_PORT,
    acksPublishers: true,
    secrets: () => [],
  }));
