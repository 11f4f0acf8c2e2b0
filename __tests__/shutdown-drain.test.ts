// shutdown() when one stream cannot be ended: the others are ended all the same, and it settles
// within graceMs. On its own file: shutdown() is final for the process.
import express from 'express';
import { performance } from 'node:perf_hooks';
import { guard, shutdown, sse, stats } from '../src/index';
import { collect } from '../src/testing/index';
import { listen, waitFor } from './helpers/server';

it("ends every other stream and settles within graceMs when one response's end() throws", async () => {
  const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
  const app = express();
  app.use(guard({ heartbeat: false }));
  // A hand-written stream behind a wrapper of res.end that throws (a broken instrumentation layer).
  app.get('/broken', (_req, res) => {
    res.end = (() => {
      throw new Error('boom');
    }) as unknown as typeof res.end;
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write('data: broken\n\n');
  });
  app.get('/events', sse({ heartbeat: false }), (_req, res) => void res.sse.send('hello'));
  const srv = await listen(app);
  try {
    // The broken stream first: it is the first one shutdown() meets.
    const broken = collect(`${srv.url}/broken`, { count: 2, timeout: 2000 });
    await waitFor('the broken stream', () => stats().open === 1);
    const healthy = collect(`${srv.url}/events`, { count: 2, timeout: 5000 });
    await waitFor('both streams', () => stats().open === 2);

    const started = performance.now();
    await expect(shutdown({ graceMs: 1000 })).resolves.toBeUndefined();
    expect(performance.now() - started).toBeLessThan(2500);
    expect(await healthy).toMatchObject({ ended: true, events: [{ data: 'hello' }] });
    expect((await broken).events).toEqual([expect.objectContaining({ data: 'broken' })]);
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/could not end a stream \(Error: boom\)/), { code: 'SSE_GUARD_DRAIN_FAILED' });
  } finally {
    warn.mockRestore();
    await srv.close();
  }
});
