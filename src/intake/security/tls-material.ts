/**
 * The TLS files of the broker's listeners (MQTT_TLS_CERT, MQTT_TLS_KEY, MQTT_TLS_CA): read, checked and turned
 * into what Node's `tls` needs, and their expiry dates. Mosquitto reads the same files itself; checking them
 * here first makes a bad file a start-up problem with a clear message in both modes.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import type { TLSSocket } from 'node:tls';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  caFile?: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  /** The server chain, leaf first, as listed in the file. */
  chain: X509Certificate[];
  caCerts: X509Certificate[];
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM bundle, in order; throws when one does not parse. */
export function pemCertificates(pem: string): X509Certificate[] {
  return (pem.match(PEM_CERT) ?? []).map((block) => new X509Certificate(block));
}

/**
 * Reads and checks the files. Problems name the variable and the file; the key's content is never shown.
 * Returns the material only when there is no problem.
 */
export function loadTlsMaterial(files: TlsFiles, now = Date.now()): { material?: TlsMaterial; problems: string[] } {
  const problems: string[] = [];
  const read = (name: string, file: string): Buffer | undefined => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      problems.push(`${name}: cannot read ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      return undefined;
    }
  };
  const cert = read('MQTT_TLS_CERT', files.certFile);
  const key = read('MQTT_TLS_KEY', files.keyFile);
  const ca = files.caFile === undefined ? undefined : read('MQTT_TLS_CA', files.caFile);

  const chain = cert ? certificatesOf('MQTT_TLS_CERT', files.certFile, cert, problems) : [];
  const caCerts = ca && files.caFile ? certificatesOf('MQTT_TLS_CA', files.caFile, ca, problems) : [];
  let keyObject: KeyObject | undefined;
  if (key) {
    try {
      keyObject = createPrivateKey(key);
    } catch {
      // The parser's message can quote the input; say only what is wrong.
      problems.push(`MQTT_TLS_KEY: ${JSON.stringify(files.keyFile)} is not a PEM private key without a passphrase`);
    }
  }
  const leaf = chain[0];
  if (leaf && keyObject && !leaf.checkPrivateKey(keyObject)) {
    problems.push(`MQTT_TLS_KEY: ${JSON.stringify(files.keyFile)} is not the private key of the first certificate in MQTT_TLS_CERT`);
  }
  if (leaf && Date.parse(leaf.validTo) <= now) {
    problems.push(`MQTT_TLS_CERT: the certificate in ${JSON.stringify(files.certFile)} expired on ${leaf.validTo}`);
  }
  if (problems.length > 0 || !cert || !key) return { problems };
  return { material: { cert, key, ...(ca ? { ca } : {}), chain, caCerts }, problems };
}

function certificatesOf(name: string, file: string, pem: Buffer, problems: string[]): X509Certificate[] {
  try {
    const certs = pemCertificates(pem.toString('utf8'));
    if (certs.length === 0) problems.push(`${name}: ${JSON.stringify(file)} holds no PEM certificate`);
    return certs;
  } catch (err) {
    problems.push(`${name}: ${JSON.stringify(file)} holds a certificate that does not parse (${(err as Error).message})`);
    return [];
  }
}

/** The earliest `notAfter` of the certificates, in ms since the epoch, or undefined for none. */
export function earliestExpiry(certs: X509Certificate[]): number | undefined {
  const times = certs.map((c) => Date.parse(c.validTo)).filter((t) => Number.isFinite(t));
  return times.length === 0 ? undefined : Math.min(...times);
}

/**
 * The client certificate's first Common Name, as Mosquitto's `use_identity_as_username` takes it
 * (X509_NAME_get_index_by_NID(…, NID_commonName, -1) is the first CN). Undefined without a verified certificate
 * or with a NUL in the name (Mosquitto refuses those too).
 */
export function peerCommonName(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cn = socket.getPeerCertificate()?.subject?.CN as string | string[] | undefined;
  const first = Array.isArray(cn) ? cn[0] : cn;
  return first && !first.includes('\0') ? first : undefined;
}
