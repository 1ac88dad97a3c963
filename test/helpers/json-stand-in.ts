import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request to a stand-in: its method, path (no query), headers and whole body as text. */
export interface StandInRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Answers with a JSON body. */
export type Reply = (status: number, json: unknown) => void;

export interface JsonStandIn {
  url: string;
  /** host:port */
  host: string;
  stop(): Promise<void>;
}

/**
 * A local HTTP server on a free port for the stand-ins of Google REST APIs: it reads each request whole and
 * hands it to `route`, which answers through `reply`. `stop` closes it and every connection left open.
 */
export async function startJsonStandIn(route: (req: StandInRequest, reply: Reply) => void): Promise<JsonStandIn> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://stand-in').pathname;
      route({ method: req.method ?? '', path, headers: req.headers, body }, (status, json) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(json));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
