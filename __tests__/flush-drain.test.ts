// In 'flush' mode the bytes waiting in a compressor count as buffered (see compression.test.ts).
// Read off compression()'s zlib stream, they are what it really holds: many readers sharing zlib's
// threads are not cut. A compressor that keeps its queue to itself (res.on left alone) is counted by
// the socket's rule instead, and a client that reads is neither held by ready() nor cut. Over
// HTTP/2, ready() hears the stream's own drain, and guard() counts zlib's queue with no socket.
import compression from 'compression';
import type { Express, RequestHandler } from 'express';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { guard, sse, stats, type CloseReason, type SseStream } from '../src/index';
import { collect } from '../src/testing';
import { expressVersions } from './helpers/express';
import { handGzip } from './helpers/hand-gzip';
import { cleanupAfterEach, listen, sleep, waitFor, type TestServer } from './helpers/server';

const cleanups = cleanupAfterEach();
const gzip = { 'accept-encoding': 'gzip' };

/** `length` printable characters that zlib can hardly shrink. */
function noiseOf(length: number, seed: number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += String.fromCharCode(33 + ((seed = (seed * 48271) % 2147483647) % 90));
  return s;
}
const payload = noiseOf(1000, 7);

/** Sends `total` events: a burst of 40 first, then at the pace send() and ready() set. */
async function paced(stream: SseStream, total: number): Promise<void> {
  let sent = 0;
  for (; sent < 40; sent++) stream.send(payload);
  while (sent < total && !stream.closed) {
    sent++;
    if (!stream.send(payload)) await stream.ready();
  }
  stream.close();
}

/** Writes `total` events, 10 every millisecond, whatever write() or send() returns. */
function heedless(write: () => void, closed: () => boolean, done: () => void, total: number): void {
  let sent = 0;
  const timer = setInterval(() => {
    for (let k = 0; k < 10 && sent < total && !closed(); k++, sent++) write();
    if (sent >= total || closed()) {
      clearInterval(timer);
      done();
    }
  }, 1);
}

describe.each(expressVersions)("'flush' mode behind a compressor that keeps res.on to itself (%s)", (_name, express) => {
  const reasons: CloseReason[] = [];
  let srv: TestServer;
  let url = '';

  beforeAll(async () => {
    const app: Express = (express as unknown as () => Express)();
    const route = sse({ compression: 'flush', heartbeat: false, highWaterMark: 16384, maxBufferedBytes: 262144 });
    const watch: RequestHandler = (_req, res, next) => {
      res.sse.on('close', (reason) => reasons.push(reason));
      next();
    };
    app.get('/paced', handGzip, route, watch, (_req, res) => void paced(res.sse, 3000));
    app.get('/heedless', handGzip, route, watch, (_req, res) => heedless(() => res.sse.send(payload), () => res.sse.closed, () => res.sse.close(), 1500));
    const guarded = guard({ compression: 'flush', heartbeat: false, maxBufferedBytes: 262144 });
    app.get('/guarded', guarded, handGzip, (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.on('close', () => reasons.push(res.writableFinished ? 'server' : 'slow-consumer'));
      heedless(() => res.write(`data: ${payload}\n\n`), () => res.destroyed, () => res.end(), 1500);
    });
    srv = await listen(app);
    url = srv.url;
  });
  afterAll(() => srv.close());
  beforeEach(() => {
    reasons.length = 0;
  });

  it('lets a producer paced by ready() send every event to a client that reads (ready() resolves)', async () => {
    const got = await collect(`${url}/paced`, { timeout: 10_000, headers: gzip });
    expect(got.headers['content-encoding']).toBe('gzip');
    expect(got.events).toHaveLength(3000);
    expect(reasons).toEqual(['server']);
  });

  it('does not cut a client that reads as a slow consumer, with sse()', async () => {
    const got = await collect(`${url}/heedless`, { timeout: 10_000, headers: gzip });
    expect(got.events).toHaveLength(1500);
    expect(reasons).toEqual(['server']);
  });

  it('does not cut a client that reads as a slow consumer, with guard()', async () => {
    const got = await collect(`${url}/guarded`, { timeout: 10_000, headers: gzip });
    expect(got.headers['content-encoding']).toBe('gzip');
    expect(got.events).toHaveLength(1500);
    expect(reasons).toEqual(['server']);
  });
});

