// stream.relay(): a real upstream event stream re-sent field for field, refused when it is not
// one, rewritten by map, and cancelled when the client leaves.
import http from 'node:http';
import express from 'express';
import { Agent } from 'undici';
import { sse, SseGuardError, type AnyEvents, type SseEvent, type SseStream } from '../src/index';
import { relay as relayInto, sendIdOnly, type RelaySink } from '../src/stream/relay';
import { serializeEvent } from '../src/stream/serialize';
import { collect } from '../src/testing';
import { stalledClient } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

// Everything the wire format has: ids, names, multi-line data, retry, comments, every line ending,
// a field without its space, a BOM, non-ASCII text, empty data, an id with NUL (ignored by the
// spec), an unknown field, and an event left open when the body ends (discarded by the spec).
const FEED =
  '\uFEFF: upstream heartbeat\n' +
  'retry: 1500\n\n' +
  'id: 1\nevent: delta\ndata: Hel\n\n' +
  'id: 2\r\nevent: delta\r\ndata:lo\r\n\r\n' +
  'data: line one\rdata: line two\r\r' +
  'id: 3\nevent: multi\ndata: a\ndata:\ndata:  b with leading space\n\n' +
  ': another comment\n' +
  'id: 4\ndata: héllo ✓ 😀\n\n' +
  'data:\n\n' +
  'id: bad\0id\ndata: nul id ignored\n\n' +
  'whatever: unknown field\ndata: after unknown\n\n' +
  'retry: 2500\n' +
  'event: done\ndata: [DONE]\n\n' +
  'data: never finished\n';

/** An upstream that writes `body` in pieces of `piece` bytes (a multi-byte character split across them). */
function upstreamServer(routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>) {
  const requests: Array<{ path: string; headers: http.IncomingHttpHeaders; closed: boolean; res: http.ServerResponse }> = [];
  return {
    requests,
    start: () =>
      listen((req, res) => {
        const record = { path: req.url ?? '', headers: req.headers, closed: false, res };
        requests.push(record);
        res.on('close', () => (record.closed = true));
        const route = routes[req.url ?? ''];
        if (route === undefined) res.writeHead(404).end();
        else route(req, res);
      }),
  };
}

function writeInPieces(res: http.ServerResponse, body: string, piece: number): void {
  const bytes = Buffer.from(body);
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  let at = 0;
  const next = (): void => {
    if (res.destroyed) return;
    if (at >= bytes.length) return void res.end();
    res.write(bytes.subarray(at, at + piece));
    at += piece;
    setImmediate(next);
  };
  next();
}

function writeRepeated(res: http.ServerResponse, chunk: string, count: number): void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  let sent = 0;
  const more = (): void => {
    while (!res.destroyed && sent < count) {
      sent++;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    res.end();
  };
  more();
}

const settle = <T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> => promise.then((value) => ({ value }), (error: unknown) => ({ error }));

