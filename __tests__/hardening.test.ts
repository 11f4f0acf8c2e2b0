// The defects of the hardening review (issue 11), one describe per item: each test failed before its fix.
import { createParser } from 'eventsource-parser';
import express from 'express';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  Channel,
  memoryAdapter,
  serializeComment,
  serializeEvent,
  shutdown,
  sse,
  stats,
  SseGuardError,
  type ChannelAdapter,
  type CloseReason,
  type SseLogger,
  type SseOptions,
  type SseStream,
} from '../src/index';
import { collect } from '../src/testing';
import { autoIds, idsOf, serveChannel, type ChannelServer } from './helpers/channel';
import { rawRequest, stalledClient } from './helpers/raw';
import { cleanupAfterEach, listen, waitFor, type TestServer } from './helpers/server';

const cleanups = cleanupAfterEach();

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (error) {
    return (error as SseGuardError).code;
  }
  return undefined;
};

async function served(handler: http.RequestListener, options: http.ServerOptions = {}): Promise<TestServer> {
  const srv = await listen(handler, options);
  cleanups.push(() => srv.close());
  return srv;
}

async function channelServer(channel: Channel, options: SseOptions = {}): Promise<ChannelServer> {
  const srv = await serveChannel(channel, options);
  cleanups.push(
    () => srv.close(),
    () => channel.close(),
  );
  return srv;
}

