// A raw TCP client that sends one GET and then stops reading: the slow consumer that never drains.
import net from 'node:net';

export interface StalledClient {
  socket: net.Socket;
  /** Starts reading again (and discards what arrives). */
  resume(): void;
  close(): void;
}

export function stalledClient(port: number, path: string): Promise<StalledClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
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
