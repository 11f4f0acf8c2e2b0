// shutdown() called twice (two SIGTERMs, two handlers): one drain, one completion, the first settings.
// On its own file: shutdown() is final for the process.
import express from 'express';
import { performance } from 'node:perf_hooks';
import { shutdown, sse, stats } from '../src/index';
import { stalledClient } from './helpers/raw';
import { listen, waitFor } from './helpers/server';

it('a second call returns the first call’s completion and keeps its Retry-After', async () => {
  const app = express();
  const chunk = 'x'.repeat(64 * 1024);
  // A client that does not read holds its response open until graceMs cuts it.
  app.get('/events', sse({ heartbeat: false, maxBufferedBytes: 256 * 1024 * 1024 }), (_req, res) => {
    // 32 MB, far more than the kernel's buffers hold for it on loopback.
    for (let i = 0; i < 512; i++) res.sse.send(chunk);
  });
  const srv = await listen(app);
  const client = await stalledClient(srv.port, '/events');
  try {
    await waitFor('the stream', () => stats().open === 1);
    const started = performance.now();
    const first = shutdown({ retry: 3000, graceMs: 1500 });
    const second = shutdown();
    await second;
    const secondMs = performance.now() - started;
    const refused = await fetch(`${srv.url}/events`);
    await refused.text();
    // The second call waited for the drain (the stalled client is cut at graceMs), and changed no setting.
    expect({ waited: secondMs > 1400, status: refused.status, retryAfter: refused.headers.get('retry-after') }).toEqual({ waited: true, status: 503, retryAfter: '3' });
    expect(second).toBe(first);
  } finally {
    client.close();
    await srv.close();
  }
});
