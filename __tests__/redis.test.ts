// The Redis adapter against a real redis-server: three app instances over real sockets share one
// stream (fan-out, global ids, replay on another instance, resync), and survive Redis going away.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import express from 'express';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { createClient } from 'redis';
import { Channel, SseGuardError, sse } from '../src/index';
import { redisAdapter, type RedisAdapterOptions } from '../src/fanout/redis';
import { describeWithBinary } from './helpers/binaries';
import { serveChannel, type ChannelServer } from './helpers/channel';
import { tcpProxy, type TcpProxy } from './helpers/tcp-proxy';
import { compareIds, freePort, silentLoss, startRedis, startRedisWithAdmin, type AdminClient, type RedisServer } from './helpers/redis';
import { listen, sleep, waitFor } from './helpers/server';

/** One SSE client over node:http, parsed per spec as the bytes arrive. */
interface Reader {
  events: EventSourceMessage[];
  /** Resolves when `count` events arrived in total. */
  received(count: number): Promise<EventSourceMessage[]>;
  /** Resolves when the server ended the stream. */
  ended: Promise<void>;
  close(): void;
}

function read(url: string, lastEventId?: string): Promise<Reader> {
  return new Promise((resolve, reject) => {
    const events: EventSourceMessage[] = [];
    const parser = createParser({ onEvent: (event) => events.push(event) });
    const headers = lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId };
    const req = http.get(url, { headers }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      // 'aborted' when close() tears the request down: expected, not a failure.
      res.on('error', () => {});
      resolve({
        events,
        received: async (count) => {
          await waitFor(`${count} events from ${url} (got ${JSON.stringify(events)})`, () => events.length >= count, 5000);
          return events.slice(0, count);
        },
        ended: new Promise((resolve) => res.once('end', resolve)),
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

const ids = (events: EventSourceMessage[]): Array<string | undefined> => events.map((e) => e.id);
const dataOf = (events: EventSourceMessage[]): unknown[] => events.map((e) => JSON.parse(e.data));


// Retries while Redis is coming back; bounded, and fails with the last error.
async function publishWhenBack(channel: Channel, data: unknown): Promise<string> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      return await channel.publish({ data });
    } catch (err) {
      lastError = err;
      await sleep(50);
    }
  }
  throw lastError;
}

// All of them run even when one fails: a client left open would keep retrying after Redis stopped.
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  const failures: unknown[] = [];
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length > 0) throw failures[0];
});

interface Instance {
  channel: Channel;
  srv: ChannelServer;
  /** Opens a client on this instance and waits until the channel counts it. */
  subscribe(lastEventId?: string): Promise<Reader>;
}

/**
 * A Channel on Redis, once its adapter has connected (or failed to) and found its place in the
 * stream: an instance delivers what is appended from then on, so a test publishing on another
 * instance any earlier could not expect this one to deliver it.
 */
async function redisChannel(options: string | RedisAdapterOptions, history = 0): Promise<Channel> {
  const adapter = redisAdapter(options);
  let attached: Promise<void> | void = undefined;
  const channel = new Channel({ history, adapter: { ...adapter, attach: (deliver, size, lost) => (attached = adapter.attach(deliver, size, lost)) } });
  cleanups.push(() => channel.close());
  await attached;
  return channel;
}

async function instance(adapter: RedisAdapterOptions, history: number): Promise<Instance> {
  const channel = await redisChannel(adapter, history);
  const srv = await serveChannel(channel);
  cleanups.push(() => srv.close());
  return {
    channel,
    srv,
    async subscribe(lastEventId) {
      const before = channel.size;
      const reader = await read(`${srv.url}/events`, lastEventId);
      cleanups.push(() => reader.close());
      await waitFor('the subscriber', () => channel.size > before);
      return reader;
    },
  };
}

const instances = (count: number, adapter: RedisAdapterOptions, history = 100): Promise<Instance[]> =>
  Promise.all(Array.from({ length: count }, () => instance(adapter, history)));

let keys = 0;
const freshKey = (): string => `sse-guard:test:${++keys}`;

