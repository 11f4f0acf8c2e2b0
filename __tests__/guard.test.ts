// guard(): event streams that other code writes, recognised however their type is set, made to pass
// compression and proxies at once, in both mount orders; every other response left byte for byte.
import compression from 'compression';
import type { Express, RequestHandler } from 'express';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http, { type ServerResponse } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { guard, stats, type GuardOptions, type SseOptions } from '../src/index';
import { collect, type Collected } from '../src/testing';
import { expressVersions } from './helpers/express';
import { exchangeBytes } from './helpers/raw';
import { listen, waitFor, type TestServer } from './helpers/server';
import { naiveSse } from './helpers/streams';

const BROWSER = { 'accept-encoding': 'gzip, deflate, br' };

/** How the app stacks compression() and guard(). */
type Stack = 'guard() before compression()' | 'guard() after compression()' | 'compression() alone';
const GUARDED: Stack[] = ['guard() before compression()', 'guard() after compression()'];

/** An app with compression() and (unless `stack` says otherwise) guard() mounted in the given order. */
export function stacked(express: () => Express, stack: Stack, options: GuardOptions = {}): Express {
  const app = express();
  if (stack === 'guard() before compression()') app.use(guard(options));
  app.use(compression());
  if (stack === 'guard() after compression()') app.use(guard(options));
  return app;
}

// A held stream shows up only when its response ends (seconds later) or never; a released one in
// well under a second even on a loaded machine.
function expectPrompt(result: Collected): void {
  expect(result.events.length).toBeGreaterThan(0);
  expect(result.events[0]!.at).toBeLessThan(700);
}

/** A route that sets its type one particular way, writes one event at once and then every 200 ms. */
function producer(setType: (res: ServerResponse & { set?: unknown }) => void): RequestHandler {
  return (_req, res) => {
    setType(res);
    res.write('data: first\n\n');
    const timer = setInterval(() => res.write('data: more\n\n'), 200);
    res.on('close', () => clearInterval(timer));
  };
}