describe('relay()', () => {
  let up: TestServer;
  let down: TestServer;
  const upstream = upstreamServer({
    '/feed': (_req, res) => writeInPieces(res, FEED, 4096),
    '/feed-bytewise': (_req, res) => writeInPieces(res, FEED, 1),
    '/error': (_req, res) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('upstream broke'),
    '/json': (_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"error":"no stream"}'),
    '/silent': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8' });
      res.write('id: 1\ndata: first\n\n');
    },
    // 200 pieces of 64 KiB that never end an event: one data line, one comment line, or data lines
    // with a comment between each (a comment must not count as the end of the event).
    '/endless-line': (_req, res) => writeRepeated(res, `data: ${'x'.repeat(65536)}`, 200),
    '/endless-comment': (_req, res) => writeRepeated(res, `:${'x'.repeat(65536)}`, 200),
    '/comments-between-data': (_req, res) => writeRepeated(res, `:\ndata: ${'x'.repeat(1000)}\n`.repeat(64), 200),
    '/cut': (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: before the cut\n\n');
      setTimeout(() => req.socket.destroy(), 50);
    },
    // CR line ends only, the event's closing CR the last byte of its chunk, and the body's.
    '/cr-only': (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('id: 1\rdata: one\r\r');
      const timer = setTimeout(() => res.end('data: two\r\r'), 600);
      res.on('close', () => clearTimeout(timer));
    },
    '/resume': (req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.end(`id: 6\ndata: after ${String(req.headers['last-event-id'])}\n\n`);
    },
  });
  let outcome: Promise<{ value?: number; error?: unknown }> | undefined;
  let current: (stream: SseStream, req: express.Request) => Promise<number> = async () => 0;

  beforeAll(async () => {
    up = await upstream.start();
    const app = express();
    app.get('/relay', sse({ heartbeat: false }), (req, res) => {
      outcome = settle(current(res.sse, req));
      void outcome.then(() => res.sse.close());
    });
    down = await listen(app);
  });
  afterAll(async () => {
    await down.close();
    await up.close();
  });
  beforeEach(() => {
    upstream.requests.length = 0;
  });

  const from = (path: string, init: RequestInit = {}) => (stream: SseStream) =>
    fetch(`${up.url}${path}`, { ...init, signal: stream.signal }).then((response) => stream.relay(response));

  it.each(['/feed', '/feed-bytewise'])('re-sends every event of %s with the same fields, retry in order, comments dropped', async (path) => {
    const direct = await collect(`${up.url}${path}`, { timeout: 5000 });
    current = from(path);
    const relayed = await collect(`${down.url}/relay`, { timeout: 5000 });
    const fields = (e: { event: string; data: string; id: string | undefined }) => [e.event, e.data, e.id];
    expect(relayed.events.map(fields)).toEqual(direct.events.map(fields));
    expect(relayed.retries).toEqual([1500, 2500]);
    expect(direct.retries).toEqual([1500, 2500]);
    // Only this stream's own connect line: the upstream's comments stay upstream.
    expect(relayed.comments).toEqual(['']);
    expect((await outcome)?.value).toBe(9);
  });

  it('writes exactly what the serializer makes of each event', async () => {
    current = from('/feed');
    const body = await (await fetch(`${down.url}/relay`)).text();
    expect(body).toBe(
      ':\n' +
        'retry: 1500\n\n' +
        'id: 1\nevent: delta\ndata: Hel\n\n' +
        'id: 2\nevent: delta\ndata: lo\n\n' +
        'data: line one\ndata: line two\n\n' +
        'id: 3\nevent: multi\ndata: a\ndata: \ndata:  b with leading space\n\n' +
        'id: 4\ndata: héllo ✓ 😀\n\n' +
        'data: \n\n' +
        'data: nul id ignored\n\n' +
        'data: after unknown\n\n' +
        'retry: 2500\n\n' +
        'event: done\ndata: [DONE]\n\n',
    );
  });

  it('map rewrites and drops events', async () => {
    current = (stream) =>
      fetch(`${up.url}/feed`, { signal: stream.signal }).then((response) =>
        stream.relay(response, { map: (e) => (e.event === 'delta' ? { event: 'token', id: e.id, data: e.data.toUpperCase() } : undefined) }),
      );
    const got = await collect(`${down.url}/relay`, { timeout: 5000 });
    expect(got.events.map((e) => [e.event, e.data, e.id])).toEqual([['token', 'HEL', '1'], ['token', 'LO', '2']]);
    expect((await outcome)?.value).toBe(2);
  });

  it('takes the body of a Response, or a Node response, as well as the Response', async () => {
    current = (stream) => fetch(`${up.url}/feed`).then((response) => stream.relay(response.body!));
    const fromBody = await collect(`${down.url}/relay`, { timeout: 5000 });
    current = (stream) => new Promise<http.IncomingMessage>((resolve) => http.get(`${up.url}/feed`, resolve)).then((res) => stream.relay(res));
    const fromNode = await collect(`${down.url}/relay`, { timeout: 5000 });
    expect(fromBody.events).toHaveLength(9);
    expect(fromNode.events.map((e) => e.data)).toEqual(fromBody.events.map((e) => e.data));
  });

  it.each([
    ['/error', 'status 500 with Content-Type "text/plain"'],
    ['/json', 'status 200 with Content-Type "application/json"'],
  ])('rejects %s with ERR_SSE_UPSTREAM naming status and type, writes nothing, and releases the upstream', async (path, named) => {
    current = from(path);
    const body = await (await fetch(`${down.url}/relay`)).text();
    expect(body).toBe(':\n');
    const { error } = (await outcome)!;
    expect(error).toBeInstanceOf(SseGuardError);
    expect((error as SseGuardError).code).toBe('ERR_SSE_UPSTREAM');
    expect((error as Error).message).toContain(named);
    await waitFor('the upstream request to close', () => upstream.requests.every((r) => r.closed), 1000);
  });

  it('cancels the upstream request within a second when the client leaves, even while the upstream is silent', async () => {
    current = from('/silent');
    const got = await collect(`${down.url}/relay`, { count: 1, timeout: 3000 });
    expect(got.events.map((e) => e.data)).toEqual(['first']);
    await waitFor('the upstream request to close', () => upstream.requests[0]?.closed === true, 1000);
    expect((await outcome)?.value).toBe(1);
  });

  // README: relay() waits on an upstream gone quiet; the recipe bounds the wait with fetch's bodyTimeout.
  it('rejects once an upstream gone quiet outlasts the bodyTimeout of the dispatcher fetch was given', async () => {
    const dispatcher = new Agent({ bodyTimeout: 300 });
    try {
      current = (stream) => fetch(`${up.url}/silent`, { dispatcher } as RequestInit).then((response) => stream.relay(response));
      const got = await collect(`${down.url}/relay`, { timeout: 3000 });
      expect(got.events.map((e) => e.data)).toEqual(['first']);
      // The route closes the stream when the relay settles.
      expect(got.ended).toBe(true);
      // fetch's own error, as for an upstream cut (the body timeout closed the connection).
      expect((await outcome)?.error).toMatchObject({ name: 'TypeError', message: 'terminated' });
    } finally {
      await dispatcher.close();
    }
  });

  it('control: without it, the relay of an upstream gone quiet is still waiting', async () => {
    current = from('/silent');
    const got = await collect(`${down.url}/relay`, { timeout: 1500 });
    expect(got.events.map((e) => e.data)).toEqual(['first']);
    expect(got.ended).toBe(false);
  });

  it('cancels the upstream body itself, without the signal passed to fetch', async () => {
    current = (stream) => fetch(`${up.url}/silent`).then((response) => stream.relay(response));
    await collect(`${down.url}/relay`, { count: 1, timeout: 3000 });
    await waitFor('the upstream request to close', () => upstream.requests[0]?.closed === true, 1000);
  });

  it('control: a hand-written relay of the bytes keeps the upstream open after the client left', async () => {
    const app = express();
    app.get('/naive', async (_req, res) => {
      const response = await fetch(`${up.url}/silent`);
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      for await (const chunk of response.body!) res.write(chunk);
    });
    const naive = await listen(app);
    try {
      await collect(`${naive.url}/naive`, { count: 1, timeout: 3000 });
      await sleep(1000);
      expect(upstream.requests[0]?.closed).toBe(false);
    } finally {
      await naive.close();
      // The naive route never lets go of its upstream request: end it here.
      upstream.requests[0]?.res.destroy();
    }
  });

  it.each(['/endless-line', '/endless-comment', '/comments-between-data'])('rejects an upstream that never ends its event (%s) with ERR_SSE_UPSTREAM once it holds 8 MiB', async (path) => {
    current = from(path);
    const got = await collect(`${down.url}/relay`, { timeout: 10_000 });
    expect(got.events).toEqual([]);
    const { error } = (await outcome)!;
    expect((error as SseGuardError).code).toBe('ERR_SSE_UPSTREAM');
    expect((error as Error).message).toContain('without ending an event');
    await waitFor('the upstream request to close', () => upstream.requests[0]?.closed === true, 1000);
  });

  it('an upstream cut mid-stream rejects with the fetch error, the events before it delivered', async () => {
    current = from('/cut');
    const got = await collect(`${down.url}/relay`, { timeout: 3000 });
    expect(got.events.map((e) => e.data)).toEqual(['before the cut']);
    const { error } = (await outcome)!;
    // fetch's own error (undici: TypeError "terminated"), not one of ours.
    expect((error as Error).message).toBe('terminated');
    expect(error).not.toBeInstanceOf(SseGuardError);
  });

  it("forwards the client's Last-Event-ID when the route passes it on (README recipe)", async () => {
    current = async (stream) => {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      if (stream.lastEventId !== undefined) headers['last-event-id'] = stream.lastEventId;
      const response = await fetch(`${up.url}/resume`, { headers, signal: stream.signal });
      return stream.relay(response);
    };
    const got = await collect(`${down.url}/relay`, { timeout: 3000, headers: { 'last-event-id': '5' } });
    expect(got.events.map((e) => [e.id, e.data])).toEqual([['6', 'after 5']]);
  });

  it('relays an event whose CR line end closes its chunk at once, and the last one of a body ending in CR', async () => {
    current = from('/cr-only');
    const got = await collect(`${down.url}/relay`, { timeout: 3000 });
    expect(got.events.map((e) => [e.id, e.data])).toEqual([['1', 'one'], [undefined, 'two']]);
    // Held until the next chunk, 600 ms later, when the CR is taken as maybe half of a CRLF.
    expect(got.events[0]!.at).toBeLessThan(400);
    expect((await outcome)?.value).toBe(2);
  });

  it.each([
    ['text', ['\uFEFFdata: first\n\n', 'data: second\n\n']],
    ['bytes', [Buffer.from('\uFEFFdata: first\n\n'), Buffer.from('data: second\n\n')]],
    ['text split after the BOM', ['\uFEFF', 'data: first\n\n', 'data: second\n\n']],
  ])('skips the byte order mark opening a body of %s, and keeps its first event', async (_what, chunks) => {
    current = (stream) => stream.relay(chunks as Array<string | Uint8Array>);
    const got = await collect(`${down.url}/relay`, { timeout: 3000 });
    expect(got.events.map((e) => e.data)).toEqual(['first', 'second']);
  });

  it("forwards an id-only block, which moves the client's Last-Event-ID without an event", async () => {
    current = (stream) => stream.relay(['id: 1\ndata: a\n\n', 'id: 2\n\n', ': comment\nid\n\n', 'data: b\n\n']);
    const body = await (await fetch(`${down.url}/relay`)).text();
    expect(body).toBe(':\nid: 1\ndata: a\n\nid: 2\n\nid: \n\ndata: b\n\n');
    expect((await outcome)?.value).toBe(2);
  });

  it.each([
    ['retry fields', 'retry: 1000\n\n'],
    ['id-only blocks', 'id: 7\n\n'],
    ['events (control)', 'data: 1000\n\n'],
  ])('waits for a client that stops reading, whatever the upstream sends: %s', async (_what, block) => {
    let pulled = 0;
    let stream: SseStream | undefined;
    const reasons: string[] = [];
    current = (s) => {
      stream = s;
      s.on('close', (reason) => reasons.push(reason));
      return s.relay((function* () {
        for (; pulled < 2000; pulled++) yield block.repeat(1000);
      })());
    };
    const client = await stalledClient(down.port, '/relay');
    try {
      let settled = -1;
      for (let i = 0; i < 40 && settled !== pulled; i++) {
        settled = pulled;
        await sleep(250);
      }
      expect(pulled).toBe(settled);
      expect(pulled).toBeLessThan(2000);
      // Sent regardless of the client, they would pile up past maxBufferedBytes: cut as a slow consumer.
      expect(reasons).toEqual([]);
      expect(stream!.closed).toBe(false);
    } finally {
      client.close();
    }
    await outcome;
  });

  it.each([
    ['null', null, 'got null'],
    ['undefined', undefined, 'got undefined'],
    ['a number', 42, 'got number'],
    ['a ReadableStream already being read', 'locked', 'already being read'],
    ['a Response whose body was read', 'used', 'already being read'],
  ])('rejects %s as the upstream with ERR_SSE_INVALID_OPTION naming what relay() takes', async (_what, upstreamArg, named) => {
    current = async (stream) => {
      let arg: unknown = upstreamArg;
      if (upstreamArg === 'locked') {
        const body = new ReadableStream<Uint8Array>();
        body.getReader();
        arg = body;
      } else if (upstreamArg === 'used') {
        const response = await fetch(`${up.url}/resume`);
        await response.text();
        arg = response;
      }
      return stream.relay(arg as Response);
    };
    const body = await (await fetch(`${down.url}/relay`)).text();
    expect(body).toBe(':\n');
    const { error } = (await outcome)!;
    expect((error as SseGuardError).code).toBe('ERR_SSE_INVALID_OPTION');
    expect((error as Error).message).toContain('relay() takes a fetch Response');
    expect((error as Error).message).toContain(named);
  });

  it('takes null options as none', async () => {
    current = (stream) => stream.relay(['data: a\n\n'], null as never);
    const got = await collect(`${down.url}/relay`, { timeout: 3000 });
    expect(got.events.map((e) => e.data)).toEqual(['a']);
  });

  it('rejects a map that is not a function before reading, and releases the upstream', async () => {
    current = (stream) => fetch(`${up.url}/silent`).then((response) => stream.relay(response, { map: 1 as unknown as undefined }));
    await (await fetch(`${down.url}/relay`)).text();
    expect(((await outcome)!.error as SseGuardError).code).toBe('ERR_SSE_INVALID_OPTION');
    await waitFor('the upstream request to close', () => upstream.requests[0]?.closed === true, 1000);
  });
});