describeWithBinary('redis-server', 'redisAdapter on a real Redis', (binary) => {
  let redis: RedisServer;
  let admin: AdminClient;

  beforeAll(async () => {
    ({ redis, admin } = await startRedisWithAdmin(binary, await freePort()));
  });
  afterAll(async () => {
    await admin?.close();
    await redis?.stop();
  });

  it('delivers what any of three instances publishes to the subscribers of all three, in one order, with the stream ids', async () => {
    const key = freshKey();
    const all = await instances(3, { url: redis.url, key });
    const readers = await Promise.all(all.map((i) => i.subscribe()));

    // Concurrent publishes from all three: Redis alone decides the order.
    const published = await Promise.all(Array.from({ length: 12 }, (_, n) => all[n % 3]!.channel.publish({ event: 'n', data: { n } })));

    const stored = ((await admin.xRange(key, '-', '+')) ?? []).map((entry) => entry.id);
    expect([...published].sort(compareIds)).toEqual(stored);
    const first = await readers[0]!.received(12);
    expect(ids(first)).toEqual(stored);
    for (const reader of readers.slice(1)) {
      const events = await reader.received(12);
      expect(ids(events)).toEqual(stored);
      expect(dataOf(events)).toEqual(dataOf(first));
    }
    expect(first.every((e) => e.event === 'n')).toBe(true);
    // Each event's data is the one published under its id.
    expect(first.map((e) => published.indexOf(e.id!))).toEqual(dataOf(first).map((d) => (d as { n: number }).n));
    await sleep(200);
    for (const reader of readers) expect(reader.events).toHaveLength(12);
  });

  it('replays to a client that reconnects to another instance exactly what it missed, then streams live', async () => {
    const [a, b, c] = await instances(3, { url: redis.url, key: freshKey() });
    const watcher = await b!.subscribe();
    const client = await a!.subscribe();
    const seen = [await a!.channel.publish({ data: 1 }), await c!.channel.publish({ data: 2 })];
    expect(ids(await client.received(2))).toEqual(seen);
    client.close();

    const missed = [await c!.channel.publish({ data: 3 }), await a!.channel.publish({ data: 4 }), await b!.channel.publish({ data: 5 })];
    // B has delivered them: the replay comes from the stream, not from events arriving live.
    await watcher.received(5);
    const back = await b!.subscribe(seen[1]);
    const live = await a!.channel.publish({ data: 6 });

    const events = await back.received(4);
    expect(ids(events)).toEqual([...missed, live]);
    expect(dataOf(events)).toEqual([3, 4, 5, 6]);
    await sleep(200);
    expect(back.events).toHaveLength(4);

    // A client that missed nothing gets nothing replayed, and no resync.
    await watcher.received(6);
    const current = await b!.subscribe(live);
    const next = await b!.channel.publish({ data: 7 });
    expect(ids(await current.received(1))).toEqual([next]);
  });

  it('sends the resync event for an id beyond the history, trimmed from the stream, or malformed', async () => {
    const key = freshKey();
    const [a, b] = await instances(2, { url: redis.url, key }, 3);
    const watcher = await b!.subscribe();
    const published: string[] = [];
    for (let n = 1; n <= 6; n++) published.push(await a!.channel.publish({ data: n }));
    await watcher.received(6);

    // Within the history (3 missed events): replayed.
    const within = await b!.subscribe(published[2]);
    expect(dataOf(await within.received(3))).toEqual([4, 5, 6]);

    const resyncs = [
      // Still in Redis (under MAXLEN), but 4 missed events are more than the history.
      published[1]!,
      'not-an-id',
      '18446744073709551616-0',
      // Well formed, never stored.
      `${published[5]!.split('-')[0]}-999`,
    ];
    for (const last of resyncs) {
      const reader = await b!.subscribe(last);
      const [resync] = await reader.received(1);
      expect(resync).toMatchObject({ event: 'resync', id: undefined });
      expect(JSON.parse(resync!.data)).toEqual({ lastEventId: last });
    }

    // Trimmed from the stream, as MAXLEN does to old entries.
    await admin.xTrim(key, 'MAXLEN', 1);
    const trimmed = await b!.subscribe(published[4]);
    expect((await trimmed.received(1))[0]).toMatchObject({ event: 'resync' });
    await sleep(100);
    expect(trimmed.events).toHaveLength(1);
  });

  it('stores a given id as the stream id, and rejects one that is not greater than the newest', async () => {
    const [a, b] = await instances(2, { url: redis.url, key: freshKey() });
    const reader = await b!.subscribe();
    const auto = await a!.channel.publish({ data: 'auto' });
    const given = `${BigInt(auto.split('-')[0]!) + 1n}-7`;
    await expect(a!.channel.publish({ data: 'given', id: given })).resolves.toBe(given);

    for (const id of [given, auto, 'abc']) {
      const err: unknown = await a!.channel.publish({ data: 'refused', id }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SseGuardError);
      expect(err).toMatchObject({ code: 'ERR_SSE_ADAPTER', message: expect.stringContaining('greater than the newest') });
    }
    expect(ids(await reader.received(2))).toEqual([auto, given]);
    await sleep(100);
    expect(reader.events).toHaveLength(2);
  });

  it('uses a client the app owns without closing it, and closes its own connections promptly', async () => {
    const connectionsReach = async (count: number): Promise<void> => {
      let seen = 0;
      for (let attempt = 0; attempt < 100; attempt++) {
        seen = (await admin.clientList()).length;
        if (seen === count) return;
        await sleep(20);
      }
      throw new Error(`expected ${count} connections to Redis, saw ${seen}`);
    };
    const baseline = (await admin.clientList()).length;
    const owned = createClient({ url: redis.url });
    owned.on('error', () => {});
    await owned.connect();
    cleanups.push(() => owned.isOpen && owned.close());
    const key = freshKey();
    const onOwned = await redisChannel({ client: owned, key });
    // The string form, as the demo calls it.
    const byUrl = await redisChannel(redis.url);
    const byOptions = await redisChannel({ url: redis.url, key });
    const channels = [onOwned, byUrl, byOptions];
    const srv = await serveChannel(byOptions);
    cleanups.push(() => srv.close());
    const reader = await read(`${srv.url}/events`);
    cleanups.push(() => reader.close());
    await waitFor('the subscriber', () => byOptions.size === 1);

    const id = await onOwned.publish({ data: 'through the owned client' });
    expect(ids(await reader.received(1))).toEqual([id]);
    // The owned client and the reader duplicated from it; a writer and a reader for each URL.
    await connectionsReach(baseline + 2 + 2 + 2);

    // Every reader is blocked in XREAD for up to 5 s: close() must not wait for it.
    for (const channel of channels) {
      const started = performance.now();
      await channel.close();
      expect(performance.now() - started).toBeLessThan(2500);
    }
    await reader.ended;
    expect(owned.isOpen).toBe(true);
    await connectionsReach(baseline + 1);
  });
});