const WAYS: Array<[string, (res: ServerResponse & Record<string, any>) => void]> = [
  ['setHeader', (res) => res.setHeader('Content-Type', 'text/event-stream')],
  ['appendHeader', (res) => res.appendHeader('content-type', 'text/event-stream; charset=utf-8')],
  ['setHeaders with a Map', (res) => res.setHeaders(new Map([['Content-Type', 'text/event-stream'], ['Cache-Control', 'no-cache']]))],
  ['res.set', (res) => res.set('Content-Type', 'text/event-stream')],
  ['res.type', (res) => res.type('text/event-stream')],
  ['writeHead with an object', (res) => res.writeHead(200, { 'content-type': 'TEXT/EVENT-STREAM', 'cache-control': 'no-cache' })],
  ['writeHead with a reason phrase', (res) => res.writeHead(200, 'OK', { 'Content-Type': 'text/event-stream' })],
  ['writeHead with an array of pairs', (res) => res.writeHead(200, [['Content-Type', 'text/event-stream'], ['Cache-Control', 'no-cache']])],
  ['writeHead with a flat array', (res) => res.writeHead(200, ['Content-Type', 'text/event-stream', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'])],
];

describe.each(expressVersions)('guard() (%s)', (_name, express) => {
  describe.each(GUARDED)('%s', (stack) => {
    let srv: TestServer;
    beforeAll(async () => {
      const app = stacked(express, stack);
      WAYS.forEach(([, setType], i) => app.get(`/way/${i}`, producer(setType)));
      app.get('/naive', naiveSse());
      app.get('/cache-control-later', producer((res) => {
        res.setHeader('Content-Type', 'text/event-stream');
        res.setHeader('Cache-Control', 'private, max-age=0');
      }));
      app.get('/cache-control-first', producer((res) => {
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('Content-Type', 'text/event-stream');
      }));
      app.get('/own-accel', naiveSse({ headers: { 'X-Accel-Buffering': 'yes' } }));
      srv = await listen(app);
    });
    afterAll(() => srv.close());

    // Asked for as EventSource asks (disarmed on entry), and as fetch() asks (recognised by its type alone).
    const asked = WAYS.flatMap(([way], i) => ['text/event-stream', '*/*'].map((accept) => [way, accept, i] as const));
    it.each(asked)('recognises a type set by %s (Accept: %s), and the stream arrives at once, uncompressed', async (_way, accept, i) => {
      const result = await collect(`${srv.url}/way/${i}`, { count: 1, timeout: 3000, headers: { ...BROWSER, accept } });
      expectPrompt(result);
      expect(result.headers['content-encoding']).toBeUndefined();
      expect(result.headers['cache-control']).toMatch(/no-transform/);
      expect(result.headers['x-accel-buffering']).toBe('no');
    });

    it('keeps both Set-Cookie values of writeHead’s flat array form', async () => {
      const result = await collect(`${srv.url}/way/${WAYS.length - 1}`, { count: 1, timeout: 3000 });
      expect(result.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    });

    it('releases the tutorial route (writeHead + res.write) at once, keeping its own Cache-Control', async () => {
      const result = await collect(`${srv.url}/naive`, { count: 1, timeout: 3000, headers: BROWSER });
      expectPrompt(result);
      expect(result.headers['cache-control']).toBe('no-cache, no-transform');
      expect(result.headers.connection).toBe('keep-alive');
    });

    it('merges no-transform again when Cache-Control is set after the type', async () => {
      const result = await collect(`${srv.url}/cache-control-later`, { count: 1, timeout: 3000, headers: BROWSER });
      expectPrompt(result);
      expect(result.headers['cache-control']).toBe('private, max-age=0, no-transform');
    });

    it('merges no-transform into a Cache-Control set before the type', async () => {
      const result = await collect(`${srv.url}/cache-control-first`, { count: 1, timeout: 3000, headers: BROWSER });
      expect(result.headers['cache-control']).toBe('no-store, no-transform');
    });

    it('keeps an X-Accel-Buffering the producer set', async () => {
      const result = await collect(`${srv.url}/own-accel`, { count: 1, timeout: 3000 });
      expect(result.headers['x-accel-buffering']).toBe('yes');
    });
  });

  describe('control: compression() alone', () => {
    let srv: TestServer;
    beforeAll(async () => {
      const app = stacked(express, 'compression() alone');
      app.get('/naive', naiveSse());
      srv = await listen(app);
    });
    afterAll(() => srv.close());

    it('holds the tutorial route, headers included: nothing within a second', async () => {
      await expect(collect(`${srv.url}/naive`, { count: 1, timeout: 1000, headers: BROWSER })).rejects.toThrow(/no response within/);
    });
  });

  // The header watch sits on Node's response prototypes for the whole process once guard() was
  // called: a response whose request no guard() saw must not notice it.
  describe('a stream outside every guard() is left as it is', () => {
    let srv: TestServer;
    let bare: TestServer;
    beforeAll(async () => {
      const app = express();
      app.use(compression());
      app.use('/guarded', express.Router().use(guard()).get('/naive', naiveSse()));
      app.get('/elsewhere', naiveSse());
      srv = await listen(app);
      bare = await listen(naiveSse() as unknown as http.RequestListener);
    });
    afterAll(async () => {
      await srv.close();
      await bare.close();
    });

    it('guards the route under the router that mounts guard()', async () => {
      const result = await collect(`${srv.url}/guarded/naive`, { count: 1, timeout: 3000, headers: BROWSER });
      expectPrompt(result);
      expect(result.headers['x-accel-buffering']).toBe('no');
    });

    it('leaves a route of the same app outside that router held by compression, as without guard()', async () => {
      await expect(collect(`${srv.url}/elsewhere`, { count: 1, timeout: 1000, headers: BROWSER })).rejects.toThrow(/no response within/);
    });

    it('still calls a setHeader patched onto OutgoingMessage.prototype after guard() (an APM agent, say)', async () => {
      const proto = http.OutgoingMessage.prototype as { setHeader: (...args: unknown[]) => unknown };
      const patched = proto.setHeader;
      const seen: string[] = [];
      proto.setHeader = function (this: unknown, ...args: unknown[]) {
        seen.push(String(args[0]));
        return patched.apply(this, args);
      };
      try {
        const result = await collect(`${srv.url}/guarded/naive`, { count: 1, timeout: 3000, headers: BROWSER });
        expect(result.headers['x-accel-buffering']).toBe('no');
        expect(seen).toEqual(expect.arrayContaining(['Content-Type', 'X-Accel-Buffering']));
      } finally {
        proto.setHeader = patched;
      }
    });

    // Node then reads the headers from the third place, and sets them one by one through setHeader,
    // as Express set X-Powered-By before (compression's hook would drop them: it reads the second).
    it('guards writeHead(status, undefined, headers) without compression()', async () => {
      const app = express();
      app.use(guard({ heartbeat: false }));
      app.get('/undefined-reason', producer((res) => res.writeHead(200, undefined as never, { 'Content-Type': 'text/event-stream' })));
      // Node reads the third argument only; an object in second place is not headers.
      app.get('/object-reason', producer((res) => res.writeHead(200, { 'X-Ignored': '1' } as never, { 'Content-Type': 'text/event-stream' })));
      const plain = await listen(app);
      try {
        const ignored = await collect(`${plain.url}/object-reason`, { count: 1, timeout: 3000 });
        expect(ignored.headers['x-accel-buffering']).toBe('no');
        expect(ignored.headers['x-ignored']).toBeUndefined();
        await waitFor('the stream to leave stats()', () => stats().open === 0);
        // Open for 400 ms (three events 200 ms apart), or until the timeout if the events are held.
        const reading = collect(`${plain.url}/undefined-reason`, { count: 3, timeout: 3000 });
        await waitFor('the stream to join stats()', () => stats().open === 1);
        const result = await reading;
        expect(result.headers['x-accel-buffering']).toBe('no');
        expect(result.headers['cache-control']).toBe('no-transform');
      } finally {
        await plain.close();
      }
    });

    it('leaves req.headers fit for fetch: Node 20 rejects a headers object with any symbol key', async () => {
      const app = express();
      app.use(compression(), guard());
      // As a route that forwards the client's headers upstream does.
      app.get('/forward', (req, res) => {
        const { host: _host, ...copy } = req.headers;
        const accept = (init: object) => new Headers(init as Record<string, string>).get('accept');
        res.json({ headers: accept(req.headers), copy: accept(copy) });
      });
      const forward = await listen(app);
      try {
        const answer = await fetch(`${forward.url}/forward`, { headers: { accept: 'application/json' } });
        expect(answer.status).toBe(200);
        expect(await answer.json()).toEqual({ headers: 'application/json', copy: 'application/json' });
      } finally {
        await forward.close();
      }
    });

    it('leaves a plain node:http server of the same process without a header of its own', async () => {
      const result = await collect(bare.url, { count: 1, timeout: 3000 });
      expect(result.headers['x-accel-buffering']).toBeUndefined();
      expect(result.headers['cache-control']).toBe('no-cache');
    });
  });

  describe('every other response is left byte for byte as it was', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-guard-static-'));
    fs.writeFileSync(path.join(dir, 'page.html'), `<!doctype html><p>${'static '.repeat(400)}</p>\n`);
    fs.utimesSync(path.join(dir, 'page.html'), new Date(1_700_000_000_000), new Date(1_700_000_000_000));
    const servers = new Map<Stack, TestServer>();

    beforeAll(async () => {
      for (const stack of [...GUARDED, 'compression() alone'] as Stack[]) {
        const app = stacked(express, stack);
        app.get('/json', (_req, res) => void res.json({ hello: 'world', list: Array.from({ length: 300 }, (_, i) => i) }));
        app.get('/small', (_req, res) => void res.json({ ok: true }));
        app.use('/static', express.static(dir));
        app.get('/html', (_req, res) => {
          res.type('html');
          res.write('<!doctype html><ul>');
          let n = 0;
          const timer = setInterval(() => {
            res.write(`<li>${'item '.repeat(50)}${n}</li>`);
            if (++n === 5) {
              clearInterval(timer);
              res.end('</ul>');
            }
          }, 20);
          res.on('close', () => clearInterval(timer));
        });
        app.get('/head-array', (_req, res) => void res.writeHead(201, ['Content-Type', 'text/plain', 'X-A', '1', 'X-A', '2']).end('made'));
        // An event stream at first, then an HTML page after all, its head out before its first byte.
        app.get('/stream-then-html', (_req, res) => {
          res.setHeader('Cache-Control', 'no-cache');
          res.type('text/event-stream');
          res.type('html');
          res.flushHeaders();
          let n = 0;
          const timer = setInterval(() => {
            res.write(`<p>${'late '.repeat(50)}${n}</p>\n`);
            if (++n === 3) {
              clearInterval(timer);
              res.end();
            }
          }, 20);
          res.on('close', () => clearInterval(timer));
        });
        // Cache-Control appended to after the guard merged no-transform in (Express's res.append reads it back).
        app.get('/stream-appended-then-text', (_req, res) => {
          res.type('text/event-stream');
          res.append('Cache-Control', 'max-age=5');
          res.status(500).type('text/plain').send(`oops ${'x'.repeat(2000)}`);
        });
        // Its own no-transform, set before the type: it stays when the type changes away.
        app.get('/stream-own-no-transform-then-json', (_req, res) => {
          res.setHeader('Cache-Control', 'no-cache, no-transform');
          res.setHeader('Content-Type', 'text/event-stream');
          res.status(500).type('json').send(JSON.stringify({ error: 'x'.repeat(2000) }));
        });
        app.get('/stream-then-json-in-head', (_req, res) => {
          res.setHeader('Content-Type', 'text/event-stream');
          res.writeHead(500, { 'Content-Type': 'application/json' });
          setTimeout(() => res.end(JSON.stringify({ error: 'x'.repeat(2000) })), 20);
        });
        // A head Node refuses (a broken upstream relayed), then an error page: as without the guard
        // (for a status Node refuses, below: compression() alone then never answers).
        const refusedHead = (status: number, headers: Record<string, string>): RequestHandler => (_req, res) => {
          try {
            res.writeHead(status, { 'Content-Type': 'text/event-stream', ...headers });
          } catch (error) {
            res.status(502).type('text/plain').send(`bad gateway (${(error as { code?: string }).code}) ${'x'.repeat(2000)}`);
          }
        };
        app.get('/stream-head-refused-header', refusedHead(200, { 'X-Upstream': 'internal', 'X-Bad': 'a\nb' }));
        // Header values missing from a config: Node refuses undefined.
        app.get('/stream-undefined-headers', (_req, res) => {
          res.setHeader('Content-Type', 'text/event-stream');
          const outcome = ['X-Request-Id', 'Cache-Control'].map((name) => {
            try {
              res.setHeader(name, undefined as unknown as string);
              return `${name} taken`;
            } catch (error) {
              return `${name} refused (${(error as { code?: string }).code})`;
            }
          });
          res.status(500).type('text/plain').send(`${outcome.join(', ')} ${'x'.repeat(2000)}`);
        });
        servers.set(stack, await listen(app));
      }
    });
    afterAll(async () => {
      await Promise.all([...servers.values()].map((s) => s.close()));
      fs.rmSync(dir, { recursive: true, force: true });
    });

    // Everything but the Date header, which changes with the second.
    const fetchRaw = async (stack: Stack, request: string): Promise<Buffer> => {
      const raw = await exchangeBytes(servers.get(stack)!.port, request, 3000);
      const text = raw.toString('latin1').replace(/\r\nDate: [^\r]*/i, '');
      return Buffer.from(text, 'latin1');
    };
    const get = (target: string, extra = ''): string =>
      `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\nConnection: close\r\n${extra}\r\n`;

    it.each([
      ['a compressed JSON response', get('/json')],
      ['a small JSON response', get('/small')],
      ['a static file', get('/static/page.html')],
      ['a 304 Not Modified', get('/static/page.html', 'If-Modified-Since: Wed, 01 Jan 2048 00:00:00 GMT\r\n')],
      ['a streamed HTML page', get('/html')],
      ['writeHead with a header array', get('/head-array')],
      ['a 404', get('/nowhere')],
      ['a HEAD request', get('/json').replace('GET', 'HEAD')],
      ['a response whose type was text/event-stream until it changed before the head', get('/stream-then-html')],
      ['a response whose text/event-stream type writeHead replaced', get('/stream-then-json-in-head')],
      ['a response whose Cache-Control was appended to while it was text/event-stream', get('/stream-appended-then-text')],
      ['a response given its own no-transform before it was text/event-stream', get('/stream-own-no-transform-then-json')],
      ['an error page after a text/event-stream head refused for a header value', get('/stream-head-refused-header')],
      ['a text/event-stream response given undefined header values, which Node refuses', get('/stream-undefined-headers')],
    ])('%s', async (_what, request) => {
      const without = await fetchRaw('compression() alone', request);
      expect(without.length).toBeGreaterThan(60);
      for (const stack of GUARDED) expect((await fetchRaw(stack, request)).equals(without)).toBe(true);
    });
  });
});

// A head Node's writeHead refuses (a broken upstream relayed), then an error page: the page must go
// out as without the guard, with nothing of the refused head folded in. On a plain Node server
// (no header set before the head) and on Express (X-Powered-By set before: Node's other path).
describe('a text/event-stream head Node refuses', () => {
  const BOTH = ['Node', 'Express'] as const;
  const HEADS: Array<[string, (res: ServerResponse) => void, ReadonlyArray<'Node' | 'Express'>]> = [
    ['for its status', (res) => res.writeHead(1000, { 'Content-Type': 'text/event-stream', 'X-Upstream': 'internal' }), BOTH],
    ['for its reason phrase', (res) => res.writeHead(200, 'OK\r\nX-Injected: 1', { 'Content-Type': 'text/event-stream', 'X-Upstream': 'internal' }), BOTH],
    ['for a flat header array of odd length', (res) => res.writeHead(200, ['Content-Type', 'text/event-stream', 'X-Upstream']), BOTH],
    // Node's other path (a header set before) takes it, as one more header line.
    ['for an undefined value in a list', (res) => res.writeHead(200, { 'Content-Type': 'text/event-stream', 'X-Upstream': ['a', undefined as never] }), ['Node']],
  ];
  const relay = (writeHead: (res: ServerResponse) => void) => (res: ServerResponse): void => {
    try {
      writeHead(res);
    } catch (error) {
      res.statusCode = 502;
      // Node keeps a refused reason phrase, and would refuse the page's head for it too.
      res.statusMessage = 'Bad Gateway';
      res.setHeader('Content-Type', 'text/plain');
      res.end(`bad gateway (${(error as { code?: string }).code})`);
    }
  };
  const answer = async (handler: http.RequestListener): Promise<string> => {
    const srv = await listen(handler);
    try {
      const raw = await exchangeBytes(srv.port, 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', 3000);
      return raw.toString('latin1').replace(/\r\nDate: [^\r]*/i, '');
    } finally {
      await srv.close();
    }
  };
  const onNode = (withGuard: boolean, route: (res: ServerResponse) => void): http.RequestListener => {
    const middleware = guard({ heartbeat: false });
    return (req, res) => (withGuard ? middleware(req as never, res as never, () => route(res)) : route(res));
  };
  const onExpress = (withGuard: boolean, route: (res: ServerResponse) => void): http.RequestListener => {
    const app = expressVersions[0]![1]();
    if (withGuard) app.use(guard({ heartbeat: false }));
    app.get('/', (_req, res) => route(res));
    return app;
  };

  it.each(HEADS.flatMap(([what, head, ons]) => ons.map((on) => [what, on, head] as const)))('%s (%s): the error page sent instead is as without guard()', async (_what, on, head) => {
    const make = on === 'Node' ? onNode : onExpress;
    const without = await answer(make(false, relay(head)));
    expect(without).toMatch(/^HTTP\/1\.1 502 .*bad gateway \(ERR_[A-Z_]+\)$/s);
    expect(await answer(make(true, relay(head)))).toBe(without);
  });
});

describe('guard() adds nothing to what Node and Express give', () => {
  const root = path.join(__dirname, '..');
  // Each in a process of its own, as the wrappers guard() puts on the response classes stay for the process.
  const run = (args: string[]): string => execFileSync(process.execPath, ['--import', 'tsx', ...args], { cwd: root, timeout: 30_000 }).toString();

  it.each(['express', 'express4'])(
    'leaves no property on a request, its headers or a response that is not an event stream (%s, against the same app before any guard())',
    (module) => {
      const [without, within] = JSON.parse(run([path.join('__tests__', 'helpers', 'own-keys.ts'), module])) as [unknown[], unknown[]];
      expect(without).toHaveLength(2);
      expect(within).toEqual(without);
    },
  );

  it("changes nothing of Node's when the package is loaded: the first guard() call wraps the response classes", () => {
    const script = `const http = require('node:http');
const keys = () => Reflect.ownKeys(http.ServerResponse.prototype).map(String).sort().join();
const before = keys();
const { guard } = require('./src/index.ts');
const loaded = keys();
guard();
console.log(JSON.stringify({ loaded: loaded === before, called: keys() !== before }));`;
    expect(JSON.parse(run(['-e', script]))).toEqual({ loaded: true, called: true });
  });
});

function revokedProxy(): object {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

describe('guard() options', () => {
  it.each([
    ['an unknown compression policy', { compression: 'zip' }],
    ['a heartbeat of 0', { heartbeat: 0 }],
    ['a heartbeat past the timer limit (2^31 ms)', { heartbeat: 2 ** 31 }],
    ['a negative maxBufferedBytes', { maxBufferedBytes: -1 }],
    ['a logger that is not a function', { logger: 'console' }],
    ['options that are not an object', null],
    ['a compression policy that String() cannot convert (an object without a prototype)', { compression: Object.create(null) }],
    ['a maxBufferedBytes that String() cannot convert (an object without a prototype)', { maxBufferedBytes: Object.create(null) }],
    ['a heartbeat that is a revoked Proxy (even Object.prototype.toString throws on it)', { heartbeat: revokedProxy() }],
  ])('rejects %s at startup with ERR_SSE_INVALID_OPTION', (_what, options) => {
    expect(() => guard(options as GuardOptions)).toThrow(expect.objectContaining({ code: 'ERR_SSE_INVALID_OPTION' }));
  });

  it('accepts maxBufferedBytes 0 (cut as soon as anything piles up) and heartbeat false', () => {
    expect(typeof guard({ maxBufferedBytes: 0, heartbeat: false })).toBe('function');
  });

  it("ignores sse()'s own options, as sse() ignores what it does not know: a padding above maxBufferedBytes is no error here", () => {
    expect(typeof guard({ maxBufferedBytes: 5, padding: 10, probe: 'yes' } as GuardOptions)).toBe('function');
    // One SseOptions object serves both; a literal naming sse()'s own options is refused by the type.
    const shared: SseOptions = { heartbeat: 5000, padding: 2048, compression: 'flush' };
    expect(typeof guard(shared)).toBe('function');
    // @ts-expect-error padding is not one of guard()'s options
    expect(typeof guard({ heartbeat: 5000, padding: 2048 })).toBe('function');
  });
});