describe('relay() cutting the body anywhere', () => {
  /** What relay() writes for `chunks`, through a sink that serializes as a stream does. */
  async function relayed(chunks: Uint8Array[]): Promise<string> {
    let out = '';
    const sink: RelaySink<AnyEvents> = {
      closed: false,
      send: (event) => ((out += typeof event === 'string' ? serializeEvent({ data: event }) : serializeEvent(event as SseEvent)), true),
      retry: (ms) => ((out += `retry: ${ms}\n\n`), true),
      [sendIdOnly]: (id) => ((out += `id: ${id}\n\n`), true),
      ready: () => Promise.resolve(),
      close: () => {},
      on: () => sink,
      off: () => sink,
    };
    await relayInto(sink, chunks);
    return out;
  }

  // Every line end, CR LF split from its LF, the blank line right after a CRLF, a BOM, an id-only block.
  const bodies: Array<[string, string]> = [
    ['data: a\r\n\ndata: b\n\n', 'data: a\n\ndata: b\n\n'],
    ['id: 1\rdata: one\r\rdata: two\r\r', 'id: 1\ndata: one\n\ndata: two\n\n'],
    ['\uFEFFdata: x\r\n\r\nid: 7\n\ndata: y\n\n', 'data: x\n\nid: 7\n\ndata: y\n\n'],
    ['data: a\r\n\r\ndata: b\n\r\ndata: c\r\r\nretry: 5\r\r', 'data: a\n\ndata: b\n\ndata: c\n\nretry: 5\n\n'],
    ['data: é✓\r\n\r\nid\r\rdata: z\n\n', 'data: é✓\n\nid: \n\ndata: z\n\n'],
  ];

  it.each(bodies)('relays %j the same in one chunk, cut in two at every byte, and in three around each line end', async (body, expected) => {
    const bytes = Buffer.from(body);
    expect(await relayed([bytes])).toBe(expected);
    const differing: string[] = [];
    for (let i = 1; i < bytes.length; i++) {
      if ((await relayed([bytes.subarray(0, i), bytes.subarray(i)])) !== expected) differing.push(`${i}`);
      if (bytes[i] !== 0x0a && bytes[i] !== 0x0d) continue;
      // A chunk that is one line-end byte alone, between two others.
      const three = [bytes.subarray(0, i), bytes.subarray(i, i + 1), bytes.subarray(i + 1)];
      if ((await relayed(three)) !== expected) differing.push(`${i}|${i + 1}`);
    }
    expect(differing).toEqual([]);
  });
});

