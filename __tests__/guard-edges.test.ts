// guard() at the edges: events that end in CRLF, headers in any order on HTTP/2, a producer that
// writes its head after its HTTP/2 client left, and a producer that ends its response after
// shutdown() did; and sse()'s refusal after shutdown() on HTTP/2.
import compression from 'compression';
import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { guard, shutdown, stats } from '../src/index';
import { rawRequest } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

// Node's HTTP/2 layer warns (process.emitWarning) when it drops a forbidden header; jest's sandbox
// does not see the warnings of Node's own modules, so the HTTP/2 checks run in a child process, on
// the source as the other tests are (through tsx).
const SOURCE = path.join(__dirname, '..', 'src', 'index.ts');

/** Runs `body` (with `sseGuard` = the package, `http2`, and `get(port, path)` resolving to the status) in a child; its warnings and output. */
function inChild(body: string): Promise<{ warnings: string[]; stdout: string }> {
  const script = `
    const http2 = require('node:http2');
    const sseGuard = require(${JSON.stringify(SOURCE)});
    const get = (port, path) => new Promise((resolve, reject) => {
      const session = http2.connect('http://127.0.0.1:' + port);
      session.on('error', reject);
      const req = session.request({ ':path': path, accept: 'text/event-stream' });
      req.on('response', (headers) => { const status = headers[':status']; req.close(); session.close(); resolve(status); });
      req.end();
    });
    (async () => { ${body} })().then(() => process.exit(0), (error) => { console.error(error); process.exit(1); });
  `;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', '-e', script], { cwd: path.join(__dirname, '..'), timeout: 20_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${error.message}\n${stderr}`));
      else resolve({ warnings: stderr.split('\n').filter((line) => /Warning:/.test(line)), stdout: stdout.trim() });
    });
  });
}

describe('guard() heartbeats after events that end in CRLF', () => {
  let srv: TestServer;
  beforeAll(async () => {
    const app = express();
    app.use(guard({ heartbeat: 100 }));
    const route = (...writes: string[]) => (_req: express.Request, res: express.Response) => {
      res.setHeader('Content-Type', 'text/event-stream');
      for (const chunk of writes) res.write(chunk);
    };
    app.get('/lf', route('data: hi\n\n'));
    app.get('/crlf', route('data: hi\r\n\r\n'));
    app.get('/crlf-split', route('data: hi\r', '\n\r', '\n'));
    app.get('/cr', route('data: hi\r\r'));
    app.get('/inside', route('data: hi\r\n'));
    // One CRLF split across two writes: one line end, not two.
    app.get('/inside-split', route('data: hi\r', '\n'));
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  async function bodyAfter(path: string, ms: number): Promise<string> {
    const exchange = await rawRequest(srv.port, `GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`);
    await sleep(ms);
    exchange.close();
    const text = exchange.text();
    return text.slice(text.indexOf('\r\n\r\n') + 4);
  }

  it.each(['/lf', '/crlf', '/crlf-split', '/cr'])('beats on an idle stream whose last event ended as %s does', async (path) => {
    const body = await bodyAfter(path, 600);
    expect(body).toMatch(/^data: hi(\r\n\r\n|\n\n|\r\r):\n(:\n)+$/);
  });

  it.each([
    ['/inside', 'data: hi\r\n'],
    ['/inside-split', 'data: hi\r\n'],
  ])('never beats inside an event: %s, a data line not yet closed by a blank line', async (path, body) => {
    expect(await bodyAfter(path, 600)).toBe(body);
  });
});

describe('guard() on HTTP/2 with a hop-by-hop header before Content-Type in writeHead', () => {
  it('drops it without a warning from the HTTP/2 layer', async () => {
    const { warnings, stdout } = await inChild(`
      const guarded = sseGuard.guard({ heartbeat: false });
      const server = http2.createServer((req, res) => guarded(req, res, () => {
        res.writeHead(200, { Connection: 'keep-alive', 'Content-Type': 'text/event-stream' });
        res.write('data: x\\n\\n');
      }));
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      console.log(await get(server.address().port, '/'));
      server.close();
    `);
    expect(stdout).toBe('200');
    expect(warnings.filter((w) => /connection header/i.test(w))).toEqual([]);
  });
});

type Layer = (req: never, res: never, next: () => void) => void;

/** An HTTP/2 server that runs `layers` (guard(), compression()) and then `route` for each request, and a session to it; `close()` ends both. */
async function http2Through(layers: Layer[], route: (res: http2.Http2ServerResponse) => void): Promise<{ session: http2.ClientHttp2Session; close: () => Promise<void> }> {
  const server = http2.createServer((req, res) => {
    let i = 0;
    const next = (): void => {
      const layer = layers[i++];
      if (layer !== undefined) layer(req as never, res as never, next);
      else route(res);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return {
    session,
    close: async () => {
      session.close();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('guard() on HTTP/2, a chunk given to end()', () => {
  // Node's HTTP/2 end() writes its chunk through res.write, which is the guard's by then.
  it.each([
    ['without compression()', [guard({ heartbeat: false })], 'data: first\n\ndata: last\n\n'],
    ['behind compression()', [compression(), guard({ heartbeat: false })], 'data: first\n\ndata: last\n\n'],
  ])('arrives, %s', async (_how, layers, expected) => {
    const { session, close } = await http2Through(layers, (res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write('data: first\n\n');
      res.end('data: last\n\n');
    });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ':path': '/', accept: 'text/event-stream' });
        let text = '';
        req.setEncoding('utf8');
        req.on('data', (chunk: string) => (text += chunk));
        req.on('end', () => resolve(text));
        req.on('error', reject);
        req.end();
      });
      expect(body).toBe(expected);
    } finally {
      await close();
    }
  });
});

describe('guard() on HTTP/2 behind an engaged compressor, a write after the client reset the stream', () => {
  it('is told through its callback that it was not sent (the compat response has no `destroyed`, and its stream reports itself finished)', async () => {
    let told!: (verdict: string) => void;
    const verdict = new Promise<string>((resolve) => (told = resolve));
    const { session, close } = await http2Through([compression(), guard({ heartbeat: false, compression: 'flush' })], (res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      res.write('data: 1\n\n');
      res.on('close', () => setTimeout(() => res.write('data: 2\n\n', (error) => told(error ? error.message : 'sent')), 20));
    });
    try {
      const req = session.request({ ':path': '/', accept: 'text/event-stream', 'accept-encoding': 'gzip' });
      req.on('error', () => {});
      req.on('response', (headers) => {
        expect(headers['content-encoding']).toBe('gzip');
        setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), 50);
      });
      req.end();
      expect(await verdict).toMatch(/closed before the chunk was sent/);
    } finally {
      await close();
    }
  });
});

describe('guard() on HTTP/2, a status the compat writeHead takes as it is', () => {
  // It sends 200 for these, and sets writeHead's headers where no setHeader of the guard's sees them:
  // only the guard's own folding recognises the type.
  it.each([undefined, Number.NaN, 0])('guards writeHead(%p, headers) as writeHead(200, headers)', async (status) => {
    const { session, close } = await http2Through([guard({ heartbeat: false })], (res) => {
      res.writeHead(status as number, { 'Content-Type': 'text/event-stream' });
      res.end('data: one\n\n');
    });
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const req = session.request({ ':path': '/', accept: 'text/event-stream' });
        req.on('response', resolve);
        req.on('error', reject);
        req.resume();
        req.end();
      });
      expect(headers[':status']).toBe(200);
      expect(headers['x-accel-buffering']).toBe('no');
      expect(headers['cache-control']).toBe('no-transform');
    } finally {
      await close();
    }
  });
});

