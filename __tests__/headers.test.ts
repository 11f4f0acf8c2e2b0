import { EventSource } from 'eventsource';
import type { ErrorRequestHandler, Express } from 'express';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import request from 'supertest';
import { sse, SseGuardError, stats } from '../src/index';
import { collect } from '../src/testing';
import { expressVersions } from './helpers/express';
import { rawRequest } from './helpers/raw';
import { listen, sleep, type TestServer } from './helpers/server';

// ms until EventSource's `open`, or undefined when it did not fire within `ms`.
function timeToOpen(url: string, ms: number): Promise<number | undefined> {
  const start = performance.now();
  const source = new EventSource(url);
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(undefined), ms);
    const finish = (value: number | undefined): void => {
      clearTimeout(timer);
      source.close();
      resolve(value);
    };
    source.onopen = () => finish(performance.now() - start);
  });
}

describe.each(expressVersions)('response headers (%s)', (_name, express) => {
  let srv: TestServer;
  const errors: unknown[] = [];

  beforeAll(async () => {
    const app: Express = express();
    // Sends nothing: the client must still see `open`.
    app.get('/quiet', sse(() => new Promise(() => {})));
    app.get('/custom', sse({ headers: { 'X-Stream': 'yes', 'Access-Control-Allow-Origin': '*' } }), (_req, res) => res.sse.close());
    // The tutorials' header, given as an option.
    app.get('/custom-keep-alive', sse({ headers: { Connection: 'keep-alive' } }), (_req, res) => res.sse.close());
    // A server draining its connections marks each response before the routes run.
    app.get(
      '/draining',
      (_req, res, next) => {
        res.setHeader('Connection', 'close');
        next();
      },
      sse(),
      (_req, res) => res.sse.close(),
    );
    app.get('/flush-mode', sse((stream) => stream.close(), { compression: 'flush' }));
    // The failure mode: headers go out with the first event, 1.5 s later.
    app.get('/lazy', (_req, res) => {
      const timer = setTimeout(() => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: late\n\n');
      }, 1500);
      res.on('close', () => clearTimeout(timer));
    });
    app.get(
      '/late',
      (_req, res, next) => {
        res.setHeader('Content-Type', 'text/plain');
        res.flushHeaders();
        next();
      },
      sse(),
      (_req, res) => res.end('unreachable'),
    );
    const onError: ErrorRequestHandler = (err, _req, res, _next) => {
      errors.push(err);
      res.end();
    };
    app.use(onError);
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  it('sends exactly the contract headers, with status 200', async () => {
    const result = await collect(`${srv.url}/quiet`, { timeout: 300 });
    expect(result.status).toBe(200);
    expect(result.headers).toMatchObject({
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    expect(result.headers['content-encoding']).toBeUndefined();
    expect(result.headers['content-length']).toBeUndefined();
  });

  // RFC 9112 § 9.6: the server closes after the response. An explicit keep-alive overrides Node's choice.
  it.each([
    ['a client that asked to close', { connection: 'close' }, 0, '/custom'],
    ["the connection's last request (server.maxRequestsPerSocket)", {}, 1, '/custom'],
    ['a client that asked to close, whatever the headers option says', { connection: 'close' }, 0, '/custom-keep-alive'],
    ['a response given Connection: close before sse() (a draining server)', {}, 0, '/draining'],
  ])('sends Connection: close to %s, and closes the connection after the stream', async (_who, headers, maxRequestsPerSocket, path) => {
    const before = srv.server.maxRequestsPerSocket;
    srv.server.maxRequestsPerSocket = maxRequestsPerSocket;
    try {
      const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
      const exchange = await rawRequest(srv.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${lines}\r\n`);
      try {
        // Never, when it says keep-alive: the connection waits for a next request.
        await Promise.race([exchange.ended, sleep(2000).then(() => Promise.reject(new Error('the connection is still open after 2 s')))]);
        expect(exchange.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n(?:[^\r]+\r\n)*Connection: close\r\n/);
        expect(exchange.text()).not.toMatch(/keep-alive/i);
      } finally {
        exchange.close();
      }
    } finally {
      srv.server.maxRequestsPerSocket = before;
    }
  });

  it("sends Cache-Control: no-cache alone in 'flush' mode, since no-transform would make compression skip", async () => {
    const result = await collect(`${srv.url}/flush-mode`, { timeout: 1000 });
    expect(result.headers['cache-control']).toBe('no-cache');
  });

  it('adds the headers option after the defaults', async () => {
    const result = await collect(`${srv.url}/custom`, { timeout: 1000 });
    expect(result.headers['x-stream']).toBe('yes');
    expect(result.headers['access-control-allow-origin']).toBe('*');
  });

  it("flushes headers at connect: EventSource's open fires with no event sent", async () => {
    const opened = await timeToOpen(`${srv.url}/quiet`, 3000);
    expect(opened).toBeDefined();
    expect(opened!).toBeLessThan(400);
  });

  it('the same check fails on a route that sends headers with its first event', async () => {
    const opened = await timeToOpen(`${srv.url}/lazy`, 3000);
    expect(opened === undefined || opened > 1400).toBe(true);
  });

  it('refuses with ERR_SSE_HEADERS_SENT when headers were already sent', async () => {
    errors.length = 0;
    const before = stats().refused.headersSent;
    const res = await request(srv.server).get('/late');
    expect(res.headers['content-type']).toBe('text/plain');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(SseGuardError);
    expect((errors[0] as SseGuardError).code).toBe('ERR_SSE_HEADERS_SENT');
    expect((errors[0] as SseGuardError).message).toMatch(/mount sse\(\) before/);
    expect(stats().refused.headersSent).toBe(before + 1);
  });

  it('answers HEAD with the headers and no body', async () => {
    const res = await request(srv.server).head('/quiet');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(res.text ?? '').toBe('');
    expect(stats().open).toBe(0);
  });
});

describe('HTTP/2', () => {
  it('sends no Connection header (hop-by-hop headers are forbidden) and streams events', async () => {
    const handler = sse((stream) => {
      stream.send({ event: 'hello', data: 'h2' });
    });
    const server = http2.createServer((req, res) => handler(req as never, res as never, () => res.end()));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const { headers, body } = await new Promise<{ headers: http2.IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const req = client.request({ ':path': '/' });
        req.on('error', reject);
        req.on('response', (headers) => {
          let body = '';
          req.setEncoding('utf8');
          req.on('data', (chunk: string) => {
            body += chunk;
            if (body.endsWith('\n\n')) resolve({ headers, body });
          });
        });
      });
      expect(headers[':status']).toBe(200);
      expect(headers['content-type']).toBe('text/event-stream; charset=utf-8');
      expect(headers['x-accel-buffering']).toBe('no');
      expect(headers.connection).toBeUndefined();
      expect(body).toBe(':\nevent: hello\ndata: h2\n\n');
    } finally {
      client.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
