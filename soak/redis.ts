// Part: redis, the link to Redis failing the way production links do. One app instance (the server
// child) runs a Channel on redisAdapter, reaching a real redis-server through a TCP proxy that can
// stop forwarding without closing anything; its clients read over real sockets, and a second Redis
// client appends directly, as the other instances of a deployment would.
//
// Invariants, for every client: each event at most once and in stream order, and nothing missing
// from its sequence without a resync in its place (nothing lost without a signal); nothing waits
// past a stated bound.
// - A black-holed link (the connections open at the time go silent; new ones get through, as
//   after a failover): publish() rejects within its 2 s bound, the frozen reader is replaced and
//   resumes from its position, so every event appended meanwhile arrives (nothing was trimmed,
//   so no resync), and the next publish() goes out on a fresh writer. What was stored is read
//   from the stream itself: a rejected publish() may be stored once the link thaws.
// - A reader forced past MAXLEN (the whole link held while 3000 entries are appended with
//   MAXLEN ~ 1000): every client gets a resync where the gap is, then the live events.
// - Finally close() on a black-holed link ends within its bound.
import express from 'express';
import { performance } from 'node:perf_hooks';
import { createClient } from 'redis';
import { Channel, sse, type SseGuardError } from '../src/index';
import { redisAdapter } from '../src/fanout/redis';
import { findBinary } from '../__tests__/helpers/binaries';
import { tcpProxy } from '../__tests__/helpers/tcp-proxy';
import { compareIds, silentLoss, startRedis } from '../__tests__/helpers/redis';
import { checkUnhandled, ms, openEvents, scale, sleep, spawnServer, until, type ClientEvent, type EventClient, type Mode, type Part, type Serve } from './harness';

// The adapter's documented bounds, and what the part allows on a loaded machine on top of them.
const PUBLISH_BOUND_MS = 2000 + 1500;
const RECOVERY_BOUND_MS = 15_000;
// Catching up means writing about 1000 events to every client, as fast as a loaded machine can.
const CATCH_UP_BOUND_MS = 60_000;
const CLOSE_BOUND_MS = 1500;
// What redisAdapter() trims to with history 0, so that the direct appends trim like the instance's.
const MAXLEN = 1000;

interface Config {
  url: string;
  key: string;
}

/** The outcome of one publish() in the server child. */
interface Published {
  id?: string;
  code?: string;
  ms: number;
}

export const serve: Serve<Config> = ({ server, config }) => {
  const channel = new Channel({ adapter: redisAdapter({ url: config.url, key: config.key }) });
  const app = express();
  app.get('/events', sse(), (_req, res) => channel.subscribe(res.sse));
  server.on('request', app);
  return {
    size: () => channel.size,
    publish: async (n: number): Promise<Published> => {
      const started = performance.now();
      try {
        const id = await channel.publish({ data: n });
        return { id, ms: performance.now() - started };
      } catch (error) {
        return { code: (error as SseGuardError).code, ms: performance.now() - started };
      }
    },
    close: async (): Promise<number> => {
      const started = performance.now();
      await channel.close();
      return performance.now() - started;
    },
  };
};

