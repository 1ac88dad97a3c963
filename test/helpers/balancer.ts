import net from 'node:net';

/**
 * An L4 (TCP) load balancer on 127.0.0.1, as a cloud TCP load balancer or a Kubernetes Service in front of
 * several nodes: each new connection goes to the next backend in turn; a backend that refuses the connection
 * is skipped for that connection (as a health-checked balancer stops sending to a dead instance). A connection
 * stays with its backend until either side closes it.
 */
export interface Balancer {
  readonly port: number;
  /** Connections each backend port was given. */
  readonly given: Map<number, number>;
  close(): Promise<void>;
}

export async function startBalancer(backends: () => number[]): Promise<Balancer> {
  const sockets = new Set<net.Socket>();
  const given = new Map<number, number>();
  let turn = 0;

  const connectTo = (ports: number[], attempt: number, client: net.Socket) => {
    if (attempt >= ports.length || client.destroyed) {
      client.destroy();
      return;
    }
    const port = ports[(turn + attempt) % ports.length]!;
    const upstream = net.connect({ host: '127.0.0.1', port });
    const refused = () => connectTo(ports, attempt + 1, client);
    upstream.once('error', refused);
    upstream.once('connect', () => {
      upstream.off('error', refused);
      given.set(port, (given.get(port) ?? 0) + 1);
      sockets.add(upstream);
      const done = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      };
      for (const s of [client, upstream]) {
        s.setNoDelay(true);
        s.on('error', done);
        s.on('close', done);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  };

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    sockets.add(client);
    client.on('error', () => client.destroy());
    const ports = backends();
    turn = (turn + 1) % Math.max(1, ports.length);
    connectTo(ports, 0, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    given,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
