// Behind compression() in pass-through (sse-guard's default 'bypass'), events go around
// compression's res.write wrapper only when it is the one wrapper there: any other wrapper, before
// or after compression, sees every write, and the bytes on the wire are the same either way.
import compression from 'compression';
import type { RequestHandler, Response } from 'express';
import type { Socket } from 'node:net';
import { sse } from '../src/index';
import { expressVersions } from './helpers/express';
import { exchange } from './helpers/raw';
import { listen, type TestServer } from './helpers/server';

const EVENTS = ['one', 'two', 'three'];
const frames = [':\n', ...EVENTS.map((e) => `data: ${e}\n\n`)];
const chunked = frames.map((t) => `${Buffer.byteLength(t).toString(16)}\r\n${t}\r\n`).join('') + '0\r\n\r\n';
const request = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n`;

describe.each(expressVersions)('sse() behind compression() in pass-through (%s)', (_name, express) => {
  let srv: TestServer;
  // Socket writes per route, and what each res.write wrapper saw.
  const socketWrites = new Map<string, number>();
  const seen = new Map<string, string[]>();

  // Logging or metering middleware: counts and keeps every write it is given.
  const wrapWrite =
    (key: string): RequestHandler =>
    (_req, res, next) => {
      const write = res.write;
      const log: string[] = [];
      seen.set(key, log);
      res.write = function (this: Response, chunk: unknown, ...rest: unknown[]) {
        log.push(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
        return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
      } as Response['write'];
      next();
    };

  const events = sse(
    (stream, req) => {
      // Counted on the socket itself, below every wrapper: one write per event on the direct path,
      // four (size line, CRLF, bytes, CRLF) through res.write().
      const socket = req.socket as Socket & { write: Socket['write'] };
      const write = socket.write;
      let count = 0;
      socket.write = function (this: Socket, ...args: unknown[]) {
        count++;
        return (write as (...a: unknown[]) => boolean).apply(this, args);
      } as Socket['write'];
      for (const data of EVENTS) stream.send(data);
      // After the events' writes are corked and flushed, before the end.
      socketWrites.set((req.url ?? '').split('?')[0]!, count);
      stream.close();
    },
    { heartbeat: false },
  );

  beforeAll(async () => {
    const app = express();
    app.use('/before', wrapWrite('before'));
    app.use(compression({ threshold: 0 }));
    app.get('/alone', events);
    app.get('/before', events);
    app.get('/after', wrapWrite('after'), events);
    // Below res.write: a layer that patched the response's _send itself keeps its patch and sees every piece.
    app.get(
      '/own-send',
      (_req, res, next) => {
        const target = res as unknown as { _send: (...args: unknown[]) => unknown };
        const send = target._send;
        let pieces = 0;
        target._send = function (this: unknown, ...args: unknown[]) {
          pieces++;
          seen.set('own-send', [String(pieces)]);
          return send.apply(this, args);
        };
        next();
      },
      events,
    );
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  test('with compression the only wrapper, each event goes to the socket in one write, the same bytes', async () => {
    const response = await exchange(srv.port, request('/alone'));
    expect(response).not.toMatch(/content-encoding/i);
    expect(response.slice(response.indexOf('\r\n\r\n') + 4)).toBe(chunked);
    expect(socketWrites.get('/alone')).toBe(EVENTS.length);
  });

  test("whatever the app's stack trace limit, which is left as it was", async () => {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      const response = await exchange(srv.port, request('/alone'));
      expect(Error.stackTraceLimit).toBe(0);
      expect(response.slice(response.indexOf('\r\n\r\n') + 4)).toBe(chunked);
      expect(socketWrites.get('/alone')).toBe(EVENTS.length);
    } finally {
      Error.stackTraceLimit = limit;
    }
  });

  test('a response whose own _send was patched keeps the patch, and every write goes through it', async () => {
    const response = await exchange(srv.port, request('/own-send'));
    expect(response.slice(response.indexOf('\r\n\r\n') + 4)).toBe(chunked);
    // Four pieces per write (preamble and three events), then the end's.
    expect(Number(seen.get('own-send')![0])).toBeGreaterThanOrEqual(frames.length * 4);
    expect(socketWrites.get('/own-send')).toBe(EVENTS.length * 4);
  });

  test.each(['before', 'after'])('a res.write wrapper mounted %s compression sees every write, and the bytes are the same', async (where) => {
    const response = await exchange(srv.port, request(`/${where}`));
    expect(response).not.toMatch(/content-encoding/i);
    expect(response.slice(response.indexOf('\r\n\r\n') + 4)).toBe(chunked);
    expect(seen.get(where)).toEqual(frames);
    // Through res.write(): Node's four pieces per event.
    expect(socketWrites.get(`/${where}`)).toBe(EVENTS.length * 4);
  });
});
