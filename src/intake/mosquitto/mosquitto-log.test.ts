import { describe, expect, it } from 'vitest';
import { CrashLoop } from './crash-loop.js';
import { MosquittoLogClassifier, relayLevel } from './mosquitto-log.js';

/** Each case is the real output of Mosquitto 2.0.11 (log_timestamp false) for one connection. */
const CASES: Array<[string, string[], string[]]> = [
  ['wrong password', ['New connection from 127.0.0.1:33394 on port 18831.', 'Client <unknown> disconnected, not authorised.'], ['not_authorized']],
  ['MQTT 5 enhanced authentication', ['New connection from 127.0.0.1:33394 on port 18831.', 'Client <unknown> disconnected due to QoS too high or retain not supported.'], ['not_authorized']],
  [
    'bad protocol name',
    ['New connection from 127.0.0.1:33430 on port 18831.', 'Invalid protocol "MQXX" in CONNECT from 127.0.0.1.', 'Client <unknown> disconnected due to protocol error.'],
    ['bad_protocol'],
  ],
  ['garbage bytes', ['New connection from 127.0.0.1:33420 on port 18831.', 'Client <unknown> disconnected due to protocol error.'], ['malformed']],
  [
    'oversize packet after CONNECT',
    ['New client connected from 127.0.0.1:33444 as x1 (p2, c1, k30, u\'alice\').', 'Client x1 disconnected due to oversize packet.'],
    ['packet_too_large'],
  ],
  ['no CONNECT', ['New connection from 127.0.0.1:33456 on port 18831.', 'Client <unknown> has exceeded timeout, disconnecting.'], ['connect_timeout']],
  ['over max_connections', ['Client connection from 127.0.0.1 denied: max_connections exceeded.'], ['max_connections']],
  [
    'mTLS without a certificate',
    ['New connection from 127.0.0.1:60216 on port 18833.', 'OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a certificate', 'Client <unknown> disconnected: Protocol error.'],
    ['tls'],
  ],
  [
    'plaintext to the TLS port',
    ['New connection from 127.0.0.1:44572 on port 18834.', 'OpenSSL Error[0]: error:0A00010B:SSL routines::wrong version number', 'Client <unknown> disconnected: Protocol error.'],
    ['tls'],
  ],
  ['a handshake given up', ['Client connection from 127.0.0.1 failed: error:0A000126:SSL routines::unexpected eof while reading.'], ['tls']],
  [
    'a TLS client closing without close_notify',
    ['OpenSSL Error[0]: error:0A000126:SSL routines::unexpected eof while reading', 'Client mqttjs_90edbe6f closed its connection.'],
    [],
  ],
  ['a client that timed out its keep-alive', ['Client sensor-1 has exceeded timeout, disconnecting.'], []],
  ['a normal client', ['New client connected from 127.0.0.1:1 as c (p2, c1, k60).', 'Client c disconnected.', 'Client <unknown> closed its connection.'], []],
];

describe('MosquittoLogClassifier', () => {
  it.each(CASES)('%s', (_name, lines, expected) => {
    const c = new MosquittoLogClassifier();
    expect(lines.map((l) => c.classify(l)).filter(Boolean)).toEqual(expected);
  });
});

describe('CrashLoop', () => {
  it('gives up after maxFailures within the window, and forgets failures older than the window', () => {
    let now = 0;
    const loop = new CrashLoop(3, 10_000, () => now);
    expect(loop.record()).toBe(false);
    now = 9_000;
    expect(loop.record()).toBe(false);
    now = 12_000; // the first failure left the window
    expect(loop.record()).toBe(false);
    expect(loop.failures).toBe(2);
    now = 13_000;
    expect(loop.record()).toBe(true);
  });
});

describe('relayLevel', () => {
  it('relays errors and warnings as warnings, the routine autosave line at debug, the rest as info', () => {
    expect(relayLevel('Error: Address already in use')).toBe('warn');
    expect(relayLevel('Warning: Mosquitto should not be run as root/administrator.')).toBe('warn');
    expect(relayLevel('Error saving in-memory database, unable to open /data/mosquitto/mosquitto.db.new for writing.')).toBe('warn');
    expect(relayLevel('Saving in-memory database to /data/mosquitto//mosquitto.db.')).toBe('debug');
    expect(relayLevel('New client connected from 127.0.0.1:40000 as s1 (p2, c0, k60).')).toBe('info');
  });
});