/** An h2c server running `handler` as a plain request handler, and a session to it. */
async function http2Pair(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<http2.ClientHttp2Session> {
  const server = http2.createServer((req, res) => handler(req as never, res as never));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  cleanups.push(
    () => new Promise((resolve) => server.close(resolve)),
    () => new Promise<void>((resolve) => session.close(resolve)),
  );
  return session;
}

/** Reads an HTTP/2 event stream, keeping each event's id and data length. */
function readHttp2(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Array<{ id: string | undefined; size: number }> {
  const events: Array<{ id: string | undefined; size: number }> = [];
  const parser = createParser({ onEvent: (event) => events.push({ id: event.id, size: event.data.length }) });
  const request = session.request({ ':path': '/events', ...headers });
  request.setEncoding('utf8');
  request.on('data', (chunk: string) => parser.feed(chunk));
  cleanups.push(() => request.close());
  return events;
}

/** The logger's failures become process warnings: this collects their texts (and keeps them off the console) while a test runs. */
function watchWarnings(): string[] {
  const warnings: string[] = [];
  const spy = jest.spyOn(process, 'emitWarning').mockImplementation((warning: string | Error, options?: unknown) => {
    if ((options as { code?: string } | undefined)?.code === 'SSE_GUARD_LOGGER_FAILED') warnings.push(String(warning));
  });
  cleanups.push(() => spy.mockRestore());
  return warnings;
}

describe('item 5: ready() on HTTP/2 with highWaterMark below the stream’s own 16 KiB', () => {
  it('sends all 50 events of 2 KB with highWaterMark 1000, waiting on ready() between them', async () => {
    let written = 0;
    const route = sse(
      async (stream) => {
        for (let i = 0; i < 50; i++) {
          if (!stream.send({ id: String(i), data: 'x'.repeat(2000) })) await stream.ready();
          written++;
        }
      },
      { highWaterMark: 1000, heartbeat: false },
    );
    const session = await http2Pair((req, res) => route(req, res, () => {}));
    const events = readHttp2(session, {});
    // The last write's ready() resolves on the poll after the client read it: wait for both.
    await waitFor(`50 events (${written} written, ${events.length} read)`, () => events.length === 50 && written === 50, 5000);
    expect(written).toBe(50);
  });

  it('replays a Channel history of 50 events of 2 KB over HTTP/2 with highWaterMark 1000', async () => {
    const channel = new Channel({ history: 100 });
    cleanups.push(() => channel.close());
    const route = sse({ highWaterMark: 1000, heartbeat: false });
    const session = await http2Pair((req, res) => route(req, res, () => channel.subscribe((res as unknown as { sse: SseStream }).sse)));
    const { idOf, range } = autoIds(await channel.publish({ data: 'seen' }));
    for (let n = 2; n <= 51; n++) await channel.publish({ data: 'x'.repeat(2000) });
    const events = readHttp2(session, { 'last-event-id': idOf(1) });
    await waitFor(`the replay (${events.length} of 50)`, () => events.length === 50, 5000);
    expect(idsOf(events)).toEqual(range(2, 51));
  });
});

describe('item 6: ready() when the server’s sockets have a highWaterMark above maxBufferedBytes', () => {
  it('delivers 400 of 400 writes of 16 KB to a reading client, without a slow-consumer drop', async () => {
    let reason: CloseReason | undefined;
    const route = sse(
      async (stream) => {
        stream.on('close', (why) => (reason = why));
        for (let i = 0; i < 400 && !stream.closed; i++) {
          if (!stream.send({ data: 'x'.repeat(16 * 1024) })) await stream.ready();
        }
      },
      { heartbeat: false },
    );
    const srv = await served((req, res) => route(req, res, () => {}), { highWaterMark: 4 * 1024 * 1024 });
    const drops = stats().slowConsumerDrops;
    // Read to the end of the response: the handler's return closes it after the last write.
    const got = await collect(`${srv.url}/`, { timeout: 10000 });
    expect(got.ended).toBe(true);
    expect({ received: got.events.length, reason, drops: stats().slowConsumerDrops - drops }).toEqual({ received: 400, reason: 'server', drops: 0 });
  });
});

describe('item 7: a logger that throws', () => {
  const throwing: SseLogger = () => {
    throw new Error('logger broke');
  };

  it('a handler that rejects still closes its stream with "error", and the logger failure is one warning', async () => {
    const warnings = watchWarnings();
    const reasons: CloseReason[] = [];
    const logger = jest.fn(throwing);
    const route = sse(
      async (stream) => {
        stream.on('close', (reason) => reasons.push(reason));
        throw new Error('handler broke');
      },
      { logger, heartbeat: false },
    );
    const srv = await served((req, res) => route(req, res, () => {}));
    for (let i = 0; i < 2; i++) {
      const got = await collect(`${srv.url}/`, { timeout: 3000 });
      expect(got.ended).toBe(true);
    }
    await waitFor('both streams closed', () => reasons.length === 2);
    expect(reasons).toEqual(['error', 'error']);
    expect(logger.mock.calls.map(([reason]) => reason)).toEqual(['handler-error', 'handler-error']);
    await waitFor('the warning', () => warnings.length > 0);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/logger failed while reporting 'handler-error'/);
  });

  const revoked = (): object => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  };
  it.each([
    ['rejects with', 'an Error', () => new Error('async logger broke') as unknown, 'Error: async logger broke'],
    ['throws', 'a value String() cannot convert (an object without a prototype)', () => Object.create(null) as unknown, '[object Object]'],
    ['rejects with', 'a value String() cannot convert (an object without a prototype)', () => Object.create(null) as unknown, '[object Object]'],
    ['rejects with', 'a value String() cannot convert (a revoked Proxy)', revoked, 'an object that cannot be read'],
  ])('a logger that %s %s is reported once too, and changes nothing', async (how, _what, value, detail) => {
    const warnings = watchWarnings();
    const reasons: CloseReason[] = [];
    const logger = (how === 'throws'
      ? () => {
          throw value();
        }
      : () => Promise.reject(value())) as unknown as SseLogger;
    const route = sse(
      (stream) => {
        stream.on('close', (reason) => reasons.push(reason));
        throw new Error('handler broke');
      },
      { logger, heartbeat: false },
    );
    const srv = await served((req, res) => route(req, res, () => {}));
    await collect(`${srv.url}/`, { timeout: 3000 });
    await waitFor('the warning', () => warnings.length > 0);
    expect(warnings[0]).toContain(`logger failed while reporting 'handler-error' (${detail})`);
    expect(reasons).toEqual(['error']);
  });

  it('the heartbeat’s slow-consumer log that throws drops the client and leaves the process up', async () => {
    const warnings = watchWarnings();
    let reason: CloseReason | undefined;
    const app = express();
    // A 16 MB event fills the kernel's buffers of a client that does not read; the heartbeat then finds the rest queued.
    app.get('/events', sse({ heartbeat: 40, maxBufferedBytes: 64 * 1024, highWaterMark: 16 * 1024, logger: throwing }), (_req, res) => {
      res.sse.on('close', (why) => (reason = why));
      res.sse.send('x'.repeat(16 * 1024 * 1024));
    });
    const srv = await served(app);
    const client = await stalledClient(srv.port, '/events');
    cleanups.push(() => client.close());
    await waitFor('the slow-consumer drop', () => reason !== undefined, 5000);
    expect(reason).toBe('slow-consumer');
    expect(warnings).toHaveLength(1);
  });

  it('in a Channel: publish() resolves, the slow subscriber is dropped, the fast one gets every event', async () => {
    watchWarnings();
    const channel = new Channel();
    // Default maxBufferedBytes (1 MiB); events of 1 MiB: the slow client passes it once the kernel's buffers are full.
    const srv = await channelServer(channel, { logger: throwing });
    const slow = await stalledClient(srv.port, '/events');
    cleanups.push(() => slow.close());
    await waitFor('the slow subscriber', () => channel.size === 1);
    const fast = collect(`${srv.url}/events`, { count: 16, timeout: 20000 });
    await waitFor('the fast subscriber', () => channel.size === 2);
    const fastStream = srv.streams[1]!;
    const outcomes: string[] = [];
    for (let i = 0; i < 16; i++) {
      outcomes.push(
        await channel.publish({ data: 'x'.repeat(1024 * 1024) }).then(
          () => 'resolved',
          (error: Error) => error.message,
        ),
      );
      // The fast client takes each event before the next: it is never near the limit.
      await waitFor('the fast client to read', () => fastStream.bufferedBytes === 0 || fastStream.closed, 5000);
    }
    expect(outcomes).toEqual(Array(16).fill('resolved'));
    expect((await fast).events).toHaveLength(16);
    expect(srv.reasons.get(srv.streams[0]!)).toBe('slow-consumer');
    expect(fastStream.closed).toBe(false);
  });
});

