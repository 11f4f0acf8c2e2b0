import compression from 'compression';
import type { Express } from 'express';
import { performance } from 'node:perf_hooks';
import { sse, type SseStream } from '../src/index';
import { collect, type Collected } from '../src/testing';
import { expressVersions } from './helpers/express';
import { stalledClient } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

const BROWSER = 'gzip, deflate, br';
const ITEMS = 50_000;

/** `length` printable characters that zlib can hardly shrink, the same for the same seed. */
function noiseOf(length: number, seed: number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += String.fromCharCode(33 + ((seed = (seed * 48271) % 2147483647) % 90));
  return s;
}

interface Piped {
  stream: SseStream;
  pulled: number;
  pulledInFirstTurn: number;
  sent: Promise<number> | undefined;
}

// The promptness rule every guarded route must pass and a held stream must fail: the first event
// within a few hundred ms (a held one shows up only when the response ends, seconds later).
function expectPrompt(result: Collected): void {
  expect(result.events.length).toBeGreaterThan(0);
  expect(result.events[0]!.at).toBeLessThan(400);
}

describe.each(expressVersions)('compression guard (%s)', (_name, express) => {
  let srv: TestServer;
  const log: Array<[string, Record<string, unknown>]> = [];
  const written = new Map<string, number[]>();
  let lastStream: SseStream | undefined;
  let piped: Piped | undefined;

  // Sends 5 events 150 ms apart, recording when each was written.
  const ticker = (key: string) => (stream: SseStream) => {
    const times: number[] = [];
    written.set(key, times);
    let n = 0;
    const send = (): void => {
      times.push(performance.now());
      stream.send({ id: n, data: { n } });
      if (++n < 5) timer = setTimeout(send, 150);
    };
    let timer = setTimeout(send, 0);
    stream.on('close', () => clearTimeout(timer));
  };

  beforeAll(async () => {
    const app: Express = express();
    app.use(compression());
    const logger = (reason: string, details: Record<string, unknown>) => log.push([reason, details]);
    app.get('/guarded', sse((stream) => void stream.send('hello'), { logger }));
    app.get('/flush', sse(ticker('flush'), { compression: 'flush', logger }));
    app.get('/bypass-ticker', sse(ticker('bypass'), { logger }));
    app.get('/slow', sse({ compression: 'flush', highWaterMark: 16384, maxBufferedBytes: 262144 }), (_req, res) => {
      lastStream = res.sse;
    });
    // A sync source of 50 000 items of 1 KB behind compression: zlib takes writes in its own time.
    app.get('/flush-pipe', sse({ compression: 'flush', highWaterMark: 16384, maxBufferedBytes: 262144 }), (_req, res) => {
      const stream = res.sse;
      const noise = Array.from({ length: 64 }, (_, k) => noiseOf(1000, k + 1));
      piped = { stream, pulled: 0, pulledInFirstTurn: -1, sent: undefined };
      const state = piped;
      state.sent = stream.pipe((function* () {
        for (let i = 0; i < ITEMS; i++) {
          state.pulled++;
          yield noise[i % noise.length]!;
        }
      })());
      setImmediate(() => (state.pulledInFirstTurn = state.pulled));
    });
    // The failure mode: a hand-written stream that compression holds until the response ends.
    app.get('/naive', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      res.write('data: hello\n\n');
      const timer = setTimeout(() => res.end(), 1500);
      res.on('close', () => clearTimeout(timer));
    });
    // What compression does to res.write: its return value follows zlib, not the client.
    app.get('/zlib-backpressure', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      const accepted = res.write(`data: ${'a'.repeat(100_000)}\n\n`);
      res.end(`data: ${JSON.stringify({ accepted, socketBuffered: res.writableLength })}\n\n`);
    });
    srv = await listen(app);
  });
  afterAll(() => srv.close());
  beforeEach(() => {
    log.length = 0;
  });

  it.each(['gzip, deflate, br', 'gzip', 'br'])('bypasses compression: the first event arrives at once, uncompressed (Accept-Encoding: %s)', async (ae) => {
    const result = await collect(`${srv.url}/guarded`, { count: 1, timeout: 3000, headers: { 'accept-encoding': ae } });
    expectPrompt(result);
    expect(result.events[0]!.data).toBe('hello');
    expect(result.headers['content-encoding']).toBeUndefined();
    expect(result.headers['cache-control']).toBe('no-cache, no-transform');
    expect(log.map(([reason]) => reason)).toContain('compression-bypassed');
  });

  it('the same assertion fails on a naive route behind compression, which holds the event until the end', async () => {
    const result = await collect(`${srv.url}/naive`, { count: 1, timeout: 3000, headers: { 'accept-encoding': BROWSER } });
    expect(result.headers['content-encoding']).toBe('br');
    expect(() => expectPrompt(result)).toThrow();
    expect(result.events[0]?.at).toBeGreaterThan(1400);
  });

  it('delivers every event of a bypassed stream before the next one is written', async () => {
    const result = await collect(`${srv.url}/bypass-ticker`, { count: 5, timeout: 5000, headers: { 'accept-encoding': BROWSER } });
    const times = written.get('bypass')!;
    expect(result.events.map((e) => e.id)).toEqual(['0', '1', '2', '3', '4']);
    for (let k = 0; k < 4; k++) expect(result.events[k]!.time).toBeLessThan(times[k + 1]!);
  });

  it.each(['gzip', 'br', 'deflate'])("in 'flush' mode keeps %s and makes each event decodable as soon as it is sent", async (encoding) => {
    const result = await collect(`${srv.url}/flush`, { count: 5, timeout: 5000, headers: { 'accept-encoding': encoding } });
    expect(result.headers['content-encoding']).toBe(encoding);
    expect(result.headers['cache-control']).toBe('no-cache');
    const times = written.get('flush')!;
    expect(result.events.map((e) => JSON.parse(e.data).n)).toEqual([0, 1, 2, 3, 4]);
    // The incremental decoder had event k in hand before event k+1 was even written.
    for (let k = 0; k < 4; k++) expect(result.events[k]!.time).toBeLessThan(times[k + 1]!);
    expect(log).toContainEqual(['compression-flushed', expect.objectContaining({ encoding, requested: 'flush' })]);
  });

  it("behind compression, res.write's return value follows zlib and not the client", async () => {
    const result = await collect(`${srv.url}/zlib-backpressure`, { count: 2, headers: { 'accept-encoding': 'gzip' } });
    const { accepted, socketBuffered } = JSON.parse(result.events[1]!.data);
    expect(accepted).toBe(false);
    expect(socketBuffered).toBeLessThan(16384);
  });

  it('measures backpressure on the socket behind compression: a client that stops reading is dropped', async () => {
    const client = await stalledClient(srv.port, '/slow');
    try {
      await waitFor('the stream', () => lastStream !== undefined, 2000);
      const stream = lastStream!;
      const reasons: string[] = [];
      stream.on('close', (reason) => reasons.push(reason));
      // Incompressible payload, so the compressed bytes really pile up in the socket.
      let sawFalse = false;
      let maxBuffered = 0;
      for (let i = 0; i < 5000 && !stream.closed; i++) {
        if (!stream.send(noiseOf(4096, i + 1))) sawFalse = true;
        maxBuffered = Math.max(maxBuffered, stream.bufferedBytes);
        if (i % 50 === 0) await sleep(1);
      }
      expect(sawFalse).toBe(true);
      expect(reasons).toEqual(['slow-consumer']);
      // Bounded: the drop happens once the buffer passes maxBufferedBytes, give or take one event.
      expect(maxBuffered).toBeLessThan(262144 + 3 * 4096 + 16384);
    } finally {
      client.close();
    }
  });

  it("in 'flush' mode, pipe() pulls a sync source at zlib's pace: the event loop turns, and a client that stops reading stops the pulling", async () => {
    piped = undefined;
    const client = await stalledClient(srv.port, '/flush-pipe', { 'accept-encoding': 'gzip' });
    try {
      await waitFor('the pipe', () => piped !== undefined && piped.pulledInFirstTurn >= 0, 3000);
      const state = piped!;
      // zlib refuses writes once 16 KiB wait in it, and send() says so: pipe() waits for its drain
      // (taken whole, all 50 000 would be pulled before the event loop could turn once).
      expect(state.pulledInFirstTurn).toBeLessThan(200);
      // Pulling goes on while the kernel's buffers take what zlib gives: it stops once they are full.
      let settled = -1;
      for (let i = 0; i < 40 && settled !== state.pulled; i++) {
        settled = state.pulled;
        await sleep(250);
      }
      expect(state.pulled).toBe(settled);
      expect(settled).toBeLessThan(ITEMS);
      expect(state.stream.closed).toBe(false);
      expect(state.stream.bufferedBytes).toBeLessThanOrEqual(262144);
      client.close();
      await expect(state.sent).resolves.toBe(settled);
    } finally {
      client.close();
    }
  });
});
