// The Redis adapter against a real redis-server: three app instances over real sockets share one
// stream (fan-out, global ids, replay on another instance, resync), and survive Redis going away.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import express from 'express';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { createClient } from 'redis';
import { Channel, SseGuardError, sse } from '../src/index';
import { redisAdapter, type RedisAdapterOptions } from '../src/fanout/redis';
import { describeWithBinary } from './helpers/binaries';
import { serveChannel, type ChannelServer } from './helpers/channel';
import { listen, sleep, waitFor } from './helpers/server';

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

interface RedisServer {
  url: string;
  /** SIGTERM for a clean stop, SIGKILL for a crash. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

async function startRedis(binary: string, port: number): Promise<RedisServer> {
  const child: ChildProcess = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // Read to the end, so that its logging never blocks on a full pipe.
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit');
  await Promise.race([
    waitFor(`redis-server on port ${port}`, () => output.includes('Ready to accept connections'), 10_000),
    exited.then(([code]) => {
      throw new Error(`redis-server exited with ${String(code)}:\n${output}`);
    }),
  ]);
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

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

function compareIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bMs, bSeq] = b.split('-').map(BigInt) as [bigint, bigint];
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

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
  const channel = new Channel({ history, adapter: { ...adapter, attach: (deliver, size) => (attached = adapter.attach(deliver, size)) } });
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
  let admin: ReturnType<typeof createClient>;

  beforeAll(async () => {
    redis = await startRedis(binary, await freePort());
    admin = createClient({ url: redis.url });
    admin.on('error', () => {});
    await admin.connect();
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

    redis = await startRedis(binary, port);
    for (const [n, i] of all.entries()) expected.push(await publishWhenBack(i.channel, 10 + n));
    for (const reader of readers) {
      const events = await reader.received(7);
      expect(ids(events)).toEqual(expected);
      expect(dataOf(events)).toEqual([0, 1, 2, 0, 10, 11, 12]);
    }
    await sleep(200);
    for (const reader of readers) expect(reader.events).toHaveLength(7);

    // The restart lost the stream: an id from before it can only be answered with a resync.
    const late = await all[1]!.subscribe(expected[2]);
    expect((await late.received(1))[0]).toMatchObject({ event: 'resync' });
  });
});