describe('item 8: custom adapters whose since() throws or never settles', () => {
  function adapterWith(since: ChannelAdapter['since']): ChannelAdapter {
    const inner = memoryAdapter();
    return { attach: (deliver, history) => inner.attach(deliver, history), append: (body, id) => inner.append(body, id), close: () => inner.close(), since };
  }

  it('a since() that throws closes the stream with "error", as a rejection does', async () => {
    for (const since of [
      () => {
        throw new Error('since broke');
      },
      () => Promise.reject(new Error('since broke')),
    ]) {
      const channel = new Channel({ history: 10, adapter: adapterWith(since) });
      const srv = await channelServer(channel);
      const got = await collect(`${srv.url}/events`, { headers: { 'Last-Event-ID': 'x-1' }, timeout: 3000 });
      expect(got.status).toBe(200);
      expect(got.ended).toBe(true);
      await waitFor('the close', () => srv.reasons.size === 1);
      expect([...srv.reasons.values()]).toEqual(['error']);
    }
  });

  it('a since() that never settles ends with "error" after joinTimeout, not as a slow consumer, while live events pile up', async () => {
    const channel = new Channel({ history: 10, joinTimeout: 400, adapter: adapterWith(() => new Promise(() => {})) });
    const srv = await channelServer(channel, { maxBufferedBytes: 64 * 1024, highWaterMark: 16 * 1024 });
    const drops = stats().slowConsumerDrops;
    const started = performance.now();
    const got = collect(`${srv.url}/events`, { headers: { 'Last-Event-ID': 'x-1' }, timeout: 5000 });
    await waitFor('the subscriber', () => channel.size === 1);
    // More than maxBufferedBytes of live events queue while the join waits: the adapter's delay, not the client's.
    for (let i = 0; i < 4; i++) await channel.publish({ data: 'x'.repeat(32 * 1024) });
    expect((await got).ended).toBe(true);
    expect(performance.now() - started).toBeLessThan(3000);
    expect([...srv.reasons.values()]).toEqual(['error']);
    expect(stats().slowConsumerDrops - drops).toBe(0);
    expect(channel.size).toBe(0);
  });

  it('rejects a joinTimeout that is not a positive timer delay', () => {
    for (const joinTimeout of [0, -1, 1.5, 2 ** 31, Number.NaN]) {
      expect(codeOf(() => new Channel({ joinTimeout }))).toBe('ERR_SSE_INVALID_OPTION');
    }
  });
});

