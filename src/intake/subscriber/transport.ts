import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import WebSocket, { createWebSocketStream } from 'ws';

/** The byte stream under an MQTT session, and how to know it is open. */
export interface Transport {
  stream: Duplex;
  /** Resolves once bytes can flow (TCP connected, TLS handshake done, WebSocket open). */
  ready: Promise<void>;
}

const DEFAULT_PORTS: Record<string, number> = { 'mqtt:': 1883, 'tcp:': 1883, 'mqtts:': 8883, 'ssl:': 8883, 'ws:': 80, 'wss:': 443 };

/**
 * Opens the stream for a broker URL: mqtt/tcp (plain TCP), mqtts/ssl (TLS, verified against the system CAs
 * plus NODE_EXTRA_CA_CERTS), ws/wss (MQTT over WebSocket, subprotocol "mqtt", MQTT-6.0.0-3).
 */
export function openTransport(url: URL, timeoutMs: number): Transport {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port) || DEFAULT_PORTS[url.protocol] || 1883;
  switch (url.protocol) {
    case 'mqtt:':
    case 'tcp:': {
      const socket = net.connect({ host, port, noDelay: true });
      return { stream: socket, ready: settle(socket, 'connect', timeoutMs) };
    }
    case 'mqtts:':
    case 'ssl:': {
      const socket = tls.connect({ host, port, servername: net.isIP(host) ? undefined : host });
      socket.setNoDelay(true);
      return { stream: socket, ready: settle(socket, 'secureConnect', timeoutMs) };
    }
    case 'ws:':
    case 'wss:': {
      const ws = new WebSocket(url, 'mqtt', { handshakeTimeout: timeoutMs });
      const stream = createWebSocketStream(ws);
      return { stream, ready: settle(ws, 'open', timeoutMs) };
    }
    default:
      throw new Error(`unsupported broker URL scheme ${url.protocol}`);
  }
}

function settle(emitter: NodeJS.EventEmitter, event: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`connection timed out after ${timeoutMs} ms`)), timeoutMs);
    const onOk = () => done();
    const onErr = (err: Error) => done(err);
    function done(err?: Error) {
      clearTimeout(timer);
      emitter.removeListener(event, onOk);
      emitter.removeListener('error', onErr);
      if (err) reject(err);
      else resolve();
    }
    emitter.once(event, onOk);
    emitter.once('error', onErr);
  });
}
