// An event stream pipelined behind a slower response on one HTTP/1.1 connection, whose client leaves
// before the stream's turn. Node 20 never closes such a response (only its request hears of it), so a
// stream that waited for the response's 'close' stayed open for good: counted in stats(), beating into
// a response that would never be sent, its 'close' listeners never called, and every shutdown() held
// for its grace period. And a stream made while queued must leave the connection's idle timer to the
// response ahead until its turn.
import type { ServerResponse } from 'node:http';
import express from 'express';
import { guard, sse, stats, type CloseReason } from '../src/index';
import { rawRequest } from './helpers/raw';
import { cleanupAfterEach, listen, sleep, waitFor, type TestServer } from './helpers/server';

const GET = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`;

describe('a stream pipelined behind a slow response, whose client leaves before its turn', () => {
  let srv: TestServer;
  // The slow responses, answered only when the test is over: the stream behind one waits for good.
  const held: ServerResponse[] = [];
  const reasons: CloseReason[] = [];
  let started = 0;
  const cleanups = cleanupAfterEach();

  beforeAll(async () => {
    const app = express();
    app.get('/slow', (_req, res) => void held.push(res));
    const onStream = (_req: unknown, res: express.Response): void => {
      started++;
      res.sse.on('close', (reason) => reasons.push(reason));
    };
    app.get('/sse', sse(), onStream);
    // Its setup outlasts the client: the stream is made once the connection is gone.
    app.get('/sse-late', (req, _res, next) => void req.socket.once('close', () => next()), sse(), onStream);
    const guarded = (_req: unknown, res: express.Response): void => {
      started++;
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: hello\n\n');
    };
    app.get('/guarded', guard({ heartbeat: 20 }), guarded);
    app.get('/guarded-late', guard({ heartbeat: 20 }), (req, res) => void req.socket.once('close', () => guarded(req, res)));
    srv = await listen(app);
  });

  afterAll(async () => {
    for (const res of held) res.end();
    await srv.close();
  });

  it.each([
    ['sse(), the stream made while its turn is awaited', '/sse', ['client']],
    ['sse(), the stream made after the client left', '/sse-late', ['client']],
    ['guard(), the stream made while its turn is awaited', '/guarded', []],
    ['guard(), the stream made after the client left', '/guarded-late', []],
  ])('%s: closes, and leaves stats()', async (_name, path, heard) => {
    const openBefore = stats().open;
    const startedBefore = started;
    reasons.length = 0;
    const client = await rawRequest(srv.port, GET('/slow') + GET(path));
    cleanups.push(() => client.close());
    if (!path.endsWith('-late')) {
      await waitFor('the stream', () => started === startedBefore + 1 && stats().open === openBefore + 1);
    }
    client.close();
    await waitFor('the stream to be made', () => started === startedBefore + 1);
    // Never, before: the response stays queued behind one that is never answered.
    await waitFor('stats().open back where it was', () => stats().open === openBefore, 2000);
    expect(reasons).toEqual(heard);
  });
});

// The same queue, the response ahead hung: the connection's idle timer (server.timeout) is that
// response's until the stream's turn. Cleared by the stream as it was made, it never cut the hung one.
describe('a stream pipelined behind a response that hangs, on a server with an idle timeout', () => {
  let srv: TestServer;
  const held: ServerResponse[] = [];

  beforeAll(async () => {
    const app = express();
    app.get('/hang', (_req, res) => void held.push(res));
    app.get('/json', (_req, res) => void res.json({ ok: true }));
    app.get('/slow', (_req, res) => void setTimeout(() => res.json({ ok: true }), 100));
    // Streams that end at once: what follows them on the connection has the timer again.
    app.get('/sse-short', sse({ heartbeat: false }), (_req, res) => {
      res.sse.send('one');
      res.sse.close();
    });
    app.get('/guarded-short', guard({ heartbeat: false }), (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.end('data: one\n\n');
    });
    // Quiet streams: only a disarmed idle timer lets them live past 500 ms.
    app.get('/sse-quiet', sse({ heartbeat: false }), () => {});
    app.get('/guarded-quiet', guard({ heartbeat: false }), (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: hello\n\n');
    });
    app.get('/sse', sse(), () => {});
    app.get('/guarded', guard(), (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      res.write('data: hello\n\n');
    });
    srv = await listen(app);
    srv.server.setTimeout(500);
  });

  afterAll(async () => {
    for (const res of held) res.end();
    await srv.close();
  });

  it.each(['/json', '/sse', '/guarded'])('behind it, %s leaves the connection to be cut by the timeout', async (path) => {
    const openBefore = stats().open;
    const client = await rawRequest(srv.port, GET('/hang') + GET(path));
    try {
      // Never, before: the stream cleared the timer the hung response ahead was to be cut by.
      await Promise.race([client.ended, new Promise((_, reject) => setTimeout(() => reject(new Error('not cut within 3 s')), 3000).unref())]);
    } finally {
      client.close();
    }
    await waitFor('stats().open back where it was', () => stats().open === openBefore, 2000);
  });

  it.each(['/json', '/sse-short', '/guarded-short'])('a response that hangs behind %s is cut by the timeout', async (path) => {
    const client = await rawRequest(srv.port, GET(path) + GET('/hang'));
    try {
      // Never, before: the stream cleared the connection's timer for good.
      await Promise.race([client.ended, new Promise((_, reject) => setTimeout(() => reject(new Error('not cut within 3 s')), 3000).unref())]);
    } finally {
      client.close();
    }
  });

  it.each(['/sse-short', '/guarded-short'])("leaves an idle connection after %s to Node's keep-alive timer (5 s), not the 500 ms one", async (path) => {
    const client = await rawRequest(srv.port, GET(path));
    try {
      const cut = await Promise.race([client.ended.then(() => true), sleep(1200).then(() => false)]);
      expect(cut).toBe(false);
      expect(client.text()).toMatch(/data: one\n\n/);
    } finally {
      client.close();
    }
  });

  it.each(['/sse-quiet', '/guarded-quiet'])('%s, once its turn comes, clears the timer for itself', async (path) => {
    const client = await rawRequest(srv.port, GET('/slow') + GET(path));
    try {
      const cut = await Promise.race([client.ended.then(() => true), sleep(1500).then(() => false)]);
      expect(cut).toBe(false);
      expect(client.text()).toMatch(/HTTP\/1\.1 200 OK[^]*HTTP\/1\.1 200 OK/);
    } finally {
      client.close();
    }
  });
});
