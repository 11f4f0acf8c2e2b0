import compression from 'compression';
import express from 'express';
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import request from 'supertest';
import { sse, type CloseReason, type SseStream } from '../src/index';
import { collect, type Collected, type CollectOptions } from '../src/testing';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

let srv: TestServer;
const reasons: CloseReason[] = [];
// performance.now() as the server wrote each event of the last /timed or /held response.
let written: number[] = [];

const query = (req: IncomingMessage, name: string, fallback: number): number =>
  Number(new URL(req.url ?? '/', 'http://localhost').searchParams.get(name) ?? fallback);

// `?n=` events with ids 1…n, `?every=` ms apart, then the stream ends.
async function ticks(stream: SseStream, req: IncomingMessage): Promise<void> {
  stream.on('close', (reason) => reasons.push(reason));
  const n = query(req, 'n', 5);
  const every = query(req, 'every', 10);
  for (let i = 1; i <= n && !stream.closed; i++) {
    stream.send({ id: i, data: `tick ${i}` });
    if (i < n) await sleep(every);
  }
}

// Events SPACING ms apart, each write's time recorded: what the promptness tests compare with. The
// spacing is the bound they prove, so it is generous enough for a loaded machine.
const TIMED = 4;
const SPACING = 200;
async function timed(stream: SseStream): Promise<void> {
  written = [];
  for (let i = 0; i < TIMED; i++) {
    written.push(performance.now());
    stream.send({ id: i, data: `event ${i}` });
    await sleep(SPACING);
  }
}

beforeAll(async () => {
  const app = express();
  app.get('/ticks', sse(ticks, { heartbeat: false }));
  app.get('/gzip/ticks', compression(), sse(ticks, { heartbeat: false, compression: 'flush' }));
  app.get('/timed', sse(timed, { heartbeat: false }));
  app.get('/gzip/timed', compression(), sse(timed, { heartbeat: false, compression: 'flush' }));
  // The same events written by hand behind compression, without flushing: gzip holds them.
  app.get('/held', compression(), async (_req, res) => {
    res.setHeader('Content-Type', 'text/event-stream');
    written = [];
    for (let i = 0; i < TIMED; i++) {
      written.push(performance.now());
      res.write(`id: ${i}\ndata: event ${i}\n\n`);
      await sleep(SPACING);
    }
    res.end();
  });
  app.get(
    '/cut',
    sse(
      async (stream, req) => {
        stream.send('before the cut');
        await sleep(20);
        req.socket.destroy();
      },
      { heartbeat: false },
    ),
  );
  // Never answers: no status, no headers.
  app.get('/silent', () => {});
  app.get(
    '/open',
    sse((stream) => {
      stream.send('only');
    }, { heartbeat: false }),
  );
  app.get(
    '/fields',
    sse(
      (stream) => {
        stream.comment('two\nlines');
        stream.send({ event: 'note', id: 'n-1', data: 'first line\nsecond line' });
        stream.retry(3000);
        stream.send({ event: 'echo', data: stream.lastEventId ?? 'none' });
        stream.close();
      },
      { heartbeat: false, retry: 1500 },
    ),
  );
  srv = await listen(app);
});

afterAll(() => srv.close());

type Reader = (path: string, options?: CollectOptions) => Promise<Collected>;

// The two ways to point collect() at a stream; request headers go through supertest's .set() there.
const readers: Array<[string, Reader]> = [
  ['a supertest request', (path, { headers = {}, ...options } = {}) => collect(request(srv.server).get(path).set(headers), options)],
  ['a URL', (path, options) => collect(srv.url + path, options)],
];

