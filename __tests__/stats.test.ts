import timeout from 'connect-timeout';
import express, { type ErrorRequestHandler } from 'express';
import request from 'supertest';
import { sse, stats, type CloseReason, type GuardReason, type SseStream } from '../src/index';
import { collect } from '../src/testing';
import { stalledClient } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

describe('stats()', () => {
  const highWaterMark = 64 * 1024;
  const chunk = 'x'.repeat(32 * 1024);
  const streams: SseStream[] = [];
  const reasons: CloseReason[] = [];
  const logged: GuardReason[] = [];
  let filled = false;
  let srv: TestServer;

  beforeAll(async () => {
    const app = express();
    app.get('/events', sse({ heartbeat: false }), (_req, res) => {
      streams.push(res.sse);
      res.sse.on('close', (reason) => reasons.push(reason));
    });
    // Sends to a client that does not read until the bytes queue in the process (the kernel's socket
    // buffers take the first few MB), then waits: never dropped, maxBufferedBytes is far.
    app.get(
      '/fill',
      sse(
        async (stream) => {
          for (let i = 0; i < 1000 && stream.bufferedBytes < 2 * highWaterMark; i++) {
            stream.send(chunk);
            await sleep(1);
          }
          filled = true;
          await new Promise((resolve) => stream.on('close', resolve));
        },
        { heartbeat: false, highWaterMark, maxBufferedBytes: 256 * 1024 * 1024 },
      ),
    );
    // Keeps sending to a client that does not read, until the core drops it.
    app.get(
      '/flood',
      sse(
        async (stream) => {
          for (let i = 0; i < 1000 && !stream.closed; i++) {
            stream.send(chunk);
            await sleep(1);
          }
        },
        { heartbeat: false, highWaterMark, maxBufferedBytes: 4 * highWaterMark, logger: (reason) => logged.push(reason) },
      ),
    );
    app.get('/timeout', timeout('10s'), sse(), (_req, res) => res.sse.close());
    app.get(
      '/late',
      (_req, res, next) => {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        next();
      },
      sse(),
    );
    const answer: ErrorRequestHandler = (err: { status?: number }, _req, res, _next) => {
      if (!res.headersSent) res.status(err.status ?? 500);
      res.end();
    };
    app.use(answer);
    srv = await listen(app);
  });

  afterAll(() => srv.close());

  it('counts open streams, live', async () => {
    const before = stats().open;
    const clients = [0, 1, 2].map(() => collect(`${srv.url}/events`, { timeout: 5000 }));
    await waitFor('three open streams', () => stats().open === before + 3);
    for (const stream of streams.splice(0)) stream.close();
    expect(stats().open).toBe(before);
    await Promise.all(clients);
  });

  it('counts every event written to every stream in eventsSent, and no comment or retry', async () => {
    const clients = [0, 1].map(() => collect(`${srv.url}/events`, { timeout: 5000 }));
    await waitFor('two streams', () => streams.length === 2);
    const before = stats().eventsSent;
    for (const stream of streams) {
      stream.send('one');
      stream.send({ event: 'two', data: 2 });
      stream.comment('not an event');
      stream.retry(1000);
    }
    expect(stats().eventsSent).toBe(before + 4);
    for (const stream of streams.splice(0)) stream.close();
    for (const client of await Promise.all(clients)) expect(client.events).toHaveLength(2);
  });

  it('reports the bytes held for a client that does not read in bufferedBytes, until it goes', async () => {
    const before = stats().bufferedBytes;
    const stalled = await stalledClient(srv.port, '/fill');
    await waitFor('the stream to fill', () => filled);
    expect(stats().bufferedBytes - before).toBeGreaterThanOrEqual(highWaterMark);
    stalled.close();
    await waitFor('the buffered bytes to be released', () => stats().bufferedBytes === before);
  });

  it('counts a client dropped for not reading in slowConsumerDrops', async () => {
    const before = stats().slowConsumerDrops;
    const stalled = await stalledClient(srv.port, '/flood');
    await waitFor('the slow consumer to be dropped', () => stats().slowConsumerDrops === before + 1, 10_000);
    expect(logged).toContain('slow-consumer');
    stalled.close();
  });

  it('counts requests refused for request-timeout middleware in refused.timeoutHandler', async () => {
    const before = stats().refused.timeoutHandler;
    const res = await request(srv.server).get('/timeout');
    expect(res.status).toBe(500);
    expect(stats().refused.timeoutHandler).toBe(before + 1);
  });

  it('counts requests refused because headers were already sent in refused.headersSent', async () => {
    const before = stats().refused.headersSent;
    await request(srv.server).get('/late');
    expect(stats().refused.headersSent).toBe(before + 1);
  });

  it('reads the current numbers on every call, and leaves an earlier result as it was', async () => {
    const earlier = stats();
    const copy = structuredClone(earlier);
    const client = collect(`${srv.url}/events`, { timeout: 5000 });
    await waitFor('a stream', () => streams.length === 1);
    streams[0]!.send('counted');
    expect(stats()).toMatchObject({ open: copy.open + 1, eventsSent: copy.eventsSent + 1 });
    expect(earlier).toEqual(copy);
    streams.splice(0)[0]!.close();
    await client;
  });
});