// shutdown() is final for the process: these run last.
describe('guard() on HTTP/2, a producer that writes its head after the client left', () => {
  it('leaves no stream behind in stats() (an HTTP/2 compat response has no `destroyed`)', async () => {
    const guarded = guard({ heartbeat: 50 });
    let wrote!: () => void;
    const written = new Promise<void>((resolve) => (wrote = resolve));
    const server = http2.createServer((req, res) =>
      guarded(req as never, res as never, () => {
        res.stream.once('close', () => {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: late\n\n');
          wrote();
        });
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const before = stats().open;
      const req = session.request({ ':path': '/', accept: 'text/event-stream' });
      req.on('error', () => {});
      req.close(http2.constants.NGHTTP2_CANCEL);
      await written;
      await sleep(200);
      expect(stats().open).toBe(before);
    } finally {
      session.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('after shutdown()', () => {
  let srv: TestServer;
  const ended: Array<Error | null | undefined> = [];
  let produced = false;

  beforeAll(async () => {
    const app = express();
    app.use(guard({ heartbeat: false, maxBufferedBytes: 64 * 1024 * 1024 }));
    // A producer with a backlog its client does not read, that ends its response on its own schedule.
    app.get('/ends-late', (_req, res) => {
      res.setHeader('Content-Type', 'text/event-stream');
      const event = `data: ${'x'.repeat(16 * 1024)}\n\n`;
      for (let i = 0; i < 600; i++) res.write(event);
      produced = true;
      setTimeout(() => res.end('data: bye\n\n', () => undefined), 300);
      setTimeout(() => res.end((error?: Error | null) => ended.push(error)), 350);
    });
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  it("a guarded producer's own end() after shutdown() ended its response is refused through its callback, without crashing", async () => {
    const client = await rawRequest(srv.port, 'GET /ends-late HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    // The client reads nothing: the backlog keeps the response unfinished through the grace period.
    await waitFor('the producer to write its backlog', () => produced && stats().open === 1);
    const done = shutdown({ graceMs: 1000 });
    await waitFor('the producer to end its response', () => ended.length === 1, 3000);
    expect(ended[0]).toBeInstanceOf(Error);
    await done;
    client.close();
  });

  it('answers sse() requests on HTTP/2 with 503, without the hop-by-hop Connection header', async () => {
    const { warnings, stdout } = await inChild(`
      const route = sseGuard.sse(() => {}, { heartbeat: false });
      const server = http2.createServer((req, res) => route(req, res, () => res.writeHead(500).end()));
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      await sseGuard.shutdown({ graceMs: 100 });
      console.log(await get(server.address().port, '/'));
      server.close();
    `);
    expect(stdout).toBe('503');
    expect(warnings.filter((w) => /connection header/i.test(w))).toEqual([]);
  });
});
