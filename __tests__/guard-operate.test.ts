// Streams guard() recognised join the operating side of sse-guard: stats(), shutdown(), the
// slow-consumer cut-off and heartbeats (only between events), and a compressor that engaged anyway
// is flushed after every write, with the write callbacks compression 1.8 drops still called.
import compression from 'compression';
import type { RequestHandler } from 'express';
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { guard, shutdown, stats, type GuardReason } from '../src/index';
import { collect } from '../src/testing';
import { expressVersions } from './helpers/express';
import { exchange, rawRequest, stalledClient } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

// A producer that ignores backpressure: a block (64 KiB) every 5 ms, 128 of them, whatever write() returns.
const floodOf = (block: () => string): RequestHandler => (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  let n = 0;
  const timer = setInterval(() => {
    if (res.destroyed || ++n > 128) return clearInterval(timer);
    res.write(block());
  }, 5);
  res.on('close', () => clearInterval(timer));
  floods.push(res);
};
const floods: ServerResponse[] = [];
const bursts: number[] = [];
const flood = floodOf(() => `data: ${'x'.repeat(65536 - 8)}\n\n`);

describe.each(expressVersions)('guarded streams in operation (%s)', (_name, express) => {
  let srv: TestServer;
  let control: TestServer;
  const log: Array<[GuardReason, Record<string, unknown>]> = [];
  const logger = (reason: GuardReason, details: Record<string, unknown>) => log.push([reason, details]);
  const callbacks: string[] = [];

  beforeAll(async () => {
    const app = express();
    app.use(compression());
    const guarded = express.Router();
    guarded.use(guard({ logger, heartbeat: 60, maxBufferedBytes: 262144 }));
    // An event written in two pieces with a pause longer than the heartbeat period in between.
    guarded.get('/split', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write('event: part\ndata: one');
      const t1 = setTimeout(() => res.write('\ndata: two'), 200);
      const t2 = setTimeout(() => res.write('\n\n'), 400);
      res.on('close', () => [t1, t2].forEach(clearTimeout));
    });
    guarded.get('/quiet', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write('data: hi\n\n');
    });
    guarded.get('/flood', flood);
    // compression() passing the stream through still drops a callback given in third place.
    guarded.get('/callbacks-second', callbackProducer('second', false));
    guarded.get('/callbacks-third', callbackProducer('third', true));
    app.use('/guarded', guarded);
    // One event larger than maxBufferedBytes, to a client that reads: the limit is on what piles up.
    const small = express.Router();
    small.use(guard({ maxBufferedBytes: 65536, heartbeat: false }));
    small.get('/big', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write(`data: ${'b'.repeat(200_000)}\n\n`);
      res.end('data: after\n\n');
    });
    app.use('/small', small);
    // guard() mounted twice (app-wide and on a router) guards a response once.
    const twice = express.Router();
    twice.use(guard({ heartbeat: 40 }), guard({ heartbeat: 40 }));
    twice.get('/quiet', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write('data: hi\n\n');
    });
    app.use('/twice', twice);

    // guard({ compression: 'flush' }) leaves compression engaged: the path a custom filter or another
    // compression library takes.
    const flushing = express.Router();
    flushing.use(guard({ compression: 'flush', heartbeat: false, logger }));
    flushing.get('/callbacks', callbackProducer('guarded'));
    // Its head out, no body byte: the connect line is all the client can get (no heartbeat here).
    flushing.get('/head-only', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.flushHeaders();
    });
    app.use('/flushing', flushing);
    // The same, beating, cutting at 256 KiB: what the guard writes of its own must be flushed too.
    const flushingLive = express.Router();
    flushingLive.use(guard({ compression: 'flush', heartbeat: 50, maxBufferedBytes: 262144 }));
    flushingLive.get('/quiet', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write('data: hi\n\n');
    });
    // Incompressible, so that the backlog is the compressor's and the socket's, not zlib's gain.
    flushingLive.get('/flood', floodOf(() => `data: ${randomBytes(48_000).toString('base64')}\n\n`));
    // 8 MB in one turn of the event loop: zlib has taken none of it yet, and the socket is empty.
    flushingLive.get('/burst', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      const block = `data: ${randomBytes(3000).toString('base64')}\n\n`;
      let written = 0;
      while (written < 2000 && !res.destroyed) {
        res.write(block);
        written++;
      }
      bursts.push(written);
      floods.push(res);
    });
    app.use('/flushing-live', flushingLive);
    app.get('/control/callbacks', callbackProducer('control'));
    srv = await listen(app);

    const c = express();
    c.get('/flood', flood);
    // The same with guard() mounted before compression(): compression's writeHead hook then runs
    // before the guard's innermost one, and has set Content-Encoding by the time it does.
    const flushingFirst = express.Router();
    flushingFirst.use(guard({ compression: 'flush', heartbeat: false, logger }), compression());
    flushingFirst.get('/callbacks', callbackProducer('guarded'));
    c.use('/flushing', flushingFirst);
    control = await listen(c);
  });
  afterAll(async () => {
    await srv.close();
    await control.close();
  });
  beforeEach(async () => {
    // A producer of the previous test may still be settling its last callback.
    await sleep(50);
    log.length = 0;
    callbacks.length = 0;
  });

  // graphql-sse 1 style: awaits each write's callback before the next event.
  function callbackProducer(key: string, withEncoding = false): RequestHandler {
    return (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      let n = 0;
      const next = (): void => {
        if (n === 3 || res.destroyed) return;
        const done = (): void => {
          callbacks.push(`${key} ${n}`);
          setTimeout(next, 20);
        };
        if (withEncoding) res.write(`data: ${n++}\n\n`, 'utf8', done);
        else res.write(`data: ${n++}\n\n`, done);
      };
      next();
    };
  }

  it('never puts a heartbeat inside an event written in pieces, and beats between events', async () => {
    const raw = await exchange(srv.port, 'GET /guarded/split HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n', 700);
    const body = raw.slice(raw.indexOf('\r\n\r\n') + 4).replace(/\r\n[0-9a-f]+\r\n/g, '').replace(/^[0-9a-f]+\r\n/, '');
    expect(body).toMatch(/^event: part\ndata: one\ndata: two\n\n(:\n)+/);
  });

  it('beats while a stream is idle after an event', async () => {
    const result = await collect(`${srv.url}/guarded/quiet`, { timeout: 500 });
    expect(result.events.map((e) => e.data)).toEqual(['hi']);
    expect(result.comments.length).toBeGreaterThanOrEqual(3);
  });

  it('tells the logger that compression passed the stream through, with the URL', async () => {
    await collect(`${srv.url}/guarded/quiet`, { count: 1, timeout: 1000, headers: { 'accept-encoding': 'gzip' } });
    expect(log).toContainEqual(['compression-bypassed', { url: '/guarded/quiet' }]);
  });

  it('lets one event larger than maxBufferedBytes through to a client that reads', async () => {
    const result = await collect(`${srv.url}/small/big`, { timeout: 2000 });
    expect(result.events.map((e) => e.data.length)).toEqual([200_000, 5]);
    expect(log.filter(([reason]) => reason === 'slow-consumer')).toEqual([]);
  });

  it('guards a response once when guard() is mounted twice: one heartbeat, one entry in stats()', async () => {
    await waitFor('earlier streams to close', () => stats().open === 0);
    const reading = collect(`${srv.url}/twice/quiet`, { timeout: 450 });
    await waitFor('the stream to open', () => stats().open === 1);
    await sleep(50);
    expect(stats().open).toBe(1);
    const result = await reading;
    // One 40 ms heartbeat for about 400 ms of idling: ten at most, where two guards would beat twice as often.
    expect(result.comments.length).toBeGreaterThanOrEqual(3);
    expect(result.comments.length).toBeLessThanOrEqual(12);
  });

  it('counts guarded streams in stats() while they are open', async () => {
    await waitFor('earlier streams to close', () => stats().open === 0);
    const reading = collect(`${srv.url}/guarded/quiet`, { timeout: 300 });
    await waitFor('the stream to open', () => stats().open === 1);
    await reading;
    await waitFor('the stream to leave stats()', () => stats().open === 0);
  });

  it('control: without guard(), a client that stops reading lets the producer grow server memory past the limit', async () => {
    const client = await stalledClient(control.port, '/flood');
    try {
      await waitFor('the buffer to pass 1 MiB', () => (floods.at(-1)?.writableLength ?? 0) > 1048576, 5000);
      expect(floods.at(-1)!.destroyed).toBe(false);
    } finally {
      client.close();
    }
  });

  it('cuts a client that stops reading once maxBufferedBytes is passed, and says so', async () => {
    const drops = stats().slowConsumerDrops;
    const client = await stalledClient(srv.port, '/guarded/flood');
    try {
      await waitFor('the slow consumer to be cut', () => floods.at(-1)!.destroyed, 5000);
      expect(stats().slowConsumerDrops).toBe(drops + 1);
      expect(log.find(([reason]) => reason === 'slow-consumer')?.[1]).toMatchObject({ url: '/guarded/flood', maxBufferedBytes: 262144 });
    } finally {
      client.close();
    }
  });

  describe('with a compressor engaged', () => {
    const gzip = { 'accept-encoding': 'gzip' };

    it('flushes each heartbeat to the client while the stream is open', async () => {
      const result = await collect(`${srv.url}/flushing-live/quiet`, { timeout: 800, headers: gzip });
      expect(result.headers['content-encoding']).toBe('gzip');
      expect(result.ended).toBe(false);
      // Every 50 ms: held in zlib until the end, none would arrive.
      expect(result.comments.length).toBeGreaterThanOrEqual(3);
    });

    it('flushes the connect line to a client whose producer sent only its head', async () => {
      const result = await collect(`${srv.url}/flushing/head-only`, { timeout: 800, headers: gzip });
      expect(result.headers['content-encoding']).toBe('gzip');
      expect(result.events).toEqual([]);
      expect(result.comments).toEqual(['']);
    });

    it('cuts a client that stops reading once maxBufferedBytes is passed, the bytes in the compressor counted', async () => {
      const drops = stats().slowConsumerDrops;
      const client = await stalledClient(srv.port, '/flushing-live/flood', gzip);
      try {
        // Never, when the compressor's backlog goes uncounted: the socket's own stays small.
        await waitFor('the slow consumer to be cut', () => floods.at(-1)!.destroyed, 5000);
        expect(stats().slowConsumerDrops).toBe(drops + 1);
      } finally {
        client.close();
      }
    });

    it('cuts a producer that writes faster than zlib takes, in one turn of the event loop, the bytes waiting for zlib counted', async () => {
      const drops = stats().slowConsumerDrops;
      const count = bursts.length;
      // The cut may come before zlib gave the socket anything, head included: a raw client.
      const client = await rawRequest(srv.port, 'GET /flushing-live/burst HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n');
      try {
        await waitFor('the burst', () => bursts.length > count, 5000);
        // Cut once zlib refused writes and 256 KiB more waited for it: never, when only the socket's
        // backlog counts (all 8 MB then sit in zlib's queue, with the socket empty).
        expect(bursts.at(-1)).toBeLessThan(200);
        expect(floods.at(-1)!.destroyed).toBe(true);
        expect(stats().slowConsumerDrops).toBe(drops + 1);
        await client.ended;
      } finally {
        client.close();
      }
    });
  });

  it('control: compression drops the write callbacks, and a producer awaiting them stalls', async () => {
    const result = await collect(`${srv.url}/control/callbacks`, { count: 3, timeout: 800, headers: { 'accept-encoding': 'gzip' } });
    expect(callbacks).toEqual([]);
    expect(result.events).toHaveLength(0);
  });

  it.each(['second', 'third'])('calls a write callback given in %s place while compression passes the stream through', async (place) => {
    const result = await collect(`${srv.url}/guarded/callbacks-${place}`, { count: 3, timeout: 2000, headers: { 'accept-encoding': 'gzip' } });
    expect(result.headers['content-encoding']).toBeUndefined();
    expect(result.events.map((e) => e.data)).toEqual(['0', '1', '2']);
    await waitFor('the last callback', () => callbacks.length === 3);
    expect(callbacks).toEqual([1, 2, 3].map((n) => `${place} ${n}`));
  });

  it.each(['compression() before guard()', 'guard() before compression()'])('with a compressor engaged (%s), flushes every write and calls its callback', async (order) => {
    const url = order === 'compression() before guard()' ? srv.url : control.url;
    const result = await collect(`${url}/flushing/callbacks`, { count: 3, timeout: 2000, headers: { 'accept-encoding': 'gzip' } });
    expect(result.headers['content-encoding']).toBe('gzip');
    expect(result.events.map((e) => e.data)).toEqual(['0', '1', '2']);
    await waitFor('the last callback', () => callbacks.length === 3);
    expect(callbacks).toEqual(['guarded 1', 'guarded 2', 'guarded 3']);
    expect(log).toContainEqual(['compression-flushed', { url: '/flushing/callbacks', encoding: 'gzip', requested: 'flush' }]);
  });
});

