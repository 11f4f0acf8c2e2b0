// guard() against what cuts a stream it did not write: request-timeout middleware and the socket idle
// timer; how it meets sse() (one set of headers, one heartbeat, sse()'s own refusal kept); HTTP/2.
import compression from 'compression';
import timeout from 'connect-timeout';
import type { ErrorRequestHandler, Express, RequestHandler } from 'express';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { guard, sse, stats, type GuardReason } from '../src/index';
import { collect } from '../src/testing';
import { expressVersions } from './helpers/express';
import { exchange } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';
import { naiveSse } from './helpers/streams';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const timeoutHandler = require('express-timeout-handler') as { handler(options: { timeout: number }): RequestHandler };

const EVENTSOURCE = { accept: 'text/event-stream' };

describe.each(expressVersions)('guard() and timeouts (%s)', (_name, express) => {
  let srv: TestServer;
  const log: Array<[GuardReason, Record<string, unknown>]> = [];
  const logger = (reason: GuardReason, details: Record<string, unknown>) => log.push([reason, details]);

  beforeAll(async () => {
    const app: Express = express();
    // Setup slower than the timeout: the route writes its head after 600 ms; the timeouts fire at 250 ms.
    const slow = naiveSse({ delay: 600 });
    for (const [prefix, armed] of [
      ['/ct', timeout('250ms')],
      ['/eth', timeoutHandler.handler({ timeout: 250 })],
    ] as const) {
      const guarded = express.Router();
      guarded.use(armed, guard({ logger }));
      guarded.get('/slow', slow);
      guarded.get('/sse', sse((stream) => void stream.send('never')));
      app.use(`${prefix}/guarded`, guarded);
      const control = express.Router();
      control.use(armed);
      control.get('/slow', slow);
      app.use(`${prefix}/control`, control);
    }
    // The socket idle timer (server.setTimeout below): a stream quiet for longer is cut.
    app.get('/quiet/guarded', guard({ logger, heartbeat: false }), naiveSse({ interval: 700 }));
    app.get('/quiet/control', naiveSse({ interval: 700 }));
    const onError: ErrorRequestHandler = (err, _req, res, _next) => {
      if (!res.headersSent) res.status(err.status ?? 500).json({ code: err.code });
    };
    app.use(onError);
    srv = await listen(app);
    srv.server.setTimeout(300);
  });
  afterAll(() => srv.close());
  beforeEach(() => {
    log.length = 0;
  });

  describe.each([
    ['connect-timeout', '/ct'],
    ['express-timeout-handler', '/eth'],
  ])('%s', (middleware, prefix) => {
    it('control: a producer slower than the timeout gets 503', async () => {
      // express-timeout-handler destroys the socket after its 503: not one for the client to reuse.
      const result = await collect(`${srv.url}${prefix}/control/slow`, { count: 1, timeout: 3000, headers: { ...EVENTSOURCE, connection: 'close' } });
      expect(result.status).toBe(503);
      expect(result.events).toHaveLength(0);
    });

    it('with guard() mounted after it, an EventSource request is disarmed at once and the slow producer answers', async () => {
      const result = await collect(`${srv.url}${prefix}/guarded/slow`, { count: 2, timeout: 3000, headers: EVENTSOURCE });
      expect(result.status).toBe(200);
      expect(result.events.map((e) => e.data)).toEqual(['0', '1']);
      // Once: on the way in, not again when the type is set.
      expect(log.filter(([reason]) => reason === 'timeout-disarmed')).toEqual([['timeout-disarmed', { url: `${prefix}/guarded/slow`, middleware: [middleware] }]]);
    });

    it('a request that does not ask for an event stream is disarmed only once its type is set: too late for a slow setup', async () => {
      const result = await collect(`${srv.url}${prefix}/guarded/slow`, { count: 1, timeout: 3000, headers: { accept: '*/*', connection: 'close' } });
      expect(result.status).toBe(503);
    });

    it('sse() behind it still refuses with guard() mounted: its own policy decides', async () => {
      const result = await collect(`${srv.url}${prefix}/guarded/sse`, { timeout: 3000, headers: EVENTSOURCE });
      expect(result.status).toBe(500);
    });
  });

  it('control: the socket idle timer cuts a stream quiet for longer', async () => {
    const result = await collect(`${srv.url}/quiet/control`, { count: 2, timeout: 2500 });
    expect(result.events).toHaveLength(1);
    expect(result.ended).toBe(true);
  });

  it('guard() disarms the socket idle timer of an event stream, and says so', async () => {
    const result = await collect(`${srv.url}/quiet/guarded`, { count: 3, timeout: 3000 });
    expect(result.events).toHaveLength(3);
    expect(log).toContainEqual(['socket-timeout-disarmed', { url: '/quiet/guarded', timeout: 300 }]);
  });
});

