// graphql-sse 1 (1.3), read with its own client, behind compression() in both mount orders. It sets
// X-Accel-Buffering itself, but awaits the callback of every write, given in third place
// (`res.write(msg, 'utf-8', cb)`), and compression 1.8 drops such callbacks: without guard() the
// stream stalls on its first write, the `:` line it writes at connect, and no tick ever arrives.
import type { RequestHandler } from 'express';
import { createClient, createHandler } from 'graphql-sse1';
import { performance } from 'node:perf_hooks';
import { expressVersions } from './helpers/express';
import { schema, TICK_MS, TICKS } from './helpers/graphql';
import { listen, type TestServer } from './helpers/server';
import { STACKS, stacked } from './helpers/stacks';

const handler = createHandler({ schema });
// graphql-sse 1's handler takes (req, res, body?): Express's `next` must not reach it as the body.
const route: RequestHandler = (req, res) => void handler(req, res).catch((error: unknown) => res.destroy(error as Error));

/** Subscribes with graphql-sse 1's own client for at most `boundMs`; the ticks, and when the first came. */
function subscribe(url: string, boundMs: number): Promise<{ ticks: number[]; firstMs: number | undefined; completed: boolean }> {
  const client = createClient({ url, retryAttempts: 0 });
  const started = performance.now();
  const ticks: number[] = [];
  let firstMs: number | undefined;
  return new Promise((resolve) => {
    const finish = (completed: boolean): void => {
      clearTimeout(timer);
      unsubscribe();
      void client.dispose();
      resolve({ ticks, firstMs, completed });
    };
    const timer = setTimeout(() => finish(false), boundMs);
    const unsubscribe = client.subscribe<{ tick: number }>(
      { query: 'subscription { tick }' },
      {
        next: (result) => {
          firstMs ??= performance.now() - started;
          ticks.push(result.data!.tick);
        },
        error: () => finish(false),
        complete: () => finish(true),
      },
    );
  });
}

describe.each(expressVersions)('graphql-sse 1 (%s)', (_name, express) => {
  describe.each(STACKS)('%s', (stack) => {
    let srv: TestServer;
    beforeAll(async () => {
      const app = stacked(express, stack);
      app.use('/graphql/stream', route);
      srv = await listen(app);
    });
    afterAll(() => srv.close());

    if (stack === 'compression() alone') {
      it('control: stalls on its first write, and no tick arrives', async () => {
        const result = await subscribe(`${srv.url}/graphql/stream`, TICK_MS * TICKS + 1000);
        expect(result.ticks).toEqual([]);
        expect(result.completed).toBe(false);
      });
    } else {
      it('delivers each tick as it happens, to the end of the subscription', async () => {
        const result = await subscribe(`${srv.url}/graphql/stream`, 10_000);
        expect(result.ticks).toEqual([1, 2, 3, 4, 5]);
        expect(result.completed).toBe(true);
        expect(result.firstMs).toBeLessThan(TICK_MS + 500);
      });
    }
  });
});
