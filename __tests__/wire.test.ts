// The bytes on the socket. Events go to the socket as one pre-framed HTTP/1.1 chunk where res.write()
// would put exactly those bytes there; everywhere else they go through res.write().
import express from 'express';
import { sse } from '../src/index';
import { exchange } from './helpers/raw';
import { listen, type TestServer } from './helpers/server';

const bodyOf = (response: string): string => response.slice(response.indexOf('\r\n\r\n') + 4);
const get = (path: string, version = '1.1', extra = ''): string =>
  `GET ${path} HTTP/${version}\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n${extra}\r\n`;

describe('bytes on the wire', () => {
  let srv: TestServer;
  const seenByWrapper: string[] = [];

  beforeAll(async () => {
    const app = express();
    const events = sse(
      (stream) => {
        stream.send('plain');
        stream.send({ event: 'e', id: 1, data: 'héllo 🌍\nline 2' });
        stream.comment('c');
        stream.close();
      },
      { heartbeat: false },
    );
    app.get('/events', events);
    // A middleware that wraps res.write, as logging or metering middleware does.
    app.get(
      '/wrapped',
      (_req, res, next) => {
        const write = res.write;
        res.write = function (this: typeof res, chunk: unknown, ...rest: unknown[]) {
          seenByWrapper.push(String(chunk));
          return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
        } as typeof res.write;
        next();
      },
      events,
    );
    app.get('/slow', (_req, res) => {
      setTimeout(() => res.end('first'), 100);
    });
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  // The connect line first: a comment, so that proxies holding the head until the first body byte let it go.
  const frames = [':\n', 'data: plain\n\n', 'id: 1\nevent: e\ndata: héllo 🌍\ndata: line 2\n\n', ': c\n'];
  const chunked = (texts: string[]): string =>
    texts.map((t) => `${Buffer.byteLength(t).toString(16)}\r\n${t}\r\n`).join('') + '0\r\n\r\n';

  it('frames each write as one HTTP/1.1 chunk whose size counts UTF-8 bytes, and ends with the last chunk', async () => {
    const response = await exchange(srv.port, get('/events', '1.1', 'Connection: close\r\n'));
    expect(response).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(response).toMatch(/\r\nTransfer-Encoding: chunked\r\n/i);
    expect(bodyOf(response)).toBe(chunked(frames));
  });

  it('sends an HTTP/1.0 client the plain stream, ended by closing the connection', async () => {
    const response = await exchange(srv.port, get('/events', '1.0'));
    expect(response).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(response).not.toMatch(/Transfer-Encoding/i);
    expect(bodyOf(response)).toBe(frames.join(''));
  });

  it('writes through a middleware that wrapped res.write, which sees every event', async () => {
    seenByWrapper.length = 0;
    const response = await exchange(srv.port, get('/wrapped', '1.1', 'Connection: close\r\n'));
    expect(bodyOf(response)).toBe(chunked(frames));
    expect(seenByWrapper.join('')).toBe(frames.join(''));
  });

  it('keeps pipelined responses in order: the stream waits for the response ahead of it', async () => {
    const response = await exchange(srv.port, get('/slow') + get('/events', '1.1', 'Connection: close\r\n'));
    const [first, second] = response.split(/(?=HTTP\/1\.1 200 OK\r\n)/);
    expect(bodyOf(first!)).toMatch(/first/);
    expect(bodyOf(second!)).toBe(chunked(frames));
  });
});
