import { describe } from 'vitest';
import { hasOpenssl } from './helpers/certs.js';
import { badInputSuite } from './helpers/bad-input.js';
import { serviceAvailable } from './helpers/skip.js';

const run = serviceAvailable('openssl', hasOpenssl(), 'apt-get install openssl');

// Aedes closes a connection without CONNECT after 30 s (its connectTimeout default, which the node keeps).
describe.runIf(run)('embedded broker: bad input on every listener', () => badInputSuite('embedded', 30_000));
