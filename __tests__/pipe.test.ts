// stream.pipe(): every kind of source, backpressure against a client that stops reading,
// cancellation when the client leaves, and errors with exactly the items before them delivered.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { Express } from 'express';
import { sse, SseGuardError, type SseOptions, type SseStream } from '../src/index';
import { collect } from '../src/testing';
import { expressVersions } from './helpers/express';
import { stalledClient } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

type Route = (stream: SseStream) => void;

/** A server whose one route `/t` runs the current test's function on a fresh stream. */
async function serve(express: () => Express, options: SseOptions = {}): Promise<TestServer & { route: (fn: Route) => void }> {
  let current: Route = () => {};
  const app = express();
  app.get('/t', sse({ heartbeat: false, ...options }), (_req, res) => current(res.sse));
  const srv = await listen(app);
  return Object.assign(srv, { route: (fn: Route) => (current = fn) });
}

/** An endless generator that counts what was pulled from it and whether its finally ran. */
function endless(size: number, pauseMs = 0) {
  const state = { pulled: 0, finalized: false };
  async function* items(): AsyncGenerator<string> {
    try {
      for (;;) {
        if (pauseMs > 0) await sleep(pauseMs);
        state.pulled++;
        yield `${state.pulled}:`.padEnd(size, 'x');
      }
    } finally {
      state.finalized = true;
    }
  }
  return { state, items };
}

const settle = <T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> => promise.then((value) => ({ value }), (error: unknown) => ({ error }));

