// What an open stream keeps per connection: nothing a user cannot reach is held, and everything a
// user can reach still answers. The memory figures themselves are in the bench (scenario C).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Channel, sse, type SseStream } from '../src/index';
import { expressVersions } from './helpers/express';
import { rawHead, stalledClient } from './helpers/raw';
import { listen, waitFor, type TestServer } from './helpers/server';

type Res = ServerResponse & { sse: SseStream };
const headerLines = (head: string, name: string): string[] => head.split('\r\n').filter((line) => line.toLowerCase().startsWith(`${name}:`));

describe('the response head on bare node:http', () => {
  let srv: TestServer;
  const seen: Array<{ path: string; names: string[]; contentType: unknown }> = [];

  beforeAll(async () => {
    const plain = sse();
    const custom = sse({ headers: { 'content-type': 'text/event-stream', 'CACHE-CONTROL': 'no-cache, no-transform, private', 'X-Extra': ['a', 'b'] } });
    srv = await listen((req: IncomingMessage, res: ServerResponse) => {
      const url = req.url ?? '/';
      // A header set upstream (CORS, a framework) keeps the head in the response's header map.
      if (url.includes('preset')) res.setHeader('X-Before', '1');
      (url.includes('custom') ? custom : plain)(req, res, () => {
        seen.push({ path: url, names: res.getHeaderNames(), contentType: res.getHeader('content-type') });
        (res as Res).sse.send('hi');
      });
    });
  });
  afterAll(() => srv.close());

  test('with no header set before, the head goes out whole and no header map is kept per stream', async () => {
    const head = await rawHead(srv.port, '/plain');
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(headerLines(head, 'content-type')).toEqual(['Content-Type: text/event-stream; charset=utf-8']);
    expect(headerLines(head, 'cache-control')).toEqual(['Cache-Control: no-cache, no-transform']);
    expect(headerLines(head, 'x-accel-buffering')).toEqual(['X-Accel-Buffering: no']);
    expect(headerLines(head, 'connection')).toEqual(['Connection: keep-alive']);
    await waitFor('the handler', () => seen.some((s) => s.path === '/plain'));
    expect(seen.find((s) => s.path === '/plain')!.names).toEqual([]);
  });

  test('with a header set before, every header stays readable with getHeader()', async () => {
    const head = await rawHead(srv.port, '/preset');
    expect(headerLines(head, 'x-before')).toEqual(['X-Before: 1']);
    expect(headerLines(head, 'content-type')).toHaveLength(1);
    await waitFor('the handler', () => seen.some((s) => s.path === '/preset'));
    const preset = seen.find((s) => s.path === '/preset')!;
    expect(preset.contentType).toBe('text/event-stream; charset=utf-8');
    expect(preset.names).toEqual(expect.arrayContaining(['x-before', 'content-type', 'cache-control', 'x-accel-buffering', 'connection']));
  });

  test.each(['/custom', '/custom-preset'])('the headers option replaces a default in any letter case, one line each (%s)', async (path) => {
    const head = await rawHead(srv.port, path);
    expect(headerLines(head, 'content-type')).toEqual(['content-type: text/event-stream']);
    expect(headerLines(head, 'cache-control')).toEqual(['CACHE-CONTROL: no-cache, no-transform, private']);
    expect(headerLines(head, 'x-extra')).toEqual(['X-Extra: a', 'X-Extra: b']);
  });
});

describe.each(expressVersions)('what stays reachable on %s', (_name, express) => {
  test('res.locals, req and getHeader() in the handler after sse()', async () => {
    const app = express();
    let reached: unknown;
    app.get(
      '/events',
      (_req, res, next) => {
        res.locals.user = 'ada';
        next();
      },
      sse(),
      (req, res) => {
        reached = { user: res.locals.user, path: req.path, contentType: res.getHeader('content-type') };
        res.sse.close();
      },
    );
    const srv = await listen(app);
    try {
      await rawHead(srv.port, '/events');
      await waitFor('the handler', () => reached !== undefined);
      expect(reached).toEqual({ user: 'ada', path: '/events', contentType: 'text/event-stream; charset=utf-8' });
    } finally {
      await srv.close();
    }
  });
});

describe('close listeners', () => {
  test("are called with `this` set to the stream, as an EventEmitter's are, and off() removes only the one given", async () => {
    const calls: Array<[string, unknown]> = [];
    let stream: SseStream | undefined;
    const srv = await listen((req, res) =>
      sse()(req, res, () => {
        stream = (res as Res).sse;
        const removed = (): void => void calls.push(['removed', undefined]);
        stream.on('close', function (this: unknown) {
          calls.push(['first', this]);
        });
        stream.on('close', removed);
        stream.on('close', function (this: unknown) {
          calls.push(['third', this]);
        });
        stream.off('close', removed);
        stream.close();
      }),
    );
    try {
      await rawHead(srv.port, '/');
      await waitFor('the listeners', () => calls.length >= 2);
      expect(calls).toEqual([
        ['first', stream],
        ['third', stream],
      ]);
      // A listener added after the close is still told, on a microtask, with the same `this`.
      const late = await new Promise<unknown>((resolve) =>
        stream!.on('close', function (this: unknown) {
          resolve(this);
        }),
      );
      expect(late).toBe(stream);
    } finally {
      await srv.close();
    }
  });

  test('a Channel forgets each subscriber that closes, through its one shared listener', async () => {
    const channel = new Channel();
    const streams: SseStream[] = [];
    const srv = await listen((req, res) =>
      sse()(req, res, () => {
        streams.push((res as Res).sse);
        channel.subscribe((res as Res).sse);
      }),
    );
    const clients = await Promise.all([1, 2, 3].map(() => stalledClient(srv.port, '/')));
    try {
      await waitFor('three subscribers', () => channel.size === 3);
      streams[1]!.close();
      expect(channel.size).toBe(2);
      for (const client of clients) client.close();
      await waitFor('the clients gone', () => channel.size === 0);
    } finally {
      for (const client of clients) client.close();
      await channel.close();
      await srv.close();
    }
  });
});