describe('relay() without eventsource-parser installed', () => {
  it('rejects with ERR_SSE_MISSING_PEER naming the install command, and releases the upstream', async () => {
    let closed = false;
    const up = await listen((_req, res) => {
      res.on('close', () => (closed = true));
      res.writeHead(200, { 'Content-Type': 'text/event-stream' }).write('data: x\n\n');
    });
    let isolated: typeof import('../src/index') | undefined;
    jest.isolateModules(() => {
      jest.doMock('eventsource-parser', () => {
        throw Object.assign(new Error("Cannot find module 'eventsource-parser'"), { code: 'MODULE_NOT_FOUND' });
      });
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      isolated = require('../src/index') as typeof import('../src/index');
    });
    let result: Promise<{ value?: number; error?: unknown }> | undefined;
    const app = express();
    app.get('/relay', isolated!.sse({ heartbeat: false }), (_req, res) => {
      result = settle(fetch(up.url).then((response) => res.sse.relay(response))).finally(() => res.sse.close());
    });
    const down = await listen(app);
    try {
      expect(await (await fetch(`${down.url}/relay`)).text()).toBe(':\n');
      const { error } = (await result)!;
      expect((error as SseGuardError).code).toBe('ERR_SSE_MISSING_PEER');
      expect((error as Error).message).toContain('npm install eventsource-parser');
      await waitFor('the upstream request to close', () => closed, 1000);
    } finally {
      jest.dontMock('eventsource-parser');
      await down.close();
      await up.close();
    }
  });
});
