import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../core/errors.js';
import { renderMosquittoConf } from './mosquitto-conf.js';
import type { BrokerSecurity } from '../security/policy.js';

const base = { host: '0.0.0.0', port: 1883, dataDir: '/var/lib/ingest', user: 'node' };
const internal = { port: 40001, passwordFile: '/var/lib/ingest/mosquitto/internal.passwd', aclFile: '/var/lib/ingest/mosquitto/internal.acl' };

function listenerBlocks(conf: string): string[][] {
  const lines = conf.split('\n').filter((l) => l && !l.startsWith('#'));
  const blocks: string[][] = [];
  for (const line of lines) {
    if (line.startsWith('listener ')) blocks.push([line]);
    else if (blocks.length > 0 && /^(allow_anonymous|password_file|acl_file|max_connections|certfile|keyfile|cafile|require_certificate|use_identity_as_username) /.test(line)) blocks.at(-1)!.push(line);
  }
  return blocks;
}

describe('renderMosquittoConf with security', () => {
  const security: BrokerSecurity = {
    host: '0.0.0.0',
    plaintextPort: 1883,
    tls: { port: 8883, certFile: '/tls/server.crt', keyFile: '/tls/server.key', caFile: '/tls/ca.crt', requireClientCert: false },
    wsPort: 9001,
    authFile: '/etc/ingest/passwd',
    aclFile: '/etc/ingest/acl',
    allowAnonymous: false,
    identityFromCert: false,
    maxPacketBytes: 1_048_576,
    maxConnections: 5000,
  };

  it("gives each listener its own users (per_listener_settings), the node's on loopback only", () => {
    const conf = renderMosquittoConf({ ...base, security, internal, wsRelayPort: 40002 });
    expect(conf).toMatch(/^per_listener_settings true$/m);
    expect(conf).toMatch(/^max_packet_size 1048576$/m);
    expect(conf).toMatch(/^sys_interval 10$/m);
    expect(listenerBlocks(conf)).toEqual([
      ['listener 40001 127.0.0.1', 'allow_anonymous false', `password_file ${internal.passwordFile}`, `acl_file ${internal.aclFile}`],
      ['listener 1883 0.0.0.0', 'max_connections 5000', 'allow_anonymous false', 'password_file /etc/ingest/passwd', 'acl_file /etc/ingest/acl'],
      // Without mTLS the CA is not given to Mosquitto: it would not be used.
      ['listener 8883 0.0.0.0', 'max_connections 5000', 'certfile /tls/server.crt', 'keyfile /tls/server.key', 'allow_anonymous false', 'password_file /etc/ingest/passwd', 'acl_file /etc/ingest/acl'],
      ['listener 40002 127.0.0.1', 'allow_anonymous false', 'password_file /etc/ingest/passwd', 'acl_file /etc/ingest/acl'],
    ]);
  });

  it('with mTLS and no password file, takes the user name from the certificate and reads no password file', () => {
    const mtls: BrokerSecurity = {
      ...security,
      plaintextPort: undefined,
      wsPort: undefined,
      authFile: undefined,
      tls: { ...security.tls!, requireClientCert: true },
      identityFromCert: true,
    };
    const blocks = listenerBlocks(renderMosquittoConf({ ...base, security: mtls, internal }));
    expect(blocks).toHaveLength(2); // no plaintext listener, no relay
    expect(blocks[1]).toEqual([
      'listener 8883 0.0.0.0',
      'max_connections 5000',
      'certfile /tls/server.crt',
      'keyfile /tls/server.key',
      'cafile /tls/ca.crt',
      'require_certificate true',
      'use_identity_as_username true',
      'allow_anonymous false',
      'acl_file /etc/ingest/acl',
    ]);
  });

  it('mqtt-ingest leave: only the loopback listener of the node, with its persistence kept; refused without one', () => {
    const conf = renderMosquittoConf({ ...base, security, internal, wsRelayPort: 40002, loopbackOnly: true });
    expect(listenerBlocks(conf)).toEqual([['listener 40001 127.0.0.1', 'allow_anonymous false', `password_file ${internal.passwordFile}`, `acl_file ${internal.aclFile}`]]);
    expect(conf).toMatch(/^persistence true$/m);
    expect(conf).toMatch(/^persistence_location \/var\/lib\/ingest\/mosquitto\/$/m);
    expect(() => renderMosquittoConf({ ...base, security, loopbackOnly: true })).toThrow(/loopbackOnly needs the internal listener/);
  });

  it('renders `::` as listeners without an address, since `listener <port> ::` is IPv6-only', () => {
    const conf = renderMosquittoConf({ ...base, security: { ...security, host: '::' }, internal });
    expect(conf).toMatch(/^listener 1883$/m);
    expect(conf).toMatch(/^listener 8883$/m);
    expect(conf).toMatch(/^listener 40001 127\.0\.0\.1$/m);
  });

  it('refuses relative or multi-line file paths', () => {
    const bad = { ...security, authFile: 'passwd', aclFile: '/a\nlistener 1' };
    expect(() => renderMosquittoConf({ ...base, security: bad, internal })).toThrow(BrokerError);
    expect(() => renderMosquittoConf({ ...base, security: bad, internal })).toThrow(/"passwd".*"\/a\\nlistener 1"/s);
  });
});