describe("'flush' mode behind compression() over HTTP/2", () => {
  it('sends every event to a client that pauses 1.5 s and reads again: ready() hears the stream drain', async () => {
    const layer = compression();
    const route = sse({ compression: 'flush', heartbeat: false, highWaterMark: 16384, maxBufferedBytes: 262144 });
    const reasons: CloseReason[] = [];
    const server = http2.createServer((req, res) =>
      layer(req as never, res as never, () =>
        route(req as never, res as never, () => {
          const stream = (res as unknown as { sse: SseStream }).sse;
          stream.on('close', (reason) => reasons.push(reason));
          void paced(stream, 3000);
        }),
      ),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    cleanups.push(
      () => new Promise((resolve) => server.close(resolve)),
      () => new Promise<void>((resolve) => session.close(resolve)),
    );
    const request = session.request({ ':path': '/', accept: 'text/event-stream', ...gzip });
    cleanups.push(() => request.close());
    const events = await new Promise<number>((resolve, reject) => {
      request.on('response', (headers) => {
        if (headers['content-encoding'] !== 'gzip') return reject(new Error(`not compressed: ${String(headers['content-encoding'])}`));
        const body = request.pipe(zlib.createGunzip());
        let count = 0;
        body.on('data', (chunk: Buffer) => (count += chunk.toString('latin1').split('\n\n').length - 1));
        body.pause();
        setTimeout(() => body.resume(), 1500);
        const timer = setTimeout(() => resolve(count), 10_000);
        body.on('end', () => {
          clearTimeout(timer);
          resolve(count);
        });
      });
    });
    // Stalled for good once the client paused, before: the stream's drain went to zlib.
    expect(events).toBe(3000);
    await sleep(10);
    expect(reasons).toEqual(['server']);
  });
});

describe("'flush' mode behind compression(), many readers of one Channel", () => {
  it('cuts none of 40 clients that read, while events are published every 2 ms: the count is what zlib holds', async () => {
    const { Channel } = await import('../src/index');
    const channel = new Channel();
    const app = (expressVersions[0]![1] as unknown as () => Express)();
    app.use(compression());
    const reasons: CloseReason[] = [];
    app.get('/events', sse({ compression: 'flush', heartbeat: false, highWaterMark: 16384, maxBufferedBytes: 524288 }), (_req, res) => {
      res.sse.on('close', (reason) => reasons.push(reason));
      channel.subscribe(res.sse);
    });
    const srv = await listen(app);
    cleanups.push(
      () => srv.close(),
      () => channel.close(),
    );
    const total = 1500;
    const clients = Array.from({ length: 40 }, () => collect(`${srv.url}/events`, { count: total, timeout: 20_000, headers: gzip }));
    await waitFor('40 subscribers', () => channel.size === 40, 5000);
    // Shared by 40 streams, zlib's 4 threads rarely empty every queue: a count that only went down
    // at a queue's drain grew past maxBufferedBytes, and every client was cut.
    const event = noiseOf(500, 11);
    for (let sent = 0; sent < total; sent++) {
      void channel.publish({ data: event });
      await sleep(2);
    }
    const got = await Promise.all(clients);
    // Each client leaves once it has them all.
    expect(reasons.filter((reason) => reason !== 'client')).toEqual([]);
    expect(got.map((c) => c.events.length)).toEqual(got.map(() => total));
  });
});

describe('guard() over HTTP/2 behind compression()', () => {
  it('cuts a client that stops reading once maxBufferedBytes wait in zlib, though there is no socket to look at', async () => {
    const layers = [guard({ compression: 'flush', heartbeat: false, maxBufferedBytes: 262144 }), compression()];
    let written = 0;
    let closedAt: number | undefined;
    const server = http2.createServer((req, res) => {
      let i = 0;
      const next = (): void => {
        const layer = layers[i++];
        if (layer !== undefined) return void layer(req as never, res as never, next);
        res.setHeader('Content-Type', 'text/event-stream');
        const block = `data: ${noiseOf(4000, 3)}\n\n`;
        // At most 20 MB, 40 KB a millisecond, whatever write() returns.
        const timer = setInterval(() => {
          for (let k = 0; k < 10 && written < 5000; k++, written++) res.write(block);
          if (written >= 5000) clearInterval(timer);
        }, 1);
        res.on('close', () => {
          closedAt = written;
          clearInterval(timer);
        });
      };
      next();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    cleanups.push(
      () => new Promise((resolve) => server.close(resolve)),
      () => session.destroy(),
    );
    const request = session.request({ ':path': '/', accept: 'text/event-stream', ...gzip });
    request.on('error', () => {});
    request.on('response', () => request.pause());
    const drops = stats().slowConsumerDrops;
    await waitFor('the cut, or all 5000 blocks written', () => closedAt !== undefined || written >= 5000, 15_000);
    // Never cut before: zlib held all 20 MB, and stats() saw 16 KB.
    expect(closedAt).toBeDefined();
    expect(closedAt!).toBeLessThan(200);
    expect(stats().slowConsumerDrops).toBe(drops + 1);
  });
});