describe('item 9: a non-ASCII Last-Event-ID sent as UTF-8 bytes', () => {
  const request = (lastEventId: Buffer): Buffer =>
    Buffer.concat([Buffer.from('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nLast-Event-ID: '), lastEventId, Buffer.from('\r\n\r\n')]);

  it('is read as UTF-8, so a channel replays what followed "café-1"', async () => {
    const channel = new Channel({ history: 10 });
    const srv = await channelServer(channel);
    for (const id of ['café-1', 'café-2', '日本-3']) await channel.publish({ id, data: id });
    const exchange = await rawRequest(srv.port, request(Buffer.from('café-1', 'utf8')));
    cleanups.push(() => exchange.close());
    await waitFor('the replay', () => Buffer.from(exchange.text(), 'latin1').toString('utf8').includes('data: 日本-3'));
    const text = Buffer.from(exchange.text(), 'latin1').toString('utf8');
    expect(srv.streams[0]!.lastEventId).toBe('café-1');
    expect(text).not.toContain('resync');
    expect(text).toContain('id: café-2\ndata: café-2\n\n');
  });

  it('keeps the Latin-1 reading of bytes that are not UTF-8', async () => {
    const channel = new Channel({ history: 10 });
    const srv = await channelServer(channel);
    const exchange = await rawRequest(srv.port, request(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2d, 0x31, 0xff])));
    cleanups.push(() => exchange.close());
    await waitFor('the stream', () => srv.streams.length === 1);
    expect(srv.streams[0]!.lastEventId).toBe('café-1ÿ');
  });
});

describe('item 10: ids a header cannot carry back, retry past the timer range, non-string comments', () => {
  it.each([' a', 'a ', '\ta', 'a\t', 'a\tb', 'a\x01b', 'a\x1fb', 'a\x7fb', 'a\rb', 'a\0b'])('rejects the id %j, writing nothing', (id) => {
    expect(codeOf(() => serializeEvent({ id, data: 'x' }))).toBe('ERR_SSE_INVALID_FIELD');
  });

  it('send() and publish() with such an id throw and write nothing; the stream stays open', async () => {
    const channel = new Channel();
    const srv = await channelServer(channel);
    const got = collect(`${srv.url}/events`, { count: 1, timeout: 3000 });
    await waitFor('the subscriber', () => channel.size === 1);
    expect(codeOf(() => srv.streams[0]!.send({ id: 'a ', data: 'x' }))).toBe('ERR_SSE_INVALID_FIELD');
    await expect(channel.publish({ id: 'a\x7f', data: 'x' })).rejects.toMatchObject({ code: 'ERR_SSE_INVALID_FIELD' });
    await channel.publish({ id: 'a b', data: 'ok' });
    expect((await got).events.map((e) => [e.id, e.data])).toEqual([['a b', 'ok']]);
  });

  it('accepts inner spaces and non-ASCII', () => {
    expect(serializeEvent({ id: 'a b é', data: 'x' })).toBe('id: a b é\ndata: x\n\n');
  });

  it('shows why: Node answers 400 to a Last-Event-ID with a control character, before the app runs', async () => {
    let reached = false;
    const srv = await served((_req, res) => {
      reached = true;
      res.end();
    });
    const exchange = await rawRequest(srv.port, 'GET / HTTP/1.1\r\nHost: x\r\nLast-Event-ID: a\x01b\r\n\r\n');
    await exchange.ended;
    expect(exchange.text()).toMatch(/^HTTP\/1\.1 400/);
    expect(reached).toBe(false);
  });

  it('rejects retry above 2147483647 in an event, in stream.retry() and in the options', async () => {
    expect(codeOf(() => serializeEvent({ retry: 2 ** 31, data: 'x' }))).toBe('ERR_SSE_INVALID_FIELD');
    expect(serializeEvent({ retry: 2 ** 31 - 1, data: 'x' })).toBe('retry: 2147483647\ndata: x\n\n');
    expect(codeOf(() => sse({ retry: 2 ** 31 }))).toBe('ERR_SSE_INVALID_OPTION');
    const app = express();
    const seen: Array<string | undefined> = [];
    app.get('/events', sse({ heartbeat: false }), (_req, res) => {
      seen.push(codeOf(() => res.sse.retry(2 ** 31)));
      res.sse.close();
    });
    const srv = await served(app);
    const got = await collect(`${srv.url}/events`, { timeout: 3000 });
    expect(seen).toEqual(['ERR_SSE_INVALID_FIELD']);
    expect(got.retries).toEqual([]);
  });

  it.each([42, null, {}])('comment(%p) throws ERR_SSE_INVALID_FIELD', (text) => {
    expect(codeOf(() => serializeComment(text as unknown as string))).toBe('ERR_SSE_INVALID_FIELD');
  });
});