describe.each(expressVersions)('sse() under guard() (%s)', (_name, express) => {
  let guarded: TestServer;
  let plain: TestServer;
  // guard()'s heartbeat is faster than the route's: a second heartbeat on the same stream would show.
  const route: RequestHandler = sse((stream) => void stream.send('hi'), { heartbeat: 200 });

  // In 'flush' mode sse() leaves no-transform out on purpose: guard() must not add it.
  const flushRoute: RequestHandler = sse((stream) => void stream.send('hi'), { compression: 'flush' });

  beforeAll(async () => {
    const a = express();
    a.use(compression(), guard({ heartbeat: 40 }));
    a.get('/events', route);
    a.get('/flush', flushRoute);
    guarded = await listen(a);
    const b = express();
    b.use(compression());
    b.get('/events', route);
    b.get('/flush', flushRoute);
    plain = await listen(b);
  });
  afterAll(async () => {
    await guarded.close();
    await plain.close();
  });

  const request = (target: string): string => `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\n\r\n`;
  const headOf = (raw: string): string => raw.slice(0, raw.indexOf('\r\n\r\n')).replace(/\r\nDate: [^\r]*/, '');

  it.each(['/events', '/flush'])('sends the same head as without guard() (%s)', async (target) => {
    const [a, b] = await Promise.all([exchange(guarded.port, request(target), 300), exchange(plain.port, request(target), 300)]);
    expect(headOf(a)).toBe(headOf(b));
  });

  it('gets one heartbeat, not two', async () => {
    const [a, b] = await Promise.all([
      collect(`${guarded.url}/events`, { timeout: 650 }),
      collect(`${plain.url}/events`, { timeout: 650 }),
    ]);
    expect(b.comments.length).toBeGreaterThanOrEqual(2);
    expect(a.comments.length).toBeLessThanOrEqual(b.comments.length + 1);
  });

  it('counts once in stats()', async () => {
    await waitFor('earlier streams to close', () => stats().open === 0);
    const reading = collect(`${guarded.url}/events`, { timeout: 400 });
    await sleep(200);
    expect(stats().open).toBe(1);
    await reading;
  });
});