describeWithBinary('redis-server', 'redisAdapter when Redis fails', (binary) => {
  it('reports Redis down at start with a clear error, keeps serving other routes, and recovers when Redis starts', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => process.off('unhandledRejection', onUnhandled));

    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const channel = await redisChannel(url, 10);
    const app = express();
    app.get('/health', (_req, res) => void res.send('ok'));
    app.get('/events', sse({ heartbeat: false }), (_req, res) => channel.subscribe(res.sse));
    const srv = await listen(app);
    cleanups.push(() => srv.close());

    const started = performance.now();
    const err: unknown = await channel.publish({ data: 'lost?' }).catch((e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(err).toBeInstanceOf(SseGuardError);
    expect(err).toMatchObject({ code: 'ERR_SSE_ADAPTER' });
    expect((err as Error).message).toContain(url);
    expect((err as Error).message).toMatch(/Start Redis there/);

    const health = await fetch(`${srv.url}/health`);
    expect(await health.text()).toBe('ok');
    // A replay cannot be answered: the stream ends, and the client will retry.
    const replaying = await read(`${srv.url}/events`, '1-0');
    cleanups.push(() => replaying.close());
    await replaying.ended;

    const redis = await startRedis(binary, port);
    cleanups.push(() => redis.stop());
    const live = await read(`${srv.url}/events`);
    cleanups.push(() => live.close());
    const id = await publishWhenBack(channel, 'after start');
    expect(ids(await live.received(1))).toEqual([id]);
    expect(unhandled).toEqual([]);
  });

  it('resumes every instance after Redis drops its connections or restarts: nothing it holds lost, nothing twice', async () => {
    const port = await freePort();
    let redis = await startRedis(binary, port);
    cleanups.push(() => redis.stop());
    const admin = createClient({ url: redis.url });
    admin.on('error', () => {});
    await admin.connect();
    cleanups.push(() => admin.close());
    const key = freshKey();
    const all = await instances(3, { url: redis.url, key });
    const readers = await Promise.all(all.map((i) => i.subscribe()));
    const expected: string[] = [];
    for (const [n, i] of all.entries()) expected.push(await i.channel.publish({ data: n }));
    for (const reader of readers) await reader.received(3);

    // Every connection dropped, and an entry added in the same transaction: no reader saw it arrive,
    // so each must find it by resuming from the last id it delivered.
    const [sample] = (await admin.xRange(key, '-', '+', { COUNT: 1 })) ?? [];
    const [, added] = (await admin
      .multi()
      .addCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'])
      .addCommand(['XADD', key, '*', ...Object.entries(sample!.message).flat()])
      .exec()) as unknown as [number, string];
    expected.push(added);
    for (const reader of readers) expect(ids(await reader.received(4))).toEqual(expected);

    // A crash: publishing fails at once, and nothing is queued to go out later.
    await redis.stop('SIGKILL');
    const down = performance.now();
    const err: unknown = await all[0]!.channel.publish({ data: 'while down' }).catch((e: unknown) => e);
    expect(performance.now() - down).toBeLessThan(1000);
    expect(err).toMatchObject({ code: 'ERR_SSE_ADAPTER', message: expect.stringContaining(redis.url) });

    // The restart lost the stream, and with it the entry each reader had read last: whatever was
    // appended and lost before the crash, the subscribers cannot know it, so they are told to resync.
    redis = await startRedis(binary, port);
    for (const [n, i] of all.entries()) expected.push(await publishWhenBack(i.channel, 10 + n));
    for (const reader of readers) {
      const events = await reader.received(8);
      expect(ids(events)).toEqual([...expected.slice(0, 4), undefined, ...expected.slice(4)]);
      expect(events[4]).toMatchObject({ event: 'resync', data: JSON.stringify({ lastEventId: expected[3] }) });
      expect(dataOf([...events.slice(0, 4), ...events.slice(5)])).toEqual([0, 1, 2, 0, 10, 11, 12]);
    }
    await sleep(200);
    for (const reader of readers) expect(reader.events).toHaveLength(8);

    // The restart lost the stream: an id from before it can only be answered with a resync.
    const late = await all[1]!.subscribe(expected[2]);
    expect((await late.received(1))[0]).toMatchObject({ event: 'resync' });
  });

  it("keeps delivering after the app's client gave up by its reconnect strategy: the reader duplicated from it reconnects", async () => {
    const { redis, admin } = await startRedisWithAdmin(binary, await freePort());
    cleanups.push(() => redis.stop(), () => admin.close());
    const owned = createClient({ url: redis.url, socket: { reconnectStrategy: false } });
    owned.on('error', () => {});
    await owned.connect();
    cleanups.push(() => owned.isOpen && owned.destroy());
    const key = freshKey();
    const onOwned = await instance({ client: owned, key }, 10);
    const other = await instance({ url: redis.url, key }, 10);
    const reader = await onOwned.subscribe();
    const first = await other.channel.publish({ data: 1 });
    expect(ids(await reader.received(1))).toEqual([first]);

    // Every connection dropped: the app's client stays down, as its strategy says.
    await admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes']);
    await waitFor("the app's client to give up", () => !owned.isOpen);
    const second = await publishWhenBack(other.channel, 2);
    expect(ids(await reader.received(2))).toEqual([first, second]);
    // Its own publish() says the client is down, rather than failing silently.
    await expect(onOwned.channel.publish({ data: 3 })).rejects.toMatchObject({ code: 'ERR_SSE_ADAPTER', message: expect.stringMatching(/not connected/) });
  });
});