describe('item 11: options validated when sse() is called', () => {
  it.each([
    ['a header value with CR/LF', { headers: { 'X-Evil': 'a\r\nSet-Cookie: x=1' } }],
    ['a header value with a control character', { headers: { 'X-Evil': 'a\x01' } }],
    ['an invalid header name', { headers: { 'Bad Name': 'x' } }],
    ['a header value that is not a string', { headers: { 'X-Obj': {} as unknown as string } }],
    ['padding above maxBufferedBytes', { padding: 2048, maxBufferedBytes: 1024, highWaterMark: 512 }],
    ['heartbeat 2^32 (Node would fire it every ms)', { heartbeat: 2 ** 32 }],
    ['heartbeat 2^31', { heartbeat: 2 ** 31 }],
  ] as Array<[string, SseOptions]>)('rejects %s with ERR_SSE_INVALID_OPTION', (_name, options) => {
    expect(codeOf(() => sse(options))).toBe('ERR_SSE_INVALID_OPTION');
  });

  it('accepts valid extra headers, numbers and arrays included', () => {
    expect(codeOf(() => sse({ headers: { 'X-A': 'b', 'X-N': 3, 'X-L': ['a', 'b'] } }))).toBeUndefined();
  });

  it('a plain http server with an invalid header option is refused at startup, not on every request', async () => {
    // Before: sse() accepted it, and every request threw from setHeader inside the server's callback.
    expect(() => sse({ headers: { 'X-Evil': 'a\nb' } })).toThrow(SseGuardError);
  });

  it('shutdown() rejects a graceMs past the timer range, and changes nothing then', async () => {
    await expect(shutdown({ graceMs: 2 ** 31 })).rejects.toMatchObject({ code: 'ERR_SSE_INVALID_OPTION' });
    await expect(shutdown({ graceMs: -1 })).rejects.toMatchObject({ code: 'ERR_SSE_INVALID_OPTION' });
    // Still serving: the rejected calls did not put the process into shutdown.
    const app = express();
    app.get('/events', sse((stream) => stream.close(), { heartbeat: false }));
    const srv = await served(app);
    expect((await collect(`${srv.url}/events`, { timeout: 2000 })).status).toBe(200);
  });
});

describe('item 13: the in-memory history as a ring', () => {
  it('keeps exactly the last history + 1 events across many wraps', () => {
    const adapter = memoryAdapter();
    adapter.attach(() => {}, 3);
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) void adapter.append(`data: ${i}\n\n`, String(i)).then((id) => ids.push(id));
    const idsAfter = (id: string): string[] | undefined => (adapter.since(id) as Array<{ id: string }> | undefined)?.map((e) => e.id);
    expect(idsAfter('24')).toEqual([]);
    expect(idsAfter('21')).toEqual(['22', '23', '24']);
    expect(idsAfter('23')).toEqual(['24']);
    expect(idsAfter('20')).toBeUndefined();
    expect(idsAfter('3')).toBeUndefined();
  });

  it('replays the newest of repeated ids', () => {
    const adapter = memoryAdapter();
    adapter.attach(() => {}, 5);
    for (const id of ['a', 'b', 'a', 'c']) void adapter.append('data: x\n\n', id);
    expect((adapter.since('a') as Array<{ id: string }>).map((e) => e.id)).toEqual(['c']);
  });
});

describe('item 14: HTTP/1.0 clients', () => {
  it('get "Connection: close" and a body that ends with the connection', async () => {
    const app = express();
    app.get('/events', sse((stream) => {
      stream.send('one');
      setTimeout(() => stream.close(), 50);
    }, { heartbeat: false }));
    const srv = await served(app);
    const exchange = await rawRequest(srv.port, 'GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
    cleanups.push(() => exchange.close());
    await exchange.ended;
    const [head, body] = exchange.text().split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    expect(head).toMatch(/\r\nConnection: close(\r\n|$)/i);
    expect(head).not.toMatch(/keep-alive/i);
    expect(head).not.toMatch(/Transfer-Encoding/i);
    expect(body).toBe(':\ndata: one\n\n');
  });

  it('HTTP/1.1 clients still get keep-alive', async () => {
    const app = express();
    app.get('/events', sse((stream) => stream.close(), { heartbeat: false }));
    const srv = await served(app);
    const got = await collect(`${srv.url}/events`, { timeout: 2000 });
    expect(got.headers.connection).toBe('keep-alive');
  });
});