describe.each(expressVersions)('pipe() (%s)', (_name, express) => {
  let srv: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    srv = await serve(express as unknown as () => Express, { highWaterMark: 16384, maxBufferedBytes: 262144 });
  });
  afterAll(() => srv.close());

  describe('sources', () => {
    const items = ['a', 'b\nc', { n: 1 }, 0, ''];
    const expected = ['a', 'b\nc', '{"n":1}', '0', ''];
    const kinds: Array<[string, () => Iterable<unknown> | AsyncIterable<unknown>]> = [
      ['an array', () => items],
      ['a Set', () => new Set(items)],
      ['a sync generator', function* () { yield* items; }],
      ['an async generator', async function* () { for (const item of items) { await sleep(1); yield item; } }],
      ['an object-mode Readable', () => Readable.from(items)],
      ['a ReadableStream', () => new ReadableStream({ start(c) { for (const item of items) c.enqueue(item); c.close(); } })],
    ];

    it.each(kinds)('sends every item of %s in order, and end: true closes the stream', async (_kind, make) => {
      let sent: Promise<number> | undefined;
      srv.route((stream) => (sent = stream.pipe(make(), { end: true })));
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.ended).toBe(true);
      expect(got.events.map((e) => [e.event, e.data])).toEqual(expected.map((data) => ['message', data]));
      await expect(sent).resolves.toBe(items.length);
    });

    it('without end, the stream stays open after the source ends', async () => {
      let sent: Promise<number> | undefined;
      srv.route((stream) => (sent = stream.pipe(['only'])));
      const got = await collect(`${srv.url}/t`, { timeout: 300 });
      expect(got.events.map((e) => e.data)).toEqual(['only']);
      expect(got.ended).toBe(false);
      await expect(sent).resolves.toBe(1);
    });

    it('map names events, and an undefined from map skips the item', async () => {
      let sent: Promise<number> | undefined;
      srv.route((stream) => {
        sent = stream.pipe([1, 2, 3, 4], { end: true, map: (n) => (n % 2 === 0 ? undefined : { event: 'odd', id: n, data: { n } }) });
      });
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.events.map((e) => [e.event, e.id, e.data])).toEqual([['odd', '1', '{"n":1}'], ['odd', '3', '{"n":3}']]);
      await expect(sent).resolves.toBe(2);
    });
  });

  describe('backpressure', () => {
    it('stops pulling from an endless source when the client stops reading, with at most highWaterMark plus one item buffered', async () => {
      const { state, items } = endless(1000);
      let stream: SseStream | undefined;
      let sent: Promise<number> | undefined;
      srv.route((s) => {
        stream = s;
        sent = s.pipe(items());
      });
      const client = await stalledClient(srv.port, '/t');
      // Pulling stops once the kernel's buffers and highWaterMark are full: the count holds still.
      let last = -1;
      await waitFor('pulling to stop', () => {
        const still = state.pulled === last && state.pulled > 0;
        last = state.pulled;
        return still;
      }, 10_000).catch(() => undefined);
      await sleep(300);
      const settled = state.pulled;
      await sleep(500);
      expect(state.pulled).toBe(settled);
      // In this process: never more than highWaterMark (16 KiB) plus the one item that crossed it.
      expect(stream!.bufferedBytes).toBeLessThanOrEqual(16384 + 1100);
      expect(stream!.closed).toBe(false);
      client.close();
      // Every item pulled was sent before pipe() waited: none is held back or lost.
      await expect(sent).resolves.toBe(settled);
      await waitFor("the generator's finally", () => state.finalized);
    });

    it('control: a loop that ignores send()\'s return keeps pulling and is cut as a slow consumer', async () => {
      const { state, items } = endless(1000);
      const reasons: string[] = [];
      srv.route((s) => {
        s.on('close', (reason) => reasons.push(reason));
        void (async () => {
          for await (const item of items()) {
            if (s.closed) break;
            s.send(item);
            if (state.pulled % 64 === 0) await sleep(0);
          }
        })();
      });
      const client = await stalledClient(srv.port, '/t');
      await waitFor('the slow-consumer cut', () => reasons.length > 0, 10_000);
      expect(reasons).toEqual(['slow-consumer']);
      client.close();
    });
  });

  describe('cancellation', () => {
    it("when the client leaves, pulling stops and the generator's finally runs", async () => {
      const { state, items } = endless(10, 20);
      let sent: Promise<number> | undefined;
      srv.route((s) => (sent = s.pipe(items())));
      const got = await collect(`${srv.url}/t`, { count: 3, timeout: 3000 });
      expect(got.events).toHaveLength(3);
      await waitFor("the generator's finally", () => state.finalized, 1000);
      const pulled = state.pulled;
      await sleep(150);
      expect(state.pulled).toBe(pulled);
      await expect(sent).resolves.toBeGreaterThanOrEqual(3);
    });

    it('control: a hand-written loop that does not check the stream keeps pulling after the client left', async () => {
      const { state, items } = endless(10, 20);
      srv.route((s) => {
        void (async () => {
          for await (const item of items()) {
            s.send(item);
            if (state.pulled >= 60) break;
          }
        })();
      });
      await collect(`${srv.url}/t`, { count: 3, timeout: 3000 });
      const atLeave = state.pulled;
      await sleep(200);
      expect(state.pulled).toBeGreaterThan(atLeave + 3);
      await waitFor('the control loop to end', () => state.finalized, 3000);
    });

    it('cancels a ReadableStream at once, even while a read is pending', async () => {
      let cancelled = false;
      let sent: Promise<number> | undefined;
      srv.route((s) => {
        // One item, then silence: the pending read would never settle on its own.
        sent = s.pipe(new ReadableStream<string>({ start: (c) => c.enqueue('one'), cancel: () => void (cancelled = true) }));
      });
      await collect(`${srv.url}/t`, { count: 1, timeout: 3000 });
      await waitFor('cancel()', () => cancelled, 1000);
      await expect(sent).resolves.toBe(1);
    });

    it('destroys an object-mode Readable at once, even while a read is pending', async () => {
      const source = new Readable({ objectMode: true, read() {} });
      source.push('one');
      let sent: Promise<number> | undefined;
      srv.route((s) => (sent = s.pipe(source)));
      await collect(`${srv.url}/t`, { count: 1, timeout: 3000 });
      await waitFor('destroy()', () => source.destroyed, 1000);
      await expect(sent).resolves.toBe(1);
    });

    it('resolves when the client leaves even if the source never answers, and survives a return() that throws', async () => {
      let returned = false;
      const stuck: AsyncIterable<string> = {
        [Symbol.asyncIterator]: () => ({
          next: () => new Promise<IteratorResult<string>>(() => {}),
          return: () => {
            returned = true;
            throw new Error('return boom');
          },
        }),
      };
      let sent: Promise<number> | undefined;
      srv.route((s) => (sent = s.pipe(stuck)));
      await collect(`${srv.url}/t`, { timeout: 200 });
      await expect(sent).resolves.toBe(0);
      expect(returned).toBe(true);
    });

    it('resolves with 0 and cancels the source when the stream is already closed', async () => {
      const { state, items } = endless(10);
      const source = items();
      await source.next();
      let sent: Promise<number> | undefined;
      srv.route((s) => {
        s.close();
        sent = s.pipe(source);
      });
      await collect(`${srv.url}/t`, { timeout: 1000 });
      await expect(sent).resolves.toBe(0);
      await waitFor("the generator's finally", () => state.finalized, 1000);
    });

    it('stream.close() from elsewhere stops the pipe too', async () => {
      const { state, items } = endless(10, 10);
      let sent: Promise<number> | undefined;
      srv.route((s) => {
        sent = s.pipe(items());
        setTimeout(() => s.close(), 100);
      });
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.ended).toBe(true);
      await waitFor("the generator's finally", () => state.finalized, 1000);
      await expect(sent).resolves.toBe(got.events.length);
    });
  });

  describe('errors', () => {
    it('a source that throws rejects with that very error, the items before it delivered', async () => {
      const boom = new Error('source boom');
      let result: Promise<unknown> | undefined;
      srv.route((s) => {
        result = settle(s.pipe((async function* () {
          yield 'one';
          yield 'two';
          throw boom;
        })()).finally(() => s.close()));
      });
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.events.map((e) => e.data)).toEqual(['one', 'two']);
      expect(await result).toEqual({ error: boom });
      expect((await result as { error: unknown }).error).toBe(boom);
    });

    it('a map that throws rejects with that very error and cancels the source', async () => {
      const boom = new Error('map boom');
      const { state, items } = endless(3);
      let result: Promise<{ error?: unknown }> | undefined;
      srv.route((s) => {
        result = settle(s.pipe(items(), { map: (item) => {
          if (state.pulled === 3) throw boom;
          return item;
        } })).finally(() => s.close());
      });
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.events.map((e) => e.data)).toEqual(['1:x', '2:x']);
      expect((await result!).error).toBe(boom);
      await waitFor("the generator's finally", () => state.finalized, 1000);
    });

    it('awaits items that are promises, as for await does, and a map that returns a promise', async () => {
      let sent: Promise<number> | undefined;
      srv.route((s) => {
        const later = new Promise<string>((resolve) => setTimeout(() => resolve('later'), 20));
        sent = s.pipe([Promise.resolve({ n: 1 }), later, 'plain'], {
          end: true,
          map: async (item) => (item === 'plain' ? undefined : { event: 'got', data: item }),
        });
      });
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.events.map((e) => [e.event, e.data])).toEqual([['got', '{"n":1}'], ['got', 'later']]);
      await expect(sent).resolves.toBe(2);
    });

    it('a promise item that rejects rejects pipe() with its error, the items before it delivered and the source cancelled', async () => {
      const boom = new Error('item boom');
      let finalized = false;
      let result: Promise<{ error?: unknown }> | undefined;
      srv.route((s) => {
        result = settle(s.pipe((function* () {
          try {
            yield 'one';
            yield Promise.reject(boom);
            yield 'never';
          } finally {
            finalized = true;
          }
        })())).finally(() => s.close());
      });
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.events.map((e) => e.data)).toEqual(['one']);
      expect((await result!).error).toBe(boom);
      expect(finalized).toBe(true);
    });

    it('an async map that rejects rejects pipe() with its error', async () => {
      const boom = new Error('async map boom');
      let result: Promise<{ error?: unknown }> | undefined;
      srv.route((s) => {
        result = settle(s.pipe([1, 2, 3], { map: async (n) => {
          if (n === 2) throw boom;
          return { data: n };
        } })).finally(() => s.close());
      });
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.events.map((e) => e.data)).toEqual(['1']);
      expect((await result!).error).toBe(boom);
    });

    it('an item that cannot be serialized rejects with ERR_SSE_INVALID_FIELD and writes nothing of it', async () => {
      let result: Promise<{ error?: unknown }> | undefined;
      srv.route((s) => {
        result = settle(s.pipe([{ n: 1 }, { n: 2 }, { n: 3n }, { n: 4 }])).finally(() => s.close());
      });
      const body = await (await fetch(`${srv.url}/t`)).text();
      expect(body).toBe(':\ndata: {"n":1}\n\ndata: {"n":2}\n\n');
      const { error } = await result!;
      expect(error).toBeInstanceOf(SseGuardError);
      expect((error as SseGuardError).code).toBe('ERR_SSE_INVALID_FIELD');
    });

    it('an event with a newline in its name rejects, nothing of it written', async () => {
      let result: Promise<{ error?: unknown }> | undefined;
      srv.route((s) => {
        result = settle(s.pipe(['ok', 'bad'], { map: (data) => ({ event: data === 'bad' ? 'x\ndata: injected' : 'fine', data }) })).finally(() => s.close());
      });
      const body = await (await fetch(`${srv.url}/t`)).text();
      expect(body).toBe(':\nevent: fine\ndata: ok\n\n');
      expect(((await result!).error as SseGuardError).code).toBe('ERR_SSE_INVALID_FIELD');
    });

    it.each([
      ['a promise', Promise.resolve([1]), 'await it first'],
      ['a string', 'text', 'one character per event'],
      ['a number', 42, 'got number'],
      ['null', null, 'got null'],
    ])('rejects %s as a source with ERR_SSE_INVALID_OPTION naming the fix', async (_what, source, fix) => {
      let result: Promise<{ error?: unknown }> | undefined;
      srv.route((s) => {
        result = settle(s.pipe(source as unknown as Iterable<unknown>)).finally(() => s.close());
      });
      const body = await (await fetch(`${srv.url}/t`)).text();
      expect(body).toBe(':\n');
      const { error } = await result!;
      expect((error as SseGuardError).code).toBe('ERR_SSE_INVALID_OPTION');
      expect((error as Error).message).toContain(fix);
    });

    it('takes null options as none', async () => {
      let sent: Promise<number> | undefined;
      srv.route((s) => (sent = s.pipe(['a'], null as never).finally(() => s.close())));
      const got = await collect(`${srv.url}/t`, { timeout: 3000 });
      expect(got.events.map((e) => e.data)).toEqual(['a']);
      await expect(sent).resolves.toBe(1);
    });

    it('rejects a ReadableStream already being read with ERR_SSE_INVALID_OPTION naming the fix', async () => {
      let result: Promise<{ error?: unknown }> | undefined;
      srv.route((s) => {
        const source = new ReadableStream();
        source.getReader();
        result = settle(s.pipe(source)).finally(() => s.close());
      });
      await (await fetch(`${srv.url}/t`)).text();
      const { error } = await result!;
      expect((error as SseGuardError).code).toBe('ERR_SSE_INVALID_OPTION');
      expect((error as Error).message).toContain('pass a fresh one');
    });

    it('rejects a map that is not a function', async () => {
      let result: Promise<{ error?: unknown }> | undefined;
      srv.route((s) => {
        result = settle(s.pipe([1], { map: 'data' as unknown as (n: number) => string })).finally(() => s.close());
      });
      await (await fetch(`${srv.url}/t`)).text();
      expect(((await result!).error as SseGuardError).code).toBe('ERR_SSE_INVALID_OPTION');
    });
  });
});

