// tRPC 11: an SSE subscription served by @trpc/server's Express adapter, read with @trpc/client's
// httpSubscriptionLink (over the eventsource package), behind compression() in both mount orders and
// the control without guard(). tRPC protects its stream from compression itself (it sends
// `Cache-Control: no-cache, no-transform` and `X-Accel-Buffering: no`, and flushes after each write) and
// writes its head before the procedure's first value, so a request-timeout middleware never fires: with
// guard() everything must work exactly as without it.
import { createTRPCClient, httpSubscriptionLink } from '@trpc/client';
import { initTRPC } from '@trpc/server';
import { createExpressMiddleware } from '@trpc/server/adapters/express';
import timeout from 'connect-timeout';
import { EventSource } from 'eventsource';
import type { Express } from 'express';
import { performance } from 'node:perf_hooks';
import { expressVersions } from './helpers/express';
import { listen, sleep, waitFor, type TestServer } from './helpers/server';
import { firstEvent } from './helpers/proxy';
import { PROMPT_MS, STACKS, stacked, type Stack } from './helpers/stacks';

const TICKS = 8;
const TICK_MS = 100;

/** Subscriptions of `endless` still running, across all the apps. */
let live = 0;

const t = initTRPC.create();
const appRouter = t.router({
  // Yields 0..TICKS-1, TICK_MS apart, then returns: the client sees the subscription complete.
  ticks: t.procedure.subscription(async function* ({ signal }) {
    for (let n = 0; n < TICKS && !signal?.aborted; n++) {
      await sleep(TICK_MS);
      yield n;
    }
  }),
  // The same, first tick after 600 ms: longer than the 250 ms timeout.
  slowTicks: t.procedure.subscription(async function* ({ signal }) {
    await sleep(600);
    for (let n = 0; n < TICKS && !signal?.aborted; n++) {
      await sleep(TICK_MS);
      yield n;
    }
  }),
  // Never returns: only the client leaving (the signal) ends it.
  endless: t.procedure.subscription(async function* ({ signal }) {
    live++;
    try {
      for (let n = 0; !signal?.aborted; n++) {
        await sleep(TICK_MS);
        yield n;
      }
    } finally {
      live--;
    }
  }),
});

function trpcApp(express: () => Express, stack: Stack, withTimeout: boolean): Express {
  // A request-timeout middleware at 250 ms, mounted first, as apps do; the subscription lasts 800 ms.
  const app = withTimeout ? stacked(express, stack, timeout('250ms')) : stacked(express, stack);
  app.use('/trpc', createExpressMiddleware({ router: appRouter }));
  return app;
}

interface Subscription {
  values: number[];
  firstMs?: number;
  completed: boolean;
  /** How many times the link (re)connected: more than once means the stream was cut and resumed. */
  connects: number;
}

/** Subscribes with tRPC's own client for at most `waitMs`, then reports what arrived. */
async function subscribe(url: string, waitMs: number, procedure: 'ticks' | 'slowTicks' | 'endless' = 'ticks', count = TICKS): Promise<Subscription> {
  const client = createTRPCClient<typeof appRouter>({ links: [httpSubscriptionLink({ url, EventSource })] });
  const result: Subscription = { values: [], completed: false, connects: 0 };
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setTimeout(finish, waitMs);
    const sub = client[procedure].subscribe(undefined, {
      onStarted: () => result.connects++,
      onData: (value) => {
        result.firstMs ??= performance.now() - started;
        result.values.push(value);
        if (result.values.length === count) finish();
      },
      onComplete: () => {
        result.completed = true;
        finish();
      },
      onError: () => finish(),
    });
    function finish(): void {
      clearTimeout(timer);
      sub.unsubscribe();
      resolve();
    }
  });
  return result;
}

const ALL = Array.from({ length: TICKS }, (_, n) => n);

describe.each(expressVersions)('tRPC 11 subscription over SSE (%s)', (_name, express) => {
  const servers = new Map<string, TestServer>();
  const url = (stack: Stack, withTimeout: boolean): string => `${servers.get(`${stack}/${withTimeout}`)!.url}/trpc`;

  beforeAll(async () => {
    for (const stack of STACKS) for (const withTimeout of [false, true]) servers.set(`${stack}/${withTimeout}`, await listen(trpcApp(express, stack, withTimeout)));
  });
  afterAll(() => Promise.all([...servers.values()].map((s) => s.close())));

  it.each(STACKS)('with %s: the head says no-transform, so compression() leaves the stream alone', async (stack) => {
    const { headers, firstEventMs } = await firstEvent(`${url(stack, false)}/ticks`, 3000);
    expect(headers['content-type']).toMatch(/^text\/event-stream/);
    expect(headers['cache-control']).toMatch(/no-transform/);
    expect(headers['x-accel-buffering']).toBe('no');
    expect(headers['content-encoding']).toBeUndefined();
    expect(firstEventMs).toBeLessThan(PROMPT_MS);
  });

  it.each(STACKS)('behind compression(), with %s: every tick as it is yielded, as without guard()', async (stack) => {
    const result = await subscribe(url(stack, false), 5000);
    expect(result).toMatchObject({ values: ALL, completed: true, connects: 1 });
    expect(result.firstMs).toBeLessThan(PROMPT_MS);
  });

  it.each(STACKS)('behind compression(), with %s: a client that leaves ends the procedure', async (stack) => {
    const result = await subscribe(url(stack, false), 3000, 'endless', 2);
    expect(result.values).toEqual([0, 1]);
    await waitFor('the procedure to end', () => live === 0);
  });

  // tRPC writes its head (and a `connected` event) before the procedure yields, which also stops a
  // request-timeout middleware: a first tick later than the timeout gets through, as without guard().
  it.each(STACKS)('behind a 250 ms timeout and compression(), with %s: a first tick after 600 ms still gets through', async (stack) => {
    const result = await subscribe(url(stack, true), 5000, 'slowTicks');
    expect(result).toMatchObject({ values: ALL, completed: true, connects: 1 });
  });
});
