// NestJS 12: an @Sse() route returning an Observable, the app created with the Express adapter and
// app.use(guard()) / app.use(compression()) in both mount orders, next to the control without guard().
// The app runs in its own process (__tests__/fixtures/nest-app.mts: NestJS 12 is ESM only) and is
// read with the eventsource package, as a browser's EventSource would. NestJS 12 protects its stream
// from compression itself (`no-transform`, `X-Accel-Buffering: no`), so there guard() must change
// nothing. It does not protect it from a request-timeout middleware: it writes its head only once the
// handler's promise has resolved, and a handler slower than the timeout gets a 503 without guard().
import { EventSource } from 'eventsource';
import { performance } from 'node:perf_hooks';
import { startFixture, type Fixture } from './helpers/fixture';
import { firstEvent } from './helpers/proxy';
import { sleep } from './helpers/server';
import { PROMPT_MS, STACKS, type Stack } from './helpers/stacks';

const ALL = ['0', '1', '2', '3', '4', '5', '6', '7'];

interface Ticks {
  values: string[];
  firstMs?: number;
  /** The status of a failed connection, as the eventsource package reports it. */
  status?: number;
}

/** Reads the route with an EventSource until `count` events came, it failed, or `waitMs` passed. */
function readTicks(url: string, waitMs: number, count = ALL.length): Promise<Ticks> {
  return new Promise((resolve) => {
    const started = performance.now();
    const result: Ticks = { values: [] };
    const source = new EventSource(url);
    const done = (): void => {
      clearTimeout(timer);
      source.close();
      resolve(result);
    };
    const timer = setTimeout(done, waitMs);
    source.onmessage = (event) => {
      result.firstMs ??= performance.now() - started;
      result.values.push(event.data);
      if (result.values.length === count) done();
    };
    source.onerror = (event) => {
      result.status = (event as unknown as { code?: number }).code;
      done();
    };
  });
}

describe('NestJS 12 @Sse() on the Express adapter (Express 5)', () => {
  let nest: Fixture<Record<string, number>>;
  const url = (stack: Stack, withTimeout: boolean, route: 'ticks' | 'slow' | 'endless' | 'live'): string =>
    `http://127.0.0.1:${nest.ready[`${stack}/${withTimeout}`]}/nest/${route}`;

  beforeAll(async () => {
    nest = await startFixture('nest-app.mts');
  }, 60_000);
  afterAll(() => nest?.stop());

  it.each(STACKS)('with %s: the head says no-transform, so compression() leaves the stream alone', async (stack) => {
    const { headers, firstEventMs } = await firstEvent(url(stack, false, 'ticks'), 3000);
    expect(headers['content-type']).toMatch(/^text\/event-stream/);
    expect(headers['cache-control']).toMatch(/no-transform/);
    expect(headers['x-accel-buffering']).toBe('no');
    expect(headers['content-encoding']).toBeUndefined();
    expect(firstEventMs).toBeLessThan(PROMPT_MS);
  });

  it.each(STACKS)('behind compression(), with %s: every event as it is emitted, as without guard()', async (stack) => {
    const result = await readTicks(url(stack, false, 'ticks'), 5000);
    expect(result.values).toEqual(ALL);
    expect(result.firstMs).toBeLessThan(PROMPT_MS);
  });

  it.each(STACKS)('behind compression(), with %s: a client that leaves tears the subscription down', async (stack) => {
    const result = await readTicks(url(stack, false, 'endless'), 3000, 2);
    expect(result.values).toEqual(['0', '1']);
    const live = async (): Promise<number> => ((await (await fetch(url(stack, false, 'live'))).json()) as { live: number }).live;
    const deadline = performance.now() + 3000;
    while ((await live()) > 0 && performance.now() < deadline) await sleep(50);
    expect(await live()).toBe(0);
  });

  it.each(STACKS.slice(0, 2))('behind a 250 ms timeout and compression(), with %s: a handler whose setup takes 600 ms gets through', async (stack) => {
    const result = await readTicks(url(stack, true, 'slow'), 5000);
    expect(result.values).toEqual(ALL);
    expect(result.status).toBeUndefined();
  });

  it('control: behind a 250 ms timeout without guard(), that handler gets a 503', async () => {
    const result = await readTicks(url('compression() alone', true, 'slow'), 5000);
    expect(result).toEqual({ values: [], status: 503 });
  });
});
