// shutdown() puts every sse() of the process into 503 mode for good: this file runs it once, on its own.
import express from 'express';
import { performance } from 'node:perf_hooks';
import request from 'supertest';
import { shutdown, sse, stats } from '../src/index';
import { collect, type Collected } from '../src/testing';
import { stalledClient } from './helpers/raw';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';

const STREAMS = 200;
const graceMs = 2000;
const retry = 2500;
const farewell = { event: 'bye', data: 'restarting' };

function app(): express.Express {
  const app = express();
  // A handler that returns nothing leaves its stream open until the client leaves or shutdown.
  app.get('/events', sse(() => {}, { heartbeat: false }));
  return app;
}

describe('shutdown()', () => {
  let srv: TestServer;
  let clients: Collected[];
  let stalledFull = false;
  let stalledCutAt = 0;
  let stalledSocketDestroyed = false;
  let startedAt = 0;
  let shutdownMs = 0;
  let serverCloseMs = 0;

  // One shutdown, observed from several sides: 200 reading clients and one that never reads.
  beforeAll(async () => {
    const server = app();
    const chunk = 'x'.repeat(32 * 1024);
    // Fills the socket of a client that does not read, so its response cannot finish by itself.
    server.get('/stalled', sse({ heartbeat: false, maxBufferedBytes: 256 * 1024 * 1024 }), async (req, res) => {
      res.once('close', () => {
        stalledCutAt = performance.now();
        stalledSocketDestroyed = req.socket.destroyed;
      });
      for (let i = 0; i < 1000 && res.sse.bufferedBytes < 256 * 1024; i++) {
        res.sse.send(chunk);
        await sleep(1);
      }
      stalledFull = true;
    });
    srv = await listen(server);
    const reading = Array.from({ length: STREAMS }, () => collect(`${srv.url}/events`, { timeout: 15_000 }));
    const stalled = await stalledClient(srv.port, '/stalled');
    await waitFor(`${STREAMS + 1} open streams`, () => stats().open === STREAMS + 1, 10_000);
    await waitFor('the stalled client to back up', () => stalledFull, 10_000);

    startedAt = performance.now();
    await shutdown({ event: farewell, retry, graceMs });
    shutdownMs = performance.now() - startedAt;
    const closing = performance.now();
    await new Promise((resolve) => srv.server.close(resolve));
    serverCloseMs = performance.now() - closing;

    clients = await Promise.all(reading);
    stalled.close();
  });

  afterAll(() => srv.close());

  it('sends every open stream the last event and the retry hint, then ends it', () => {
    expect(clients).toHaveLength(STREAMS);
    for (const client of clients) {
      expect(client.events.at(-1)).toMatchObject(farewell);
      expect(client.retries).toEqual([retry]);
      expect(client.ended).toBe(true);
    }
  });

  it('ends the streams of reading clients at once, without waiting for the grace period', () => {
    // 200 clients parse in this same process: generous, yet far from the grace period.
    const slowest = Math.max(...clients.map((client) => client.events.at(-1)!.time - startedAt));
    expect(slowest).toBeLessThan(graceMs / 2);
  });

  it('cuts the connection of a client that does not read once graceMs has passed', () => {
    expect(stalledSocketDestroyed).toBe(true);
    expect(stalledCutAt - startedAt).toBeGreaterThanOrEqual(graceMs - 20);
    expect(stalledCutAt - startedAt).toBeLessThan(graceMs + 500);
  });

  it('resolves once every stream closed, so that server.close() then finishes promptly', () => {
    expect(shutdownMs).toBeLessThan(graceMs + 500);
    expect(serverCloseMs).toBeLessThan(500);
    expect(stats().open).toBe(0);
  });

  it('answers new sse() requests with 503 and Retry-After in seconds, from then on', async () => {
    const other = await listen(app());
    try {
      const res = await request(other.server).get('/events');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe(String(Math.ceil(retry / 1000)));
    } finally {
      await other.close();
    }
  });
});
