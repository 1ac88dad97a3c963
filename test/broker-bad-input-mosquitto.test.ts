import { describe } from 'vitest';
import { hasOpenssl } from './helpers/certs.js';
import { badInputSuite } from './helpers/bad-input.js';
import { hasMosquitto } from './helpers/mosquitto.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('openssl', hasOpenssl(), 'apt-get install openssl') && serviceAvailable('mosquitto', hasMosquitto(), 'apt-get install mosquitto');

// Mosquitto 2.0.11 closes a connection without CONNECT after 1.5 × its 60 s default keep-alive; not configurable.
describe.runIf(run)('supervised Mosquitto: bad input on every listener', () => badInputSuite('mosquitto', 90_000));
