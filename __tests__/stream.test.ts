import type { Express } from 'express';
import { sse, stats, SseGuardError, type CloseReason, type SseStream } from '../src/index';
import { collect } from '../src/testing';
import { expressVersions } from './helpers/express';
import { stalledClient } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

const timers = (): number => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;


describe.each(expressVersions)('SseStream (%s)', (_name, express) => {
  let srv: TestServer;
  let latest: SseStream | undefined;
  // Per stream: a stream of an earlier test may still be closing when the next one starts.
  const closes = new Map<SseStream, CloseReason[]>();
  const reasonsOf = (stream = latest): CloseReason[] => closes.get(stream!) ?? [];
  const log: string[] = [];

  beforeAll(async () => {
    const app: Express = express();
    const keep = (stream: SseStream): void => {
      latest = stream;
      const reasons: CloseReason[] = [];
      closes.set(stream, reasons);
      stream.on('close', (reason) => reasons.push(reason));
    };
    app.get('/api', sse({ heartbeat: false }), (_req, res) => {
      keep(res.sse);
      const s = res.sse;
      s.send('plain');
      s.send({ event: 'named', id: 7, data: { a: 1 } });
      s.comment('two\nlines');
      s.retry(2500);
      s.send({ data: '' });
      s.close();
    });
    app.get('/open', sse({ heartbeat: false }), (_req, res) => keep(res.sse));
    app.get('/beat', sse({ heartbeat: 100 }), (_req, res) => keep(res.sse));
    app.get('/preamble', sse({ padding: 64, retry: 3000, heartbeat: false }), (_req, res) => {
      res.sse.send('first');
      res.sse.close();
    });
    app.get('/user-end', sse({ heartbeat: false }), (_req, res) => {
      keep(res.sse);
      res.end();
      // In the same tick as end(): a raw res.write here would emit ERR_STREAM_WRITE_AFTER_END.
      res.locals.afterEnd = res.sse.send('after end');
    });
    app.get('/slow', sse({ heartbeat: false, highWaterMark: 16384, maxBufferedBytes: 131072 }), (_req, res) => keep(res.sse));
    const logger = (reason: string) => log.push(reason);
    app.get('/resolves', sse(async (stream) => void stream.send('done'), { logger }));
    app.get('/rejects', sse(async () => Promise.reject(new Error('boom')), { logger }));
    // Promises of other makes: one that settles, and one whose then() throws.
    app.get('/thenable', sse((stream) => ({ then: (done: () => void) => (stream.send('done'), done()) }), { logger }));
    app.get('/thenable-throws', sse(() => ({ then: () => {
      throw new Error('then boom');
    } }), { logger }));
    app.get('/throws', sse(() => {
      throw new Error('sync boom');
    }, { logger }));
    srv = await listen(app);
  });
  afterAll(() => srv.close());
  beforeEach(() => {
    latest = undefined;
    log.length = 0;
  });

  it('sends events, comments and retry hints in order, then closes with reason server', async () => {
    const result = await collect(`${srv.url}/api`, { timeout: 2000 });
    expect(result.ended).toBe(true);
    expect(result.events.map(({ event, data, id }) => ({ event, data, id }))).toEqual([
      { event: 'message', data: 'plain', id: undefined },
      { event: 'named', data: '{"a":1}', id: '7' },
      { event: 'message', data: '', id: undefined },
    ]);
    // The connect line is an empty comment.
    expect(result.comments).toEqual(['', 'two', 'lines']);
    expect(result.retries).toEqual([2500]);
    expect(reasonsOf()).toEqual(['server']);
  });

  it('writes the padding comment and the retry hint before the first event', async () => {
    const result = await collect(`${srv.url}/preamble`, { timeout: 2000 });
    expect(result.comments).toEqual([' '.repeat(61)]);
    expect(result.retries).toEqual([3000]);
    expect(result.events.map((e) => e.data)).toEqual(['first']);
  });

  it('reads lastEventId from the Last-Event-ID header', async () => {
    const pending = collect(`${srv.url}/open`, { timeout: 300, headers: { 'last-event-id': '42' } });
    await waitFor('the stream', () => latest !== undefined, 2000);
    expect(latest!.lastEventId).toBe('42');
    await pending;
  });

  it('treats an empty Last-Event-ID as none', async () => {
    const pending = collect(`${srv.url}/open`, { timeout: 300, headers: { 'last-event-id': '' } });
    await waitFor('the stream', () => latest !== undefined, 2000);
    expect(latest!.lastEventId).toBeUndefined();
    await pending;
  });

  it('after close: closed is true, the signal is aborted, and writes are no-ops returning false', async () => {
    const pending = collect(`${srv.url}/open`, { timeout: 2000 });
    await waitFor('the stream', () => latest !== undefined, 2000);
    const s = latest!;
    expect(s.closed).toBe(false);
    s.close();
    s.close();
    expect(s.closed).toBe(true);
    expect(s.signal.aborted).toBe(true);
    expect(s.send('late')).toBe(false);
    expect(s.comment('late')).toBe(false);
    expect(s.retry(10)).toBe(false);
    await expect(s.ready()).resolves.toBeUndefined();
    const result = await pending;
    expect(result.ended).toBe(true);
    expect(result.events).toEqual([]);
    expect(reasonsOf()).toEqual(['server']);
  });

  it('a close listener added after close is still told the reason, once', async () => {
    const pending = collect(`${srv.url}/open`, { timeout: 2000 });
    await waitFor('the stream', () => latest !== undefined, 2000);
    latest!.close();
    const late = await new Promise<CloseReason>((resolve) => latest!.on('close', resolve));
    expect(late).toBe('server');
    await pending;
  });

  it('returns false without throwing when user code ended the response itself', async () => {
    const result = await collect(`${srv.url}/user-end`, { timeout: 2000 });
    expect(result.ended).toBe(true);
    expect(result.events).toEqual([]);
    expect(latest!.closed).toBe(true);
    expect(reasonsOf()).toEqual(['server']);
  });

  it('rejects an invalid field with ERR_SSE_INVALID_FIELD and leaves the stream usable', async () => {
    const pending = collect(`${srv.url}/open`, { count: 1, timeout: 2000 });
    await waitFor('the stream', () => latest !== undefined, 2000);
    expect(() => latest!.send({ event: 'a\nid: 9', data: 'x' })).toThrow(SseGuardError);
    expect(() => latest!.retry(-1)).toThrow(expect.objectContaining({ code: 'ERR_SSE_INVALID_FIELD' }));
    latest!.send('valid');
    const result = await pending;
    expect(result.events.map((e) => [e.event, e.data, e.id])).toEqual([['message', 'valid', undefined]]);
    latest!.close();
  });

  describe('handler form', () => {
    it('closes the stream when the returned promise resolves', async () => {
      const result = await collect(`${srv.url}/resolves`, { timeout: 2000 });
      expect(result.ended).toBe(true);
      expect(result.events.map((e) => e.data)).toEqual(['done']);
    });

    it('closes the stream when a returned thenable of another make settles', async () => {
      const result = await collect(`${srv.url}/thenable`, { timeout: 2000 });
      expect(result.ended).toBe(true);
      expect(result.events.map((e) => e.data)).toEqual(['done']);
      expect(log).toEqual([]);
    });

    it.each(['/rejects', '/throws', '/thenable-throws'])('%s: closes the stream and reports handler-error to the logger, never to next(err)', async (path) => {
      const result = await collect(srv.url + path, { timeout: 2000 });
      expect(result.status).toBe(200);
      expect(result.ended).toBe(true);
      expect(log).toEqual(['handler-error']);
    });
  });

  describe('heartbeat', () => {
    it('writes a comment heartbeat on an idle stream', async () => {
      const result = await collect(`${srv.url}/beat`, { timeout: 550 });
      // 100 ms period: about five in 550 ms; a broken scheduler sends none or dozens.
      expect(result.comments.length).toBeGreaterThanOrEqual(3);
      expect(result.comments.length).toBeLessThanOrEqual(7);
      expect(result.comments.every((c) => c === '')).toBe(true);
    });

    it('sends none with heartbeat: false (only the connect line)', async () => {
      const result = await collect(`${srv.url}/open`, { timeout: 400 });
      expect(result.comments).toEqual(['']);
    });

    it('stays quiet while events flow', async () => {
      const pending = collect(`${srv.url}/beat`, { timeout: 500 });
      await waitFor('the stream', () => latest !== undefined, 2000);
      const s = latest!;
      for (let i = 0; i < 9; i++) {
        s.send(String(i));
        await sleep(40);
      }
      const result = await pending;
      expect(result.events).toHaveLength(9);
      // The connect line, and at most one heartbeat before the first event.
      expect(result.comments.length).toBeLessThanOrEqual(2);
    });
  });

  describe('disconnect', () => {
    it('aborts the signal, fires close once with client, and leaves no timer or stream behind', async () => {
      const timersBefore = timers();
      const pending = collect(`${srv.url}/beat`, { timeout: 150 });
      await waitFor('the stream', () => latest !== undefined, 2000);
      const s = latest!;
      let aborts = 0;
      s.signal.addEventListener('abort', () => aborts++);
      expect(stats().open).toBe(1);
      await pending;
      await waitFor('the close', () => s.closed, 2000);
      expect(reasonsOf()).toEqual(['client']);
      expect(aborts).toBe(1);
      expect(stats().open).toBe(0);
      // Timers of the client side may still be unwinding on a loaded machine; a leaked one never goes.
      await waitFor('the timers to unwind', () => timers() <= timersBefore, 2000);
      expect(timers()).toBeLessThanOrEqual(timersBefore);
    });
  });

  describe('slow consumer', () => {
    it('send() returns false above highWaterMark, ready() waits for the client, and a stalled client is dropped above maxBufferedBytes', async () => {
      const client = await stalledClient(srv.port, '/slow');
      const dropsBefore = stats().slowConsumerDrops;
      try {
        await waitFor('the stream', () => latest !== undefined, 2000);
        const s = latest!;
        const chunk = 'x'.repeat(8192);
        // Fill the kernel's buffers too, until the backlog stays in the process.
        let backedUp = false;
        for (let i = 0; i < 2000 && !backedUp; i++) {
          if (!s.send(chunk)) {
            await sleep(20);
            backedUp = s.bufferedBytes >= 16384;
          }
        }
        expect(backedUp).toBe(true);
        expect(s.send(chunk)).toBe(false);

        let ready = false;
        void s.ready().then(() => (ready = true));
        await sleep(50);
        expect(ready).toBe(false);
        client.resume();
        await waitFor('ready()', () => ready, 2000);
        client.socket.pause();

        let maxBuffered = 0;
        for (let i = 0; i < 20000 && !s.closed; i++) {
          s.send(chunk);
          maxBuffered = Math.max(maxBuffered, s.bufferedBytes);
          if (i % 20 === 0) await sleep(1);
        }
        expect(reasonsOf()).toEqual(['slow-consumer']);
        expect(stats().slowConsumerDrops).toBe(dropsBefore + 1);
        // Memory stays bounded: never more than maxBufferedBytes plus one event.
        expect(maxBuffered).toBeLessThanOrEqual(131072 + 8192 + 16);
      } finally {
        client.close();
      }
    });
  });
});

describe('typed event maps', () => {
  it('type-checks send() against the map', () => {
    type Events = { tick: { n: number }; note: string };
    const check = (stream: SseStream<Events>): void => {
      stream.send({ event: 'tick', data: { n: 1 } });
      stream.send({ event: 'note', data: 'text', id: 1 });
      // @ts-expect-error data of the wrong type for the event
      stream.send({ event: 'tick', data: { n: 'one' } });
      // @ts-expect-error an event not in the map
      stream.send({ event: 'other', data: 1 });
      // @ts-expect-error a bare string is an unnamed `message`, which this map lacks
      stream.send('text');
    };
    expect(typeof check).toBe('function');
  });
});

describe('options', () => {
  it.each([
    [{ heartbeat: 0 }],
    [{ heartbeat: -5 }],
    [{ padding: 1 }],
    [{ retry: 1.5 }],
    [{ highWaterMark: 100, maxBufferedBytes: 10 }],
    [{ compression: 'gzip' }],
    [{ timeoutHandler: 'ignore' }],
  ])('rejects %j at setup with ERR_SSE_INVALID_OPTION', (options) => {
    expect(() => sse(options as never)).toThrow(expect.objectContaining({ code: 'ERR_SSE_INVALID_OPTION' }));
  });
});
