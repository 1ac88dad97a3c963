import net from 'node:net';

/**
 * A TCP relay on 127.0.0.1 between a client and a server, to simulate outages: cut() resets every
 * connection and closes the listener (new connections are refused, as with a server that is down);
 * restore() listens again on the same port.
 */
export interface TcpProxy {
  readonly port: number;
  cut(): void;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;

  const relay = (client: net.Socket) => {
    const upstream = net.connect({ host: targetHost, port: targetPort });
    sockets.add(client);
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
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer(relay);
      s.once('error', reject);
      // Port 0 the first time; the same port after a cut, so the client's target does not change.
      // libuv sets SO_REUSEADDR, so sockets left in TIME_WAIT do not block the re-bind.
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as net.AddressInfo).port;
        server = s;
        resolve();
      });
    });

  /** Stops listening; resolves once the listener is closed. */
  const stopListening = () => {
    const s = server;
    server = undefined;
    return new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()));
  };

  const resetAll = () => {
    for (const s of sockets) {
      // An RST rather than a FIN, like a crashed peer or a dropped route; a socket still connecting has
      // no TCP handle yet and can only be destroyed.
      try {
        s.resetAndDestroy();
      } catch {
        s.destroy();
      }
    }
    sockets.clear();
  };

  await listen();
  return {
    get port() {
      return port;
    },
    cut: () => {
      void stopListening();
      resetAll();
    },
    restore: async () => {
      if (!server) await listen();
    },
    close: async () => {
      const closed = stopListening();
      resetAll();
      await closed;
    },
  };
}
