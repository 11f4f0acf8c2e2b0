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
