// guard()'s connect line: a producer that sends its head and then waits gets one comment line once
// the head is out, so that proxies holding the head until the first body byte let it go (the proxy
// suites show that through nginx over HTTP/2 and Caddy with encode); a producer that writes at once
// is left byte for byte as it was.
import compression from 'compression';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import zlib from 'node:zlib';
import { Client } from 'undici';
import express from 'express';
import { createParser } from 'eventsource-parser';
import { guard } from '../src/index';
import { listen, type TestServer } from './helpers/server';

/** A producer as libraries write one: its head, then (after `waitMs`, or at once) one event; it ends 300 ms after its head. */
function producer(waitMs: number | undefined, first: string, status = 200) {
  return (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(status, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    const timers: NodeJS.Timeout[] = [];
    res.on('close', () => timers.forEach(clearTimeout));
    if (waitMs === undefined) {
      // Open a while after it: the line must not come after the producer's first byte either.
      res.write(first);
      timers.push(setTimeout(() => res.end(), 300));
      return;
    }
    res.flushHeaders();
    timers.push(
      setTimeout(() => {
        res.write(first);
        res.end();
      }, waitMs),
    );
  };
}

function body(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { accept: 'text/event-stream' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        // As EventSource decodes the stream ("UTF-8 decode"): a byte order mark at the very start is dropped.
        res.on('end', () => resolve(new TextDecoder().decode(Buffer.concat(chunks))));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

function dataOf(text: string): string[] {
  const data: string[] = [];
  const parser = createParser({ onEvent: (event) => data.push(event.data) });
  parser.feed(text);
  return data;
}

describe("guard()'s connect line", () => {
  let srv: TestServer;
  beforeAll(async () => {
    const app = express();
    for (const [prefix, middleware] of [['/plain', []], ['/guarded', [guard({ heartbeat: false })]]] as const) {
      app.get(`${prefix}/waits`, ...middleware, producer(300, 'data: one\n\n'));
      app.get(`${prefix}/at-once`, ...middleware, producer(undefined, 'data: one\n\n'));
      app.get(`${prefix}/bom`, ...middleware, producer(300, '\uFEFFdata: one\n\n'));
      app.get(`${prefix}/refused`, ...middleware, producer(300, 'data: one\n\n', 401));
      app.get(`${prefix}/bom-end`, ...middleware, (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.flushHeaders();
        const timer = setTimeout(() => res.end('\uFEFFdata: one\n\n'), 300);
        res.on('close', () => clearTimeout(timer));
      });
    }
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  it('is written once the head is out with no body byte, before the first event', async () => {
    expect(await body(`${srv.url}/plain/waits`)).toBe('data: one\n\n');
    expect(await body(`${srv.url}/guarded/waits`)).toBe(':\ndata: one\n\n');
  });

  it('is not written when the producer writes at once: the stream is byte for byte as without guard()', async () => {
    expect(await body(`${srv.url}/guarded/at-once`)).toBe(await body(`${srv.url}/plain/at-once`));
  });

  it("drops a byte order mark opening the producer's first write, which after the line would spoil the first event", async () => {
    const plain = await body(`${srv.url}/plain/bom`);
    const guarded = await body(`${srv.url}/guarded/bom`);
    expect(plain).toBe('data: one\n\n');
    expect(dataOf(plain)).toEqual(['one']);
    expect(guarded).toBe(':\ndata: one\n\n');
    expect(dataOf(guarded)).toEqual(['one']);
    // The control: the line with the mark left in place loses the event.
    expect(dataOf(':\n\uFEFFdata: one\n\n')).toEqual([]);
  });

  it("drops a byte order mark opening a first body that comes in end()", async () => {
    expect(dataOf(await body(`${srv.url}/plain/bom-end`))).toEqual(['one']);
    expect(await body(`${srv.url}/guarded/bom-end`)).toBe(':\ndata: one\n\n');
  });

  it('is not written on a response that is not 2xx', async () => {
    expect(await body(`${srv.url}/guarded/refused`)).toBe('data: one\n\n');
  });
});

// The connect line and the heartbeats join a body only where they cannot spoil it. Each producer
// waits (longer than the heartbeat period) before its body, so both would be written if allowed.
describe('guard() writes nothing of its own into', () => {
  let srv: TestServer;
  const wait = (res: ServerResponse, ms: number, then: () => void): void => {
    const timer = setTimeout(then, ms);
    res.on('close', () => clearTimeout(timer));
  };
  const twoEvents = 'data: a\n\ndata: b\n\n';

  beforeAll(async () => {
    const app = express();
    for (const [prefix, middleware, flushing, compressing] of [
      ['/plain', [], [], [compression()]],
      ['/guarded', [guard({ heartbeat: 10 })], [guard({ heartbeat: 10, compression: 'flush' })], [compression(), guard({ heartbeat: 10 })]],
    ] as const) {
      // A finite answer relayed with its length: one byte more would cut its last event.
      app.get(`${prefix}/length`, ...middleware, (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Content-Length': Buffer.byteLength(twoEvents) });
        res.flushHeaders();
        wait(res, 60, () => {
          res.write('data: a\n\n');
          wait(res, 60, () => res.end('data: b\n\n'));
        });
      });
      // A relayed upstream that gzips its own stream: its head given to writeHead, or set one header
      // at a time (as http-proxy does) behind the app's compression().
      const ownGzip = (how: 'one by one' | 'writeHead' | 'as a list'): express.RequestHandler => (_req, res) => {
        if (how === 'writeHead') res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Content-Encoding': 'gzip' });
        else {
          res.setHeader('Content-Type', 'text/event-stream');
          res.setHeader('Content-Encoding', how === 'as a list' ? ['gzip'] : 'gzip');
          res.writeHead(200);
        }
        res.flushHeaders();
        const gzip = zlib.createGzip();
        gzip.on('data', (chunk: Buffer) => res.write(chunk));
        gzip.on('end', () => res.end());
        wait(res, 60, () => {
          gzip.write('data: a\n\n');
          gzip.flush();
          wait(res, 60, () => gzip.end('data: b\n\n'));
        });
      };
      app.get(`${prefix}/own-gzip`, ...middleware, ownGzip('writeHead'));
      app.get(`${prefix}/own-gzip-list`, ...middleware, ownGzip('as a list'));
      app.get(`${prefix}/own-gzip-behind-compression`, ...compressing, ownGzip('one by one'));
      app.get(`${prefix}/own-gzip-in-head-behind-compression`, ...compressing, ownGzip('writeHead'));
      // The same, stored rather than compressed (its event's blank line shows in the bytes, where a
      // heartbeat may go), answering a request pipelined behind a slow one.
      app.get(`${prefix}/slow`, (_req, res) => wait(res, 200, () => void res.send('ok')));
      app.get(`${prefix}/own-stored-gzip`, ...compressing, (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Content-Encoding': 'gzip' });
        const gzip = zlib.gzipSync(twoEvents, { level: 0 });
        const cut = gzip.indexOf('\n\n') + 2;
        wait(res, 50, () => {
          res.write(gzip.subarray(0, cut));
          wait(res, 250, () => res.end(gzip.subarray(cut)));
        });
      });
      // A compressor on the route, mounted after the type was set: guard() writes below it, and with
      // compression: 'flush' (which leaves compressors on) it engages.
      const setType: express.RequestHandler = (_req, res, next) => {
        res.setHeader('Content-Type', 'text/event-stream');
        next();
      };
      app.get(`${prefix}/route-compressor`, ...flushing, setType, compression(), (_req, res) => {
        res.write('data: a\n\n');
        wait(res, 60, () => res.end('data: b\n\n'));
      });
      // 205 Reset Content allows no body, and Node does not drop one as it does for 204.
      app.get(`${prefix}/205`, ...middleware, (_req, res) => {
        res.writeHead(205, { 'Content-Type': 'text/event-stream' });
        res.flushHeaders();
        wait(res, 60, () => res.end());
      });
      app.get(`${prefix}/json`, (_req, res) => void res.json({ ok: true }));
      // The AI SDK's way (its head to writeHead) behind a compressor that engages: after its first
      // write, which shows the compressor holding it, the heartbeats go through the compressor.
      app.get(`${prefix}/engaged`, compression(), ...flushing, (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: a\n\n');
        wait(res, 100, () => res.end('data: b\n\n'));
      });
    }
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  /** The body of `path` (decoded when gzipped), then the body of a JSON request on the same connection. */
  async function twice(path: string): Promise<[string, string]> {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (target: string): Promise<string> =>
      new Promise((resolve, reject) => {
        http
          .get(`${srv.url}${target}`, { agent, headers: { 'accept-encoding': 'gzip' } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => {
              const raw = Buffer.concat(chunks);
              try {
                resolve(res.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(raw).toString() : raw.toString());
              } catch (error) {
                resolve(`not gzip: ${JSON.stringify(raw.subarray(0, 4).toString('latin1'))} (${String(error)})`);
              }
            });
            res.on('error', reject);
          })
          .on('error', (error) => resolve(`failed: ${String(error)}`));
      });
    try {
      return [await get(path), await get(path.replace(/\/[^/]+$/, '/json'))];
    } finally {
      agent.destroy();
    }
  }

  it("but beats through a compressor that engaged, when the type came in writeHead's headers (compression: 'flush')", async () => {
    const [body] = await twice('/guarded/engaged');
    expect(body).toMatch(/^data: a\n\n(:\n)+data: b\n\n$/);
  });

  it('a body the producer encoded itself, answering a request pipelined behind a slow one (HTTP/1.1)', async () => {
    const client = new Client(srv.url, { pipelining: 2 });
    try {
      const [slow, relay] = await Promise.all([
        client.request({ path: '/guarded/slow', method: 'GET' }),
        client.request({ path: '/guarded/own-stored-gzip', method: 'GET', headers: { 'accept-encoding': 'gzip' } }),
      ]);
      expect(await slow.body.text()).toBe('ok');
      expect(zlib.gunzipSync(Buffer.from(await relay.body.arrayBuffer())).toString()).toBe(twoEvents);
    } finally {
      await client.close();
    }
  });

  it.each([
    ['a body framed by the Content-Length the producer set, nor the next response on its connection', '/length', twoEvents],
    ["a body the producer encoded itself (a relayed gzip upstream)", '/own-gzip', twoEvents],
    ["a body the producer encoded itself, its headers set one by one behind compression()", '/own-gzip-behind-compression', twoEvents],
    ['a body the producer encoded itself, its Content-Encoding given as a list', '/own-gzip-list', twoEvents],
    ["a body the producer encoded itself, its type and Content-Encoding given to writeHead behind compression()", '/own-gzip-in-head-behind-compression', twoEvents],
    ["a body gzipped by a compressor mounted on the route after the type was set, with compression: 'flush'", '/route-compressor', twoEvents],
    ['a 205 Reset Content', '/205', ''],
  ])('%s', async (_what, path, expected) => {
    const plain = await twice(`/plain${path}`);
    expect(plain).toEqual([expected, '{"ok":true}']);
    expect(await twice(`/guarded${path}`)).toEqual(plain);
  });
});
