// A raw TCP client that sends one GET and then stops reading: the slow consumer that never drains.
import net from 'node:net';

export interface StalledClient {
  socket: net.Socket;
  /** Starts reading again (and discards what arrives). */
  resume(): void;
  close(): void;
}

export function stalledClient(port: number, path: string, headers: Record<string, string> = {}): Promise<StalledClient> {
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n${extra}\r\n`);
      // Let the response headers arrive before pausing, so the server has flushed its head.
      socket.once('data', () => {
        socket.pause();
        resolve({
          socket,
          resume: () => {
            socket.on('data', () => {});
            socket.resume();
          },
          close: () => socket.destroy(),
        });
      });
    });
    socket.on('error', reject);
  });
}

export interface RawExchange {
  /** Everything received, read as Latin-1 (one character per byte). */
  text(): string;
  /** Resolves once the server ended or closed the connection. */
  ended: Promise<void>;
  close(): void;
}

/** Sends `request` byte for byte (a head with raw UTF-8 bytes, an HTTP/1.0 request) and keeps reading. */
export function rawRequest(port: number, request: Buffer | string): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write(request);
      resolve({ text: () => Buffer.concat(chunks).toString('latin1'), ended, close: () => socket.destroy() });
    });
    const ended = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('error', reject);
  });
}

/** The response head, byte for byte as it came off the socket (to count header lines); fails after `timeoutMs`. */
export function rawHead(port: number, path: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => socket.destroy(new Error(`no response head within ${timeoutMs} ms`)), timeoutMs);
    let seen = '';
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1');
      const end = seen.indexOf('\r\n\r\n');
      if (end === -1) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(seen.slice(0, end));
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
  });
}

/** Sends raw request bytes and returns every byte the server wrote until it closed or `ms` passed. */
export function exchangeBytes(port: number, request: string, ms = 1000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(request));
    const timer = setTimeout(() => socket.destroy(), ms);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** exchangeBytes() as UTF-8 text. */
export const exchange = async (port: number, request: string, ms = 1000): Promise<string> => (await exchangeBytes(port, request, ms)).toString('utf8');