describe.each(readers)('collect() from %s', (_name, read) => {
  it('returns the first `count` events, then closes the connection', async () => {
    reasons.length = 0;
    const result = await read('/ticks?n=10&every=20', { count: 3 });
    expect(result.events.map((e) => e.data)).toEqual(['tick 1', 'tick 2', 'tick 3']);
    expect(result.ended).toBe(false);
    await waitFor('the server to see the client leave', () => reasons.length === 1);
    expect(reasons).toEqual(['client']);
  });

  it('returns what arrived by the timeout, with ended false', async () => {
    const start = performance.now();
    const result = await read('/open', { timeout: 200 });
    expect(performance.now() - start).toBeGreaterThanOrEqual(195);
    expect(result.events.map((e) => e.data)).toEqual(['only']);
    expect(result.ended).toBe(false);
  });

  it('returns every event and ended true when the server ends the stream first', async () => {
    const result = await read('/ticks?n=3', { count: 10 });
    expect(result.events.map((e) => e.id)).toEqual(['1', '2', '3']);
    expect(result.ended).toBe(true);
  });

  it('returns early with ended true when the server cuts the connection mid-stream', async () => {
    const result = await read('/cut', { timeout: 5000 });
    expect(result.events.map((e) => e.data)).toEqual(['before the cut']);
    expect(result.ended).toBe(true);
  });

  it('rejects when no response arrives within the timeout', async () => {
    const start = performance.now();
    await expect(read('/silent', { timeout: 200 })).rejects.toThrow('no response within 200 ms');
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it('reports the status, headers and time to headers', async () => {
    const result = await read('/ticks?n=1');
    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(result.headersAt).toBeGreaterThan(0);
    expect(result.headersAt).toBeLessThanOrEqual(result.events[0]!.at);
  });

  it('parses names, ids, multi-line data, comments and retries as a browser would', async () => {
    const result = await read('/fields', { headers: { 'Last-Event-ID': 'seen-41' } });
    expect(result.events).toMatchObject([
      { event: 'note', id: 'n-1', data: 'first line\nsecond line' },
      { event: 'echo', id: undefined, data: 'seen-41' },
    ]);
    expect(result.comments).toEqual(['two', 'lines']);
    expect(result.retries).toEqual([1500, 3000]);
  });

  it('resolves with the status of a response that is not a stream', async () => {
    const result = await read('/nowhere');
    expect(result).toMatchObject({ status: 404, events: [], ended: true });
  });

  it.each(['gzip', 'br'])('decodes a %s body event by event, as the server flushes each', async (encoding) => {
    const result = await read('/gzip/ticks?n=10&every=200', { count: 2, headers: { 'Accept-Encoding': encoding } });
    expect(result.headers['content-encoding']).toBe(encoding);
    // Two events of ten, read while the server still had 1.6 s to go: they were not held back.
    expect(result.events.map((e) => e.data)).toEqual(['tick 1', 'tick 2']);
    expect(result.events[1]!.at).toBeLessThan(1000);
  });

  it.each(['gzip', 'br'])('keeps the last events of a %s body that ends', async (encoding) => {
    const result = await read('/gzip/ticks?n=5&every=1', { headers: { 'Accept-Encoding': encoding } });
    expect(result.events.map((e) => e.id)).toEqual(['1', '2', '3', '4', '5']);
    expect(result.ended).toBe(true);
  });

  describe('promptness: event k arrived before event k+1 was written', () => {
    const arrivedBeforeNext = (events: Collected['events']): boolean[] =>
      events.slice(0, -1).map((event, k) => event.time < written[k + 1]!);

    it.each([
      ['a plain stream', '/timed', 'identity'],
      ['a gzip stream in flush mode', '/gzip/timed', 'gzip'],
    ])('holds for %s', async (_kind, path, encoding) => {
      const result = await read(path, { count: TIMED, headers: { 'Accept-Encoding': encoding } });
      expect(result.events).toHaveLength(TIMED);
      expect(arrivedBeforeNext(result.events)).toEqual([true, true, true]);
    });

    it('fails for events that compression holds until the response ends', async () => {
      const result = await read('/held', { count: TIMED, headers: { 'Accept-Encoding': 'gzip' } });
      expect(result.events).toHaveLength(TIMED);
      expect(arrivedBeforeNext(result.events)).toEqual([false, false, false]);
    });
  });
});

describe('collect() when nothing listens', () => {
  it.each<[string, (url: string) => Promise<Collected>]>([
    ['a supertest request', (url) => collect(request(url).get('/events'), { timeout: 1000 })],
    ['a URL', (url) => collect(`${url}/events`, { timeout: 1000 })],
  ])('rejects for %s with the connection error', async (_name, read) => {
    const gone = await listen(() => {});
    await gone.close();
    await expect(read(gone.url)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
