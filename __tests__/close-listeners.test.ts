// A 'close' listener is the app's code, called from wherever the stream closed. One that throws
// must neither cut that caller short (a Channel's publish loop: the other subscribers would miss the
// event) nor escape from it; it is reported as a process warning.
import express from 'express';
import { Channel, sse, type SseStream } from '../src/index';
import { collect } from '../src/testing';
import { serveChannel } from './helpers/channel';
import { stalledClient } from './helpers/raw';
import { listen, waitFor, type TestServer } from './helpers/server';

describe("a 'close' listener that throws", () => {
  let warn: jest.SpyInstance;
  beforeEach(() => {
    warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
  });
  afterEach(() => warn.mockRestore());

  it.each([
    ['an Error', () => new Error('listener bug'), /'close' listener threw \(Error: listener bug\)/],
    ['a value String() cannot convert (an object without a prototype)', () => Object.create(null) as unknown, /'close' listener threw \(\[object Object\]\)/],
  ])('throwing %s does not escape from close(); the listeners after it run, and a warning names it', async (_what, thrown, warning) => {
    let stream: SseStream | undefined;
    const app = express();
    app.get('/events', sse({ heartbeat: false }), (_req, res) => {
      stream = res.sse;
    });
    const srv: TestServer = await listen(app);
    try {
      const reading = collect(`${srv.url}/events`, { timeout: 2000 });
      await waitFor('the stream', () => stream !== undefined);
      const heard: string[] = [];
      stream!.on('close', () => {
        throw thrown();
      });
      stream!.on('close', (reason) => heard.push(reason));
      expect(() => stream!.close()).not.toThrow();
      expect(heard).toEqual(['server']);
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(warning), { code: 'SSE_GUARD_LISTENER_FAILED' });
      expect((await reading).ended).toBe(true);
    } finally {
      await srv.close();
    }
  });

  it("of a subscriber cut as a slow consumer during publish() costs the other subscribers nothing", async () => {
    const channel = new Channel();
    const srv = await serveChannel(channel, { highWaterMark: 1024, maxBufferedBytes: 64 * 1024 });
    const stalled = await stalledClient(srv.port, '/events');
    try {
      await waitFor('the stalled subscriber', () => srv.streams.length === 1);
      srv.streams[0]!.on('close', () => {
        throw new Error('listener bug');
      });
      const reading = collect(`${srv.url}/events`, { timeout: 15_000, count: 200 });
      await waitFor('the reading subscriber', () => channel.size === 2);
      const payload = 'x'.repeat(64 * 1024);
      const published: string[] = [];
      // The kernel takes a few MB from the stalled client before its backlog shows in the process.
      // Paced by the reading client, so that only the stalled one falls behind.
      for (let i = 0; i < 200; i++) {
        published.push(await channel.publish({ data: `${i} ${payload}` }));
        await srv.streams[1]!.ready();
      }
      expect(srv.reasons.get(srv.streams[0]!)).toBe('slow-consumer');
      const got = await reading;
      expect(got.events.map((e) => e.id)).toEqual(published);
    } finally {
      stalled.close();
      await channel.close();
      await srv.close();
    }
  });
});