describeWithBinary('redis-server', 'redisAdapter on a link that stops answering', (binary) => {
  let redis: RedisServer;
  let admin: AdminClient;
  let proxy: TcpProxy;
  let proxied: string;

  beforeAll(async () => {
    ({ redis, admin } = await startRedisWithAdmin(binary));
  });
  afterAll(async () => {
    await admin?.close();
    await redis?.stop();
  });
  // A fresh proxy for each test, so that no connection frozen by one is left to the next.
  beforeEach(async () => {
    proxy = await tcpProxy(redis.port);
    proxied = `redis://127.0.0.1:${proxy.port}`;
    cleanups.push(() => proxy.close());
  });

  /** A node-redis client through the proxy with its defaults: what the adapter's bounds are compared with. */
  async function bareClient() {
    const client = createClient({ url: proxied });
    client.on('error', () => {});
    await client.connect();
    cleanups.push(() => client.destroy());
    return client;
  }

  /** Where `promise` stands now. */
  async function settled(promise: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
    const pending = Symbol('pending');
    const outcome = await Promise.race([promise.then(() => 'resolved' as const, () => 'rejected' as const), sleep(0).then(() => pending)]);
    return outcome === pending ? 'pending' : (outcome as 'resolved' | 'rejected');
  }

  it('resyncs the subscribers of an instance whose reader was held while 3000 entries went past MAXLEN ~ 1000; nothing out of order or twice', async () => {
    const key = freshKey();
    const a = await instance({ url: redis.url, key }, 0);
    const b = await instance({ url: proxied, key }, 0);
    const onA = await a.subscribe();
    const onB = await b.subscribe();
    const published: string[] = [];
    for (let n = 0; n < 3; n++) published.push(await a.channel.publish({ data: n }));
    await onB.received(3);

    proxy.blackhole();
    for (let batch = 0; batch < 30; batch++) {
      published.push(...(await Promise.all(Array.from({ length: 100 }, (_, n) => a.channel.publish({ data: 3 + batch * 100 + n })))));
    }
    published.sort(compareIds);
    // MAXLEN ~ trims whole nodes: about 1000 entries are left of 3003.
    expect(await admin.xLen(key)).toBeLessThan(1500);
    proxy.resume();

    const last = published[published.length - 1]!;
    await waitFor(`the newest event on B`, () => onB.events.some((e) => e.id === last), 15_000);
    // The control: the instance that was never held got all of them, in order.
    expect(ids(await onA.received(published.length))).toEqual(published);
    expect(silentLoss(onB.events, published)).toBeUndefined();
    const resyncs = onB.events.filter((e) => e.event === 'resync');
    expect(resyncs).toHaveLength(1);
    // Its data names the last event delivered before the gap: the last id this client has.
    const at = onB.events.indexOf(resyncs[0]!);
    expect(JSON.parse(resyncs[0]!.data)).toEqual({ lastEventId: onB.events[at - 1]!.id });
    await sleep(200);
    expect(onB.events.filter((e) => e.id !== undefined).length).toBeLessThan(1500);
  });

  it('delivers every event published after a subscriber got its 200 while the instance first reached Redis 300 ms late', async () => {
    const key = freshKey();
    const a = await instance({ url: redis.url, key }, 0);
    // B's first connection is held for 300 ms: its channel exists and serves, but cannot reach Redis.
    proxy.blackhole();
    const late = new Channel({ adapter: redisAdapter({ url: proxied, key }) });
    cleanups.push(() => late.close());
    const srv = await serveChannel(late);
    cleanups.push(() => srv.close());
    const reader = await read(`${srv.url}/events`);
    cleanups.push(() => reader.close());
    await waitFor('the subscriber', () => late.size === 1);

    const published: string[] = [];
    const started = performance.now();
    let resumed = false;
    while (performance.now() - started < 600) {
      if (!resumed && performance.now() - started >= 300) {
        proxy.resume();
        resumed = true;
      }
      published.push(await a.channel.publish({ data: published.length }));
      await sleep(10);
    }
    const last = published[published.length - 1]!;
    await waitFor('the newest event', () => reader.events.some((e) => e.id === last), 10_000);
    // Every one of them, no resync needed: B follows from the moment it was created, not from when Redis first answered.
    expect(ids(reader.events)).toEqual(published);
    expect(published.length).toBeGreaterThan(20);
  });

  it('rejects publish() on a black-holed link within its bound, naming it, where a bare client is still waiting', async () => {
    const key = freshKey();
    const b = await instance({ url: proxied, key }, 0);
    const bare = await bareClient();
    proxy.blackhole();

    const control = bare.xAdd(key, '*', { body: 'control' });
    control.catch(() => {});
    const started = performance.now();
    const err: unknown = await b.channel.publish({ data: 'into the void' }).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(SseGuardError);
    expect(err).toMatchObject({ code: 'ERR_SSE_ADAPTER', message: expect.stringContaining('within 2000 ms') });
    expect((err as Error).message).toContain(proxied);
    expect(elapsed).toBeGreaterThan(1500);
    expect(elapsed).toBeLessThan(4000);
    expect(await settled(control)).toBe('pending');
  });

  it('closes a channel promptly on a black-holed link, a publish in flight included, where a bare client close() is still waiting', async () => {
    const key = freshKey();
    const b = await instance({ url: proxied, key }, 0);
    const reader = await b.subscribe();
    const bare = await bareClient();
    proxy.blackhole();

    const inFlight = b.channel.publish({ data: 'in flight' });
    inFlight.catch(() => {});
    void bare.xAdd(key, '*', { body: 'control' }).catch(() => {});
    const control = bare.close();
    control.catch(() => {});
    await sleep(50);
    const started = performance.now();
    await b.channel.close();
    expect(performance.now() - started).toBeLessThan(2500);
    await reader.ended;
    expect(await settled(inFlight)).toBe('rejected');
    expect(await settled(control)).toBe('pending');
  });

  it('closes a channel promptly while its first connection to Redis is still held', async () => {
    proxy.blackhole();
    const channel = new Channel({ adapter: redisAdapter({ url: proxied, key: freshKey() }) });
    const publishing = channel.publish({ data: 'never' });
    publishing.catch(() => {});
    await waitFor('the adapter to reach the proxy', () => proxy.accepted >= 2);
    const started = performance.now();
    await channel.close();
    expect(performance.now() - started).toBeLessThan(2500);
    expect(await settled(publishing)).toBe('rejected');
  });

  it('detects a reader frozen on a silent connection, reconnects, and resumes from its position', async () => {
    const key = freshKey();
    const b = await instance({ url: proxied, key }, 0);
    const reader = await b.subscribe();
    const published = [await b.channel.publish({ data: 0 })];
    await reader.received(1);
    // The control: a bare client blocked in XREAD on the same link.
    const bare = await bareClient();
    const control = bare.xRead({ key, id: published[0]! }, { BLOCK: 0 });
    control.catch(() => {});
    const accepted = proxy.accepted;

    // Existing connections go silent; a new one would get through, as after a failover.
    proxy.blackhole({ newConnections: 'forward' });
    const started = performance.now();
    const [sample] = (await admin.xRange(key, '-', '+', { COUNT: 1 })) ?? [];
    for (let n = 0; n < 6; n++) published.push(await admin.xAdd(key, '*', sample!.message));

    await waitFor('the 6 events appended while the reader was frozen', () => reader.events.length >= 7, 15_000);
    const recovered = performance.now() - started;
    expect(ids(reader.events)).toEqual(published);
    // Found because its XREAD went 5 s without a reply, not by luck.
    expect(recovered).toBeGreaterThan(3000);
    expect(proxy.accepted).toBeGreaterThan(accepted);
    expect(await settled(control)).not.toBe('resolved');
    await sleep(200);
    expect(reader.events).toHaveLength(7);
  });

  it("drops an idle writer's silent connection by its health checks, so that the next publish() goes out at once", async () => {
    const key = freshKey();
    const b = await instance({ url: proxied, key }, 0);
    const reader = await b.subscribe();
    await b.channel.publish({ data: 'before' });
    await reader.received(1);
    const accepted = proxy.accepted;

    proxy.blackhole({ newConnections: 'forward' });
    // Nothing published meanwhile: only the PING left unanswered, then 5 s of silence, show the link is dead.
    await waitFor('both connections replaced', () => proxy.accepted >= accepted + 2, 12_000);
    await sleep(500);
    const started = performance.now();
    const id = await b.channel.publish({ data: 'after' });
    // Not the 2 s of a command timing out on the old connection.
    expect(performance.now() - started).toBeLessThan(1000);
    await waitFor('the event published after the freeze', () => reader.events.some((e) => e.id === id), 5000);
  });

  it('replaces its writer when commands go unanswered while the app keeps publishing, and publishes again', async () => {
    const key = freshKey();
    const b = await instance({ url: proxied, key }, 0);
    const reader = await b.subscribe();
    await b.channel.publish({ data: 'before' });
    await reader.received(1);

    proxy.blackhole({ newConnections: 'forward' });
    const started = performance.now();
    const outcomes: Array<string | undefined> = [];
    let stored: string | undefined;
    // One publish every 100 ms, as a busy app would: the writes keep the frozen socket from timing out.
    while (stored === undefined && performance.now() - started < 12_000) {
      const attempt = b.channel.publish({ data: 'after' });
      attempt.then(
        (id) => (stored ??= id),
        (err: unknown) => outcomes.push((err as SseGuardError).code),
      );
      await sleep(100);
    }
    expect(stored).toBeDefined();
    expect(performance.now() - started).toBeLessThan(5000);
    expect(outcomes.length).toBeGreaterThan(0);
    expect(outcomes.every((code) => code === 'ERR_SSE_ADAPTER')).toBe(true);
    // The reader, frozen too, comes back by its socket timeout and delivers it.
    await waitFor('the event published after the writer came back', () => reader.events.some((e) => e.id === stored), 15_000);
  });
});
