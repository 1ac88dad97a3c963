/**
 * The network listeners the node itself opens: the embedded broker's plaintext, TLS and WebSocket listeners,
 * and in mosquitto mode the WebSocket listener whose connections the node relays to Mosquitto. Each applies
 * MQTT_MAX_CONNECTIONS per listener (as Mosquitto's max_connections does) and reports refusals.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { BrokerError } from '../../core/errors.js';
import type { RefusalReason } from '../broker-metrics.js';
import { peerCommonName } from './tls-material.js';

export interface TlsServerOptions {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  requireClientCert: boolean;
}

export interface Listener {
  readonly port: number;
  close(): Promise<void>;
  /** Swaps in new certificates for new connections; connected clients keep theirs (SIGHUP). */
  setTls?(options: TlsServerOptions): void;
}

export interface ListenerEvents {
  /** A refused connection, as the broker metrics count it. */
  onRefused(reason: RefusalReason, detail: string): void;
}

/**
 * Node's TLS options for a listener. As in Mosquitto, a client certificate is asked for only when it is
 * required (require_certificate); without MQTT_TLS_REQUIRE_CLIENT_CERT, MQTT_TLS_CA is not used.
 */
export function secureContextOptions(o: TlsServerOptions): tls.SecureContextOptions & tls.TlsOptions {
  return {
    cert: o.cert,
    key: o.key,
    ...(o.requireClientCert && o.ca ? { ca: o.ca } : {}),
    requestCert: o.requireClientCert,
    rejectUnauthorized: o.requireClientCert,
  };
}

async function listen(server: net.Server, host: string, port: number, what: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new BrokerError('BROKER_START_FAILED', `cannot listen on ${host}:${port} (${what}): ${err.message}`, { cause: err, context: { host, port } }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
  return (server.address() as net.AddressInfo).port;
}

function closeServer(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Connections the broker does not own (handshakes in progress, idle ones) would hold close() open.
    for (const s of sockets) s.destroy();
  });
}

/** Tracks a server's sockets and applies the connection limit; Node's 'drop' event reports what it refused. */
function guard(server: net.Server, maxConnections: number, events: ListenerEvents): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.maxConnections = maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => events.onRefused('max_connections', `from ${data?.remoteAddress ?? 'unknown'}`));
  server.on('connection', (socket: net.Socket) => {
    // A PUBACK is a 4-byte write: with Nagle's algorithm it waits for the TCP ACK of the previous one, which the
    // publisher may delay (Linux: up to 200 ms), so a p99 of publish → PUBACK near 200 ms (bench broker-scale).
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return sockets;
}

/** A plaintext MQTT listener; `onConnection` gets each socket. */
export async function listenMqtt(
  o: { host: string; port: number; maxConnections: number },
  events: ListenerEvents,
  onConnection: (socket: net.Socket) => void,
): Promise<Listener> {
  const server = net.createServer(onConnection);
  const sockets = guard(server, o.maxConnections, events);
  const port = await listen(server, o.host, o.port, 'MQTT');
  return { port, close: () => closeServer(server, sockets) };
}

/** A TLS MQTT listener; `onConnection` gets each socket after the handshake, with its certificate's CN. */
export async function listenMqtts(
  o: { host: string; port: number; maxConnections: number; tls: TlsServerOptions },
  events: ListenerEvents,
  onConnection: (socket: tls.TLSSocket, certCommonName: string | undefined) => void,
): Promise<Listener> {
  const server = tls.createServer(secureContextOptions(o.tls), (socket) => onConnection(socket, peerCommonName(socket)));
  // The TCP connection is counted against the limit before its handshake, as in Mosquitto.
  const sockets = guard(server, o.maxConnections, events);
  server.on('tlsClientError', (err: Error) => events.onRefused('tls', err.message));
  const port = await listen(server, o.host, o.port, 'MQTT over TLS');
  return {
    port,
    close: () => closeServer(server, sockets),
    setTls: (t) => server.setSecureContext(secureContextOptions(t)),
  };
}

/** The ws library's own limit on a WebSocket message, kept where no smaller one is given. */
const WS_DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024;

/**
 * An MQTT over WebSockets listener (secure WebSockets with `tls`). MQTT 3.1.1 §6 and 5.0 §6: the client offers
 * the subprotocol "mqtt" (old clients "mqttv3.1") and the server picks it; each binary message carries stream
 * bytes, so the connection becomes a byte stream for the broker.
 *
 * `maxMessageBytes` bounds one WebSocket message: the ws library holds a message until it is complete, before
 * any MQTT byte of it reaches the broker's packet guard. A larger message closes the connection (WebSocket close
 * code 1009), counted as `packet_too_large`. MQTT clients send a packet in one or more messages, so the largest
 * packet allowed is a bound that takes every packet.
 */
export async function listenWebSocket(
  o: { host: string; port: number; maxConnections: number; tls?: TlsServerOptions; maxMessageBytes?: number },
  events: ListenerEvents,
  onStream: (stream: Duplex, certCommonName: string | undefined) => void,
): Promise<Listener> {
  const notFound = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('MQTT over WebSockets: connect with the "mqtt" subprotocol\n');
  };
  const server = o.tls ? https.createServer(secureContextOptions(o.tls), notFound) : http.createServer(notFound);
  const sockets = guard(server, o.maxConnections, events);
  if (o.tls) server.on('tlsClientError', (err: Error) => events.onRefused('tls', err.message));
  const maxPayload = o.maxMessageBytes ?? WS_DEFAULT_MAX_PAYLOAD;
  const wss = new WebSocketServer({
    server,
    maxPayload,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  wss.on('connection', (ws, req) => {
    const socket = req.socket as tls.TLSSocket;
    const cn = o.tls ? peerCommonName(socket) : undefined;
    const stream = createWebSocketStream(ws);
    // A bad frame or a closed socket surfaces as a stream error; the broker sees the stream end.
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') events.onRefused('packet_too_large', `a WebSocket message over ${maxPayload} bytes`);
      stream.destroy();
    });
    onStream(stream, cn);
  });
  wss.on('error', () => undefined); // listen errors surface from server.listen below
  const port = await listen(server, o.host, o.port, 'MQTT over WebSockets');
  return {
    port,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await closeServer(server, sockets);
    },
    ...(o.tls ? { setTls: (t: TlsServerOptions) => (server as https.Server).setSecureContext(secureContextOptions(t)) } : {}),
  };
}