describe.each(expressVersions)('what a write callback is told behind compression() (%s)', (_name, express) => {
  let srv: TestServer;
  const told = new Map<string, Array<string | null>>();
  // Each callback's verdict: null for "sent", the error's message otherwise.
  const tell = (key: string) => (error?: Error | null) => told.set(key, [...(told.get(key) ?? []), error ? error.message : null]);

  beforeAll(async () => {
    const app = express();
    for (const [prefix, layers] of [
      ['/compression-first', [compression(), guard({ heartbeat: false })]],
      ['/guard-first', [guard({ heartbeat: false }), compression()]],
      ['/flushing', [compression(), guard({ heartbeat: false, compression: 'flush' })]],
    ] as const) {
      const router = express.Router();
      router.use(...layers);
      // Its last event's callback in third place, then end(): the event reaches the client.
      router.get('/last', (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: last\n\n', 'utf8', tell(`${prefix}/last`));
        res.end();
      });
      // A write after end(), which compression drops: never sent.
      router.get('/after-end', (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.end('data: x\n\n');
        res.write('data: late\n\n', 'utf8', tell(`${prefix}/after-end`));
      });
      // A write from a 'prefinish' listener, which Node's HTTP/1 end() emits before it returns.
      router.get('/prefinish', (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: x\n\n');
        res.on('prefinish', () => res.write('data: late\n\n', 'utf8', tell(`${prefix}/prefinish`)));
        res.end();
      });
      app.use(prefix, router);
    }
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  it.each(['/compression-first', '/guard-first'])("%s: that a write from a 'prefinish' listener, inside end(), was not sent, without an error event", async (prefix) => {
    const result = await collect(`${srv.url}${prefix}/prefinish`, { timeout: 2000, headers: { 'accept-encoding': 'gzip' } });
    expect(result.events.map((e) => e.data)).toEqual(['x']);
    await waitFor('the callback', () => told.has(`${prefix}/prefinish`));
    expect(told.get(`${prefix}/prefinish`)).toEqual(['sse-guard: write after end(); nothing was sent.']);
  });

  it.each(['/compression-first', '/guard-first', '/flushing'])('%s: that an event written before end() was sent, once the response finished', async (prefix) => {
    const result = await collect(`${srv.url}${prefix}/last`, { timeout: 2000, headers: { 'accept-encoding': 'gzip' } });
    expect(result.events.map((e) => e.data)).toEqual(['last']);
    await waitFor('the callback', () => told.has(`${prefix}/last`));
    await sleep(50);
    expect(told.get(`${prefix}/last`)).toEqual([null]);
  });

  // Without guard(), compression drops such a write, engaged or not; with guard() passing the
  // stream through, Node's own write after end emitted 'error' on a response nobody listens to for
  // errors, and the process crashed.
  it.each(['/compression-first', '/guard-first', '/flushing'])('%s: that a write after end() was not sent, and drops it without an error event', async (prefix) => {
    const result = await collect(`${srv.url}${prefix}/after-end`, { timeout: 2000, headers: { 'accept-encoding': 'gzip' } });
    expect(result.headers['content-encoding']).toBe(prefix === '/flushing' ? 'gzip' : undefined);
    expect(result.events.map((e) => e.data)).toEqual(['x']);
    await waitFor('the callback', () => told.has(`${prefix}/after-end`));
    await sleep(50);
    expect(told.get(`${prefix}/after-end`)).toEqual(['sse-guard: write after end(); nothing was sent.']);
  });
});

describe('shutdown() over guarded streams', () => {
  let srv: TestServer;
  const late: Array<Error | null | undefined> = [];
  const told: string[] = [];

  beforeAll(async () => {
    const { default: express } = await import('express');
    const app = express();
    app.use(guard({ heartbeat: false }));
    // Ignores 'close' and keeps writing after shutdown(): it must hear of the end through the write
    // callback, not through an 'error' event nobody listens to (which would crash the process).
    app.get('/stubborn', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write('data: a\n\n');
      timers.push(setInterval(() => res.write('data: more\n\n', (error) => late.push(error)), 50));
    });
    // Behind compression() (which drops write callbacks, so the guard calls them): a large event
    // backs the socket up, and the callbacks wait for it to drain.
    const compressed = express.Router();
    compressed.use(compression());
    compressed.get('/callbacks', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write(`data: ${'x'.repeat(64 * 1024)}\n\n`, 'utf8', (error) => told.push(error ? 'error' : 'sent'));
      res.write('data: last\n\n', 'utf8', (error) => told.push(error ? 'error' : 'sent'));
      res.end();
    });
    app.use('/compressed', compressed);
    // A whole short answer in one tick, its head written first.
    app.get('/whole', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: a\n\n');
      res.end('data: b\n\n');
    });
    srv = await listen(app);
  });
  const timers: NodeJS.Timeout[] = [];
  afterAll(async () => {
    timers.forEach(clearInterval);
    await srv.close();
  });

  it('ends every guarded stream within graceMs, writing nothing in its format', async () => {
    const reading = collect(`${srv.url}/stubborn`, { timeout: 3000 });
    await waitFor('the stream to open', () => stats().open === 1);
    await sleep(120);
    const started = performance.now();
    await shutdown({ graceMs: 1000, event: { data: 'bye' } });
    expect(performance.now() - started).toBeLessThan(1000);
    const result = await reading;
    expect(result.ended).toBe(true);
    expect(result.events.every((e) => e.data === 'a' || e.data === 'more')).toBe(true);
    expect(stats().open).toBe(0);
    await sleep(120);
    expect(late.some((error) => error instanceof Error)).toBe(true);
  });

  it('ends a stream whose head goes out after shutdown() at once, so that server.close() can finish', async () => {
    await shutdown({ graceMs: 1000 }); // called above already: the same drain, settled
    const started = performance.now();
    const result = await collect(`${srv.url}/stubborn`, { timeout: 3000 });
    // Left open, it would run to collect()'s timeout: ended false, after 3 s.
    expect(result.ended).toBe(true);
    expect(performance.now() - started).toBeLessThan(2000);
    // The producer's first write carried the head out; nothing after it.
    expect(result.events.map((e) => e.data)).toEqual(['a']);
    expect(stats().open).toBe(0);
  });

  it('calls every write callback of a stream whose head goes out after shutdown(), behind compression()', async () => {
    await shutdown({ graceMs: 1000 }); // called above already: the same drain, settled
    const result = await collect(`${srv.url}/compressed/callbacks`, { timeout: 3000, headers: { 'accept-encoding': 'gzip' } });
    expect(result.ended).toBe(true);
    // Left waiting for a drain nobody listened for, they were never called.
    await waitFor('both callbacks', () => told.length === 2, 2000);
    expect(told).toHaveLength(2);
  });

  it('lets a whole answer written in one tick after shutdown() go out complete', async () => {
    await shutdown({ graceMs: 1000 }); // called above already: the same drain, settled
    const result = await collect(`${srv.url}/whole`, { timeout: 3000 });
    expect(result.ended).toBe(true);
    expect(result.events.map((e) => e.data)).toEqual(['a', 'b']);
  });
});