describe('guard() on HTTP/2', () => {
  // A hand-written producer as found in HTTP/1 tutorials: its hop-by-hop headers make Node's HTTP/2
  // layer throw when the head is written (Keep-Alive, Transfer-Encoding).
  const producer = (res: http2.Http2ServerResponse): void => {
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('Keep-Alive', 'timeout=60');
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Transfer-Encoding': 'chunked' });
    res.write('data: over h2\n\n');
  };

  async function serve(withGuard: boolean): Promise<{ url: string; errors: unknown[]; close(): Promise<void> }> {
    const errors: unknown[] = [];
    const middleware = guard();
    const server = http2.createServer((req, res) => {
      const run = (): void => {
        try {
          producer(res);
        } catch (error) {
          errors.push(error);
          res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        }
      };
      if (withGuard) middleware(req as never, res as never, run);
      else run();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on('session', (session) => sessions.add(session));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      errors,
      close: () =>
        new Promise<void>((resolve) => {
          for (const session of sessions) session.destroy();
          server.close(() => resolve());
        }),
    };
  }

  function read(url: string): Promise<{ headers: http2.IncomingHttpHeaders; body: string; error?: string }> {
    return new Promise((resolve) => {
      const client = http2.connect(url);
      const request = client.request({ ':path': '/events', accept: 'text/event-stream' });
      let headers: http2.IncomingHttpHeaders = {};
      let body = '';
      const done = (error?: string): void => {
        clearTimeout(timer);
        client.destroy();
        resolve({ headers, body, error });
      };
      const timer = setTimeout(() => done(), 1000);
      request.on('response', (h) => (headers = h));
      request.setEncoding('utf8');
      request.on('data', (chunk: string) => {
        body += chunk;
        if (body.includes('\n\n')) done();
      });
      request.on('error', (error: NodeJS.ErrnoException) => done(error.code));
      client.on('error', (error: NodeJS.ErrnoException) => done(error.code));
    });
  }

  it('control: without guard() the producer throws ERR_HTTP2_INVALID_CONNECTION_HEADERS', async () => {
    const srv = await serve(false);
    const result = await read(srv.url);
    await srv.close();
    expect(srv.errors).toHaveLength(1);
    expect((srv.errors[0] as NodeJS.ErrnoException).code).toBe('ERR_HTTP2_INVALID_CONNECTION_HEADERS');
    expect(result.body).toBe('');
  });

  it('drops the hop-by-hop headers the producer set, and the stream flows', async () => {
    const srv = await serve(true);
    const result = await read(srv.url);
    await srv.close();
    expect(srv.errors).toEqual([]);
    expect(result.body).toBe('data: over h2\n\n');
    expect(result.headers[':status']).toBe(200);
    expect(result.headers['content-type']).toBe('text/event-stream');
    expect(result.headers['cache-control']).toBe('no-transform');
    expect(result.headers['x-accel-buffering']).toBe('no');
    for (const name of ['connection', 'keep-alive', 'transfer-encoding']) expect(result.headers[name]).toBeUndefined();
  });
});

// guard() mounted first, as `app.use(guard())` at the top of an app tends to be: what a route arms
// after guard()'s middleware disarmed an EventSource request is disarmed once the type is set.
// (connect-timeout clears its own timer when the head goes out; only a setup slower than it fails,
// in this order, which the README says.)
describe.each(expressVersions)('guard() mounted before the timeouts (%s)', (_name, express) => {
  let srv: TestServer;
  const log: Array<[GuardReason, Record<string, unknown>]> = [];
  const logger = (reason: GuardReason, details: Record<string, unknown>) => log.push([reason, details]);
  const said = (reason: GuardReason, url: string) => log.filter(([r, details]) => r === reason && details.url === url);

  beforeAll(async () => {
    const app: Express = express();
    // The socket idle timer, armed on the route as tutorials do; the stream is quiet for longer.
    const idleTimer: RequestHandler = (req, _res, next) => {
      req.setTimeout(300);
      next();
    };
    const quiet = naiveSse({ interval: 700 });
    // Matched before guard() is reached: the control.
    app.get('/control', idleTimer, quiet);
    app.use(guard({ logger, heartbeat: false }));
    app.get('/idle', idleTimer, quiet);
    // express-timeout-handler cuts no stream whose head is out, but its idle timer stays armed (the
    // socket is destroyed once the response ends): the stream tells what the timer is set to.
    app.get('/eth', timeoutHandler.handler({ timeout: 250 }), (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.end(`data: ${req.socket.timeout}\n\n`);
    });
    srv = await listen(app);
  });
  afterAll(() => srv.close());
  beforeEach(() => {
    log.length = 0;
  });

  it('control: the idle timer a route armed cuts a quiet EventSource stream', async () => {
    const result = await collect(`${srv.url}/control`, { count: 3, timeout: 3000, headers: EVENTSOURCE });
    expect(result.events).toHaveLength(1);
    expect(result.ended).toBe(true);
  });

  it('disarms the idle timer a route armed after guard(), and says so', async () => {
    const result = await collect(`${srv.url}/idle`, { count: 3, timeout: 3000, headers: EVENTSOURCE });
    expect(result.events.map((e) => e.data)).toEqual(['0', '1', '2']);
    expect(said('socket-timeout-disarmed', '/idle')).toEqual([['socket-timeout-disarmed', { url: '/idle', timeout: 300 }]]);
  });

  it('disarms express-timeout-handler armed after guard(), and says so once', async () => {
    const result = await collect(`${srv.url}/eth`, { count: 1, timeout: 3000, headers: EVENTSOURCE });
    expect(result.events.map((e) => e.data)).toEqual(['0']);
    expect(said('timeout-disarmed', '/eth')).toEqual([['timeout-disarmed', { url: '/eth', middleware: ['express-timeout-handler'] }]]);
  });
});
