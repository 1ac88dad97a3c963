import net from 'node:net';

/**
 * A TCP server that accepts every connection and never sends a byte: a service that "does not answer" (a
 * wrong address behind a proxy, a firewall that swallows replies). It counts the connections it accepted.
 */
export interface SilentServer {
  /** 127.0.0.1:port */
  host: string;
  port: number;
  connections(): number;
  stop(): Promise<void>;
}

export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    port,
    connections: () => accepted,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