export async function run(mode: Mode, part: Part): Promise<void> {
  const binary = findBinary('redis-server');
  if (binary === undefined) {
    const reason = 'redis-server is not installed (Debian: apt-get install redis-server)';
    if (process.env.SSE_GUARD_REQUIRE_ALL === '1') part.check('redis-server present (SSE_GUARD_REQUIRE_ALL=1)', false, reason);
    else part.figure('skipped', reason);
    return;
  }
  const clientCount = scale(mode, 200, 50);
  const blackholes = scale(mode, 5, 2);
  const overruns = scale(mode, 3, 1);
  const redis = await startRedis(binary);
  const proxy = await tcpProxy(redis.port);
  const admin = createClient({ url: redis.url });
  admin.on('error', () => {});
  await admin.connect();
  const key = 'sse-guard:soak';
  const server = await spawnServer('redis', { url: `redis://127.0.0.1:${proxy.port}`, key } satisfies Config);
  const clients: EventClient[] = [];
  const received: ClientEvent[][] = [];
  // The newest id each client got, so that polling for progress costs one comparison per client.
  const newest: string[] = [];
  let resyncCount = 0;
  try {
    for (let i = 0; i < clientCount; i++) {
      const events: ClientEvent[] = [];
      received.push(events);
      newest.push('0-0');
      const onEvent = (event: ClientEvent): void => {
        events.push(event);
        if (event.id !== undefined) newest[i] = event.id;
        else if (event.event === 'resync') resyncCount++;
      };
      clients.push(await openEvents(`${server.url}/events`, { onEvent }));
    }
    await until(async () => (await server.call<number>('size')) === clientCount, 10_000);

    // Every id in stream order: appends and publishes are awaited one at a time.
    const published: string[] = [];
    let n = 0;
    const append = async (): Promise<void> => {
      const id = await admin.xAdd(key, '*', { body: `data: ${n++}\n\n` }, { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: MAXLEN } });
      published.push(id);
    };
    const everyoneHas = (id: string): boolean => newest.every((got) => compareIds(got, id) >= 0);
    const breaches = (): string[] =>
      received.flatMap((events, i) => {
        const breach = silentLoss(events, published);
        return breach === undefined ? [] : [`client ${i}: ${breach}`];
      });

    await append();
    await until(() => everyoneHas(published[0]!), 10_000);

    // A black-holed link, several times over.
    const rejected: Published[] = [];
    const recoveries: number[] = [];
    let freshPublishes = 0;
    for (let round = 0; round < blackholes; round++) {
      proxy.blackhole({ newConnections: 'forward' });
      const frozenAt = performance.now();
      const attempt = server.call<Published>('publish', n++);
      for (let i = 0; i < 20; i++) {
        await append();
        await sleep(50);
      }
      rejected.push(await attempt);
      const last = published[published.length - 1]!;
      const caughtUp = await until(() => everyoneHas(last), RECOVERY_BOUND_MS);
      recoveries.push(caughtUp ? performance.now() - frozenAt : Infinity);
      const fresh = await server.call<Published>('publish', n++);
      if (fresh.id !== undefined) {
        freshPublishes++;
        published.push(fresh.id);
      }
      await until(() => fresh.id === undefined || everyoneHas(fresh.id), RECOVERY_BOUND_MS);
    }
    // A publish() that timed out had its XADD written into the frozen link: when the link thaws, the
    // bytes go through and Redis stores it after all (the documented "may or may not be stored"). The
    // stream is the record of what was stored; nothing was trimmed yet.
    proxy.resume();
    await sleep(500);
    const stored = ((await admin.xRange(key, '-', '+')) ?? []).map((entry) => entry.id);
    const late = stored.length - published.length;
    published.splice(0, published.length, ...stored);
    await until(() => everyoneHas(published[published.length - 1]!), RECOVERY_BOUND_MS);
    const afterBlackholes = breaches();
    const resyncsAfterBlackholes = resyncCount;
    const slowest = Math.max(...rejected.map((r) => r.ms));
    part.figure('black-holed link', `${blackholes} rounds, ${clientCount} clients, 20 events appended elsewhere during each`);
    part.check(
      `publish() on the frozen link rejected with ERR_SSE_ADAPTER within ${PUBLISH_BOUND_MS} ms`,
      rejected.every((r) => r.code === 'ERR_SSE_ADAPTER') && slowest < PUBLISH_BOUND_MS,
      `${rejected.map((r) => r.code ?? 'stored').join(', ')}; slowest ${ms(slowest)}`,
    );
    part.check(
      `every client had every event within ${RECOVERY_BOUND_MS} ms of the freeze`,
      recoveries.every((t) => t < RECOVERY_BOUND_MS),
      `slowest ${ms(Math.max(...recoveries))}`,
    );
    part.check('the next publish() went out on a fresh writer, every round', freshPublishes === blackholes, `${freshPublishes} of ${blackholes}`);
    part.figure('rejected publishes stored when the link thawed', `${late} of ${blackholes}`);
    part.check(
      'nothing lost, twice or out of order, and no resync (nothing was trimmed)',
      afterBlackholes.length === 0 && resyncsAfterBlackholes === 0,
      afterBlackholes[0] ?? `${resyncsAfterBlackholes} resyncs; ${published.length} events, ${received[0]!.length} received by client 0`,
    );

    // A reader forced past MAXLEN.
    const signalled: number[] = [];
    const catchUps: number[] = [];
    for (let round = 0; round < overruns; round++) {
      const before = resyncCount;
      proxy.blackhole();
      for (let batch = 0; batch < 30; batch++) {
        const ids = await Promise.all(
          Array.from({ length: 100 }, () =>
            admin.xAdd(key, '*', { body: `data: ${n++}\n\n` }, { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: MAXLEN } }),
          ),
        );
        published.push(...ids.sort(compareIds));
      }
      proxy.resume();
      const resumedAt = performance.now();
      const told = await until(() => resyncCount - before >= clientCount, RECOVERY_BOUND_MS);
      signalled.push(told ? performance.now() - resumedAt : Infinity);
      const last = published[published.length - 1]!;
      const caughtUp = await until(() => everyoneHas(last), CATCH_UP_BOUND_MS);
      catchUps.push(caughtUp ? performance.now() - resumedAt : Infinity);
      part.check(`round ${round + 1}: every client got one resync at the gap`, resyncCount - before === clientCount, `${resyncCount - before} of ${clientCount}`);
    }
    const afterOverruns = breaches();
    const delivered = received[0]!.filter((event) => event.id !== undefined).length;
    part.figure('reader past MAXLEN', `${overruns} rounds of 3000 entries appended with MAXLEN ~ ${MAXLEN} while the link was held`);
    part.figure('client 0', `${delivered} of ${published.length} events delivered, ${received[0]!.length - delivered} resyncs`);
    part.check(`every client had its resync within ${RECOVERY_BOUND_MS} ms of the link's return`, signalled.every((t) => t < RECOVERY_BOUND_MS), `slowest ${ms(Math.max(...signalled))}`);
    part.check(`every client had the newest event within ${CATCH_UP_BOUND_MS} ms of it`, catchUps.every((t) => t < CATCH_UP_BOUND_MS), `slowest ${ms(Math.max(...catchUps))}`);
    part.check('nothing lost without a resync, twice or out of order', afterOverruns.length === 0, afterOverruns[0] ?? `${clientCount} clients checked`);

    proxy.blackhole();
    const closeMs = await server.call<number>('close');
    part.check(`channel.close() on a black-holed link < ${CLOSE_BOUND_MS} ms`, closeMs < CLOSE_BOUND_MS, ms(closeMs));
    checkUnhandled(part, await server.probe());
  } finally {
    for (const client of clients) client.close();
    await server.stop();
    await proxy.close();
    await admin.close();
    await redis.stop();
  }
}
