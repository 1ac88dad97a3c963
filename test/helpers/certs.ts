import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A small PKI made with the real openssl for TLS tests: a CA, a server certificate for localhost and 127.0.0.1,
 * client certificates signed by the CA (the CN is the identity), and a second CA that signs a "rogue" client.
 * EC P-256 keys: as good for the tests as RSA and much faster to make.
 */
export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** A client certificate (and key) signed by the CA for `cn`. */
  client(cn: string): { cert: string; key: string };
  /** A client certificate signed by another CA. */
  rogueClient: { cert: string; key: string };
  /** A server certificate and key that expire in `days` (for the expiry warning). */
  serverExpiringIn(days: number): { cert: string; key: string };
  cleanup(): void;
}

export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function newKey(dir: string, name: string): string {
  const file = path.join(dir, `${name}.key`);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file], dir);
  return file;
}

function selfSignedCa(dir: string, name: string, cn: string): { cert: string; key: string } {
  const key = newKey(dir, name);
  const cert = path.join(dir, `${name}.crt`);
  openssl(['req', '-x509', '-new', '-key', key, '-out', cert, '-days', '30', '-subj', `/CN=${cn}`], dir);
  return { cert, key };
}

function signed(dir: string, ca: { cert: string; key: string }, name: string, cn: string, days: number, san?: string): { cert: string; key: string } {
  const key = newKey(dir, name);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  openssl(['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${cn}`], dir);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, san ? `subjectAltName=${san}\n` : 'basicConstraints=CA:FALSE\n');
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', String(days), '-extfile', ext], dir);
  return { cert, key };
}

export function makePki(): TestPki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqtt-ingest-pki-'));
  const ca = selfSignedCa(dir, 'ca', 'mqtt-ingest test CA');
  const server = signed(dir, ca, 'server', 'localhost', 30, 'DNS:localhost,IP:127.0.0.1');
  const other = selfSignedCa(dir, 'other-ca', 'someone else');
  const clients = new Map<string, { cert: string; key: string }>();
  let n = 0;
  return {
    dir,
    caCert: ca.cert,
    serverCert: server.cert,
    serverKey: server.key,
    client(cn) {
      let c = clients.get(cn);
      if (!c) clients.set(cn, (c = signed(dir, ca, `client-${clients.size}`, cn, 30)));
      return c;
    },
    rogueClient: signed(dir, other, 'rogue', 'rogue', 30),
    serverExpiringIn(days) {
      n += 1;
      return signed(dir, ca, `expiring-${n}`, 'localhost', days, 'DNS:localhost,IP:127.0.0.1');
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
