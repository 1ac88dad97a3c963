import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { hostAndPort, probeTcp, proxyVariable, unreachableWords } from './reach.js';

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('whether a service can be reached', () => {
  it('reads the host and port of every endpoint form the commands name', () => {
    expect(hostAndPort({ at: '127.0.0.1:8085' })).toEqual({ host: '127.0.0.1', port: 8085 });
    expect(hostAndPort({ at: 'pubsub.googleapis.com' })).toEqual({ host: 'pubsub.googleapis.com', port: 443 });
    expect(hostAndPort({ at: '169.254.169.254', port: 80 })).toEqual({ host: '169.254.169.254', port: 80 });
    expect(hostAndPort({ at: 'http://127.0.0.1:9050' })).toEqual({ host: '127.0.0.1', port: 9050 });
    expect(hostAndPort({ at: 'https://bigquery.googleapis.com' })).toEqual({ host: 'bigquery.googleapis.com', port: 443 });
    expect(hostAndPort({ at: 'mqtt://broker.example' })).toEqual({ host: 'broker.example', port: 1883 });
    expect(hostAndPort({ at: 'mqtts://***@broker.example:8884' })).toEqual({ host: 'broker.example', port: 8884 });
    expect(hostAndPort({ at: '[::1]:8085' })).toEqual({ host: '::1', port: 8085 });
    expect(hostAndPort({ at: 'not an address' })).toBeUndefined();
  });

  it('a refused port: connection refused, naming the address', async () => {
    const port = await closedPort();
    const started = Date.now();
    await expect(probeTcp({ at: `127.0.0.1:${port}` }, 5_000)).resolves.toEqual({ reached: false, why: `connection refused (nothing listens on 127.0.0.1:${port})` });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('a server that accepts (and says nothing): reached, and the connection is closed again', async () => {
    let closed = 0;
    const server = net.createServer((s) => s.on('close', () => (closed += 1)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      await expect(probeTcp({ at: `http://127.0.0.1:${port}` }, 5_000)).resolves.toEqual({ reached: true });
      await expect.poll(() => closed).toBe(1);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('a name that does not resolve is said to be one', async () => {
    const reach = await probeTcp({ at: 'no-such-host.invalid:8085' }, 8_000);
    expect(reach.reached).toBe(false);
    expect(reach.reached ? '' : reach.why).toMatch(/^the name no-such-host\.invalid (does not resolve \(ENOTFOUND\)|could not be resolved \(EAI_AGAIN)|^no TCP connection to no-such-host\.invalid:8085/);
  });

  it('tells failures to reach a service from its answers', () => {
    expect(unreachableWords(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }))).toBe('connect ECONNREFUSED 127.0.0.1:9');
    expect(unreachableWords(Object.assign(new Error('getaddrinfo ENOTFOUND x.invalid'), { code: 'ENOTFOUND' }))).toBe('getaddrinfo ENOTFOUND x.invalid');
    expect(unreachableWords(Object.assign(new Error('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED'), { code: 14 }))).toMatch(/^14 UNAVAILABLE/);
    expect(unreachableWords(Object.assign(new Error('5 NOT_FOUND: Resource not found'), { code: 5 }))).toBeUndefined();
    expect(unreachableWords(Object.assign(new Error('Not found: Dataset p:d'), { code: 404 }))).toBeUndefined();
    expect(unreachableWords(undefined)).toBeUndefined();
  });

  it('names the proxy variable the libraries would go through', () => {
    expect(proxyVariable({})).toBeUndefined();
    expect(proxyVariable({ https_proxy: 'http://proxy:3128' })).toBe('https_proxy');
  });
});