describe('pipe() over HTTP/2', () => {
  it('stops pulling while the client does not read, resumes in order, and stops the source when the client cancels', async () => {
    const size = 8 * 1024;
    const { state, items } = endless(size);
    let sent: Promise<number> | undefined;
    const middleware = sse({ heartbeat: false, highWaterMark: 16384 });
    const server = http2.createServer((req, res) =>
      middleware(req as never, res as never, () => (sent = (res as unknown as { sse: SseStream }).sse.pipe(items()))),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const request = session.request({ ':path': '/' });
      request.pause();
      await waitFor('the first items', () => state.pulled > 0);
      let last = -1;
      await waitFor('pulling to stop', () => {
        const still = state.pulled === last;
        last = state.pulled;
        return still;
      }, 5000);
      await sleep(300);
      const settled = state.pulled;
      expect(state.pulled).toBe(settled);
      // HTTP/2 flow control lets 64 KiB leave; highWaterMark holds 16 KiB more, plus the one item that crossed it.
      expect(settled * size).toBeLessThanOrEqual(65535 + 16384 + 2 * size);

      let text = '';
      request.setEncoding('utf8');
      request.on('data', (chunk: string) => (text += chunk));
      request.resume();
      await waitFor('pulling to resume', () => state.pulled >= settled + 20, 5000);
      const numbers = [...text.matchAll(/^data: (\d+):/gm)].map((m) => Number(m[1]));
      expect(numbers).toEqual(numbers.map((_, i) => i + 1));

      request.close(http2.constants.NGHTTP2_CANCEL);
      await waitFor("the generator's finally", () => state.finalized, 1000);
      await expect(sent).resolves.toBe(state.pulled);
    } finally {
      await new Promise<void>((resolve) => session.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('pipe() in the handler form', () => {
  let srv: TestServer;
  const log: Array<[string, unknown]> = [];
  const boom = new Error('upstream failed');
  beforeAll(async () => {
    const app = expressVersions[0]![1]();
    const logger = (reason: string, details: Record<string, unknown>) => log.push([reason, details.error]);
    app.get('/fails', sse(async (stream) => {
      await stream.pipe((async function* () {
        yield 'before';
        throw boom;
      })());
    }, { logger, heartbeat: false }));
    app.get('/ends', sse((stream) => stream.pipe(['a', 'b']), { heartbeat: false }));
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  it("a rejection closes the stream with 'error' and reaches the logger", async () => {
    const got = await collect(`${srv.url}/fails`, { timeout: 3000 });
    expect(got.events.map((e) => e.data)).toEqual(['before']);
    expect(got.ended).toBe(true);
    expect(log).toEqual([['handler-error', boom]]);
  });

  it('returning the pipe closes the stream when the source ends', async () => {
    const got = await collect(`${srv.url}/ends`, { timeout: 3000 });
    expect(got.events.map((e) => e.data)).toEqual(['a', 'b']);
    expect(got.ended).toBe(true);
  });
});

describe('pipe() and relay() types', () => {
  it('type-check map results against the event map', () => {
    type Events = { delta: string; done: { tokens: number } };
    const check = (stream: SseStream<Events>, chunks: AsyncIterable<{ text: string }>, upstream: Response): void => {
      void stream.pipe(chunks, { map: (chunk) => ({ event: 'delta', data: chunk.text }) });
      void stream.pipe(chunks, { map: () => ({ event: 'done', data: { tokens: 1 } }) });
      void stream.pipe(chunks, { map: async (chunk) => ({ event: 'delta', data: chunk.text }) });
      // @ts-expect-error an async map's events are checked too
      void stream.pipe(chunks, { map: async (chunk) => ({ event: 'done', data: chunk.text }) });
      // @ts-expect-error an event the map does not have
      void stream.pipe(chunks, { map: (chunk) => ({ event: 'other', data: chunk.text }) });
      // @ts-expect-error data of the wrong type for the event
      void stream.pipe(chunks, { map: (chunk) => ({ event: 'done', data: chunk.text }) });
      // @ts-expect-error without map, items would be unnamed events, which this map does not have
      void stream.pipe(chunks);
      void stream.relay(upstream, { map: (event) => ({ event: 'delta', data: event.data }) });
      void stream.relay(upstream, { map: async (event) => ({ event: 'delta', data: event.data }) });
      // @ts-expect-error a typed stream relays only through a map
      void stream.relay(upstream);
      // @ts-expect-error relayed events must be events of the map
      void stream.relay(upstream, { map: (event) => ({ event: 'done', data: event.data }) });
    };
    const untyped = (stream: SseStream, upstream: Response): void => {
      void stream.pipe([1, 'two', { three: 3 }]);
      void stream.relay(upstream);
    };
    expect([check, untyped]).toHaveLength(2);
  });
});
