import { createParser } from 'eventsource-parser';
import express from 'express';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  Channel,
  memoryAdapter,
  sse,
  type ChannelAdapter,
  type ChannelOptions,
  type GuardReason,
  type SseEvent,
  type SseOptions,
  type SseStream,
} from '../src/index';
import { collect, type Collected } from '../src/testing';
import { autoIds, idsOf, serveChannel, slowReplayAdapter, type ChannelServer } from './helpers/channel';
import { stalledClient } from './helpers/raw';
import { cleanupAfterEach, listen, sleep, waitFor } from './helpers/server';

const cleanups = cleanupAfterEach();

async function setup(options: ChannelOptions = {}, sseOptions: SseOptions = {}): Promise<{ channel: Channel; srv: ChannelServer }> {
  const channel = new Channel(options);
  const srv = await serveChannel(channel, sseOptions);
  cleanups.push(
    () => srv.close(),
    () => channel.close(),
  );
  return { channel, srv };
}

/**
 * Opens `count` clients (with `lastEventId` as their Last-Event-ID, if given) and waits until the
 * channel counts them. Each resolves when the channel closes their stream.
 */
async function subscribe(channel: Channel, srv: ChannelServer, count = 1, lastEventId?: string): Promise<Array<Promise<Collected>>> {
  const before = channel.size;
  const headers = lastEventId === undefined ? undefined : { 'Last-Event-ID': lastEventId };
  const clients = Array.from({ length: count }, () => collect(`${srv.url}/events`, { timeout: 10_000, headers }));
  await waitFor(`${count} subscriber(s)`, () => channel.size === before + count);
  return clients;
}

/** Publishes `{ n }` for each n from `from` to `to`; resolves to the id of the last. */
async function publishAll(channel: Channel, from: number, to: number): Promise<string> {
  let id = '';
  for (let n = from; n <= to; n++) id = await channel.publish({ data: { n } });
  return id;
}

describe('Channel: publish and subscribe', () => {
  it('delivers each event to every subscriber, in publish order', async () => {
    const { channel, srv } = await setup();
    const clients = await subscribe(channel, srv, 3);
    await publishAll(channel, 1, 5);
    await channel.close();
    for (const client of await Promise.all(clients)) {
      expect(client.events.map((e) => JSON.parse(e.data))).toEqual([1, 2, 3, 4, 5].map((n) => ({ n })));
      expect(client.ended).toBe(true);
    }
  });

  it('assigns ids <prefix>-1, <prefix>-2, <prefix>-3… to events published without one, and resolves to the id', async () => {
    const { channel, srv } = await setup();
    const [client] = await subscribe(channel, srv);
    const ids = [await channel.publish({ data: 'a' }), await channel.publish({ data: 'b' }), await channel.publish({ data: 'c' })];
    await channel.close();
    const { range } = autoIds(ids[0]!);
    expect(ids).toEqual(range(1, 3));
    expect(idsOf((await client!).events)).toEqual(range(1, 3));
  });

  it('gives every channel its own id prefix, even channels created in the same millisecond', async () => {
    const now = jest.spyOn(Date, 'now').mockReturnValue(Date.now());
    cleanups.push(() => now.mockRestore());
    const channels = Array.from({ length: 20 }, () => new Channel());
    cleanups.push(() => Promise.all(channels.map((channel) => channel.close())));
    // Each channel's first id: they can differ only in the prefix.
    const ids = await Promise.all(channels.map((channel) => channel.publish({ data: 'a' })));
    expect(new Set(ids).size).toBe(channels.length);
  });

  it('gives processes started in the same millisecond different id prefixes', async () => {
    const now = jest.spyOn(Date, 'now').mockReturnValue(Date.now());
    cleanups.push(() => now.mockRestore());
    // A fresh copy of the module for each, as a new process would load it.
    const adapterOfAnotherProcess = (): ChannelAdapter => {
      let adapter: ChannelAdapter | undefined;
      jest.isolateModules(() => {
        adapter = (require('../src/fanout/adapter') as typeof import('../src/fanout/adapter')).memoryAdapter();
      });
      return adapter!;
    };
    const channels = [new Channel({ adapter: adapterOfAnotherProcess() }), new Channel({ adapter: adapterOfAnotherProcess() })];
    cleanups.push(() => Promise.all(channels.map((channel) => channel.close())));
    const [first, second] = await Promise.all(channels.map((channel) => channel.publish({ data: 'a' })));
    expect(first).not.toBe(second);
  });

  it('keeps an id given by the publisher', async () => {
    const { channel, srv } = await setup();
    const [client] = await subscribe(channel, srv);
    expect(await channel.publish({ id: 'order-7', data: 'a' })).toBe('order-7');
    expect(await channel.publish({ id: 42, data: 'b' })).toBe('42');
    await channel.close();
    expect(idsOf((await client!).events)).toEqual(['order-7', '42']);
  });

  it('sends a named event with its name and multi-line data as the client should read it', async () => {
    const { channel, srv } = await setup();
    const [client] = await subscribe(channel, srv);
    const { idOf } = autoIds(await channel.publish({ event: 'headline', data: 'line one\nline two' }));
    await channel.close();
    expect((await client!).events).toMatchObject([{ event: 'headline', data: 'line one\nline two', id: idOf(1) }]);
  });

  it('starts a subscriber without Last-Event-ID at the next live event', async () => {
    const { channel, srv } = await setup({ history: 10 });
    const { idOf } = autoIds(await publishAll(channel, 1, 3));
    const [client] = await subscribe(channel, srv);
    await channel.publish({ data: 'live' });
    await channel.close();
    expect((await client!).events).toMatchObject([{ id: idOf(4), data: 'live' }]);
  });
});

describe('Channel: size', () => {
  it('counts subscribers as they join and as they leave', async () => {
    const { channel, srv } = await setup();
    expect(channel.size).toBe(0);
    const leaver = collect(`${srv.url}/events`, { count: 1, timeout: 5000 });
    await waitFor('the first subscriber', () => channel.size === 1);
    const [stayer] = await subscribe(channel, srv);
    expect(channel.size).toBe(2);

    await channel.publish({ data: 'bye' });
    await leaver;
    await waitFor('the client that left to be removed', () => channel.size === 1);

    srv.streams[1]!.close();
    expect(channel.size).toBe(0);
    expect((await stayer!).ended).toBe(true);
  });
});

describe('Channel: close()', () => {
  it('closes every subscriber with reason server and ends their responses', async () => {
    const { channel, srv } = await setup();
    const clients = await subscribe(channel, srv, 3);
    await channel.close();
    expect(channel.size).toBe(0);
    expect([...srv.reasons.values()]).toEqual(['server', 'server', 'server']);
    for (const client of await Promise.all(clients)) expect(client.ended).toBe(true);
  });

  it('rejects publish() afterwards with ERR_SSE_CHANNEL_CLOSED', async () => {
    const { channel } = await setup();
    await channel.close();
    await expect(channel.publish({ data: 'late' })).rejects.toMatchObject({ code: 'ERR_SSE_CHANNEL_CLOSED' });
  });

  it('closes a stream subscribed afterwards at once', async () => {
    const { channel, srv } = await setup();
    await channel.close();
    const client = await collect(`${srv.url}/events`, { timeout: 5000 });
    expect(client).toMatchObject({ status: 200, events: [], ended: true });
    expect([...srv.reasons.values()]).toEqual(['server']);
  });
});

describe('Channel: invalid events', () => {
  it.each<[string, unknown]>([
    ['an event name with a line feed', { event: 'a\nb', data: 'x' }],
    ['an event name with a carriage return', { event: 'a\rdata: injected', data: 'x' }],
    ['an id with a line feed', { id: '1\nevent: injected', data: 'x' }],
    ['an id with NUL', { id: 'a\0b', data: 'x' }],
    ['a negative retry', { retry: -1, data: 'x' }],
    ['an event without data', { event: 'empty' }],
  ])('rejects %s with ERR_SSE_INVALID_FIELD and sends nothing', async (_name, event) => {
    const { channel, srv } = await setup({ history: 10 });
    const [client] = await subscribe(channel, srv);
    await expect(channel.publish(event as SseEvent)).rejects.toMatchObject({ code: 'ERR_SSE_INVALID_FIELD' });
    // The next valid event is the first the client sees, and it takes the first id: the invalid one left no trace.
    const { idOf } = autoIds(await channel.publish({ data: 'valid' }));
    await channel.close();
    expect((await client!).events).toMatchObject([{ id: idOf(1), data: 'valid' }]);
  });
});

describe('Channel: Last-Event-ID replay', () => {
  it("replays every event after the client's last id, in order, then the live ones", async () => {
    const { channel, srv } = await setup({ history: 10 });
    const { idOf, range } = autoIds(await publishAll(channel, 1, 5));
    const [client] = await subscribe(channel, srv, 1, idOf(2));
    await publishAll(channel, 6, 7);
    await channel.close();
    const { events } = await client!;
    expect(idsOf(events)).toEqual(range(3, 7));
    expect(events.map((e) => JSON.parse(e.data).n)).toEqual([3, 4, 5, 6, 7]);
  });

  it('sends a client that missed nothing neither replay nor resync', async () => {
    const { channel, srv } = await setup({ history: 10 });
    const { idOf } = autoIds(await publishAll(channel, 1, 5));
    const [client] = await subscribe(channel, srv, 1, idOf(5));
    await channel.publish({ data: 'live' });
    await channel.close();
    expect((await client!).events).toMatchObject([{ id: idOf(6), data: 'live' }]);
  });

  it('replays all of up to `history` missed events', async () => {
    const { channel, srv } = await setup({ history: 3 });
    const { idOf, range } = autoIds(await publishAll(channel, 1, 10));
    const [client] = await subscribe(channel, srv, 1, idOf(7));
    await channel.close();
    expect(idsOf((await client!).events)).toEqual(range(8, 10));
  });

  it('replays a history larger than maxBufferedBytes at the pace the client reads, without dropping it', async () => {
    const { channel, srv } = await setup({ history: 200 }, { highWaterMark: 16 * 1024, maxBufferedBytes: 64 * 1024 });
    const payload = 'x'.repeat(8 * 1024);
    const { idOf, range } = autoIds(await channel.publish({ data: 'seen' }));
    // 1.6 MB behind the client: 25 times maxBufferedBytes.
    for (let n = 2; n <= 201; n++) await channel.publish({ data: payload });
    const client = collect(`${srv.url}/events`, { count: 201, timeout: 10_000, headers: { 'Last-Event-ID': idOf(1) } });
    await waitFor('the subscriber', () => channel.size === 1);
    await channel.publish({ data: 'live' });
    const { events } = await client;
    expect(idsOf(events)).toEqual(range(2, 202));
    expect(events.at(-1)!.data).toBe('live');
    expect([...srv.reasons.values()]).not.toContain('slow-consumer');
  });

  it('paces such a replay over HTTP/2 as well, where streams share one socket', async () => {
    const channel = new Channel({ history: 200 });
    const middleware = sse({ heartbeat: false, highWaterMark: 16 * 1024, maxBufferedBytes: 64 * 1024 });
    const server = http2.createServer((req, res) => middleware(req as never, res as never, () => channel.subscribe((res as unknown as { sse: SseStream }).sse)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    cleanups.push(
      () => new Promise((resolve) => server.close(resolve)),
      () => new Promise<void>((resolve) => session.close(resolve)),
      () => channel.close(),
    );
    const { idOf, range } = autoIds(await channel.publish({ data: 'seen' }));
    for (let n = 2; n <= 201; n++) await channel.publish({ data: 'x'.repeat(8 * 1024) });

    const ids: string[] = [];
    const parser = createParser({ onEvent: (event) => ids.push(event.id!) });
    const stream = session.request({ ':path': '/events', 'last-event-id': idOf(1) });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => parser.feed(chunk));
    await waitFor('the whole replay', () => ids.length === 200, 5000);
    expect(ids).toEqual(range(2, 201));
    stream.close();
  });

  it('sends a live event published while a replay is written even when its id repeats one of the replay', async () => {
    const channel = new Channel({ history: 50 });
    const app = express();
    // Published as the client joins: its replay, larger than highWaterMark, is still being written.
    app.get('/events', sse({ heartbeat: false, highWaterMark: 16 * 1024 }), (_req, res) => {
      channel.subscribe(res.sse);
      void channel.publish({ id: 'r1', data: 'live, an id the replay had' }).then(() => channel.publish({ id: 'after', data: 'live' }));
    });
    const srv = await listen(app);
    cleanups.push(
      () => srv.close(),
      () => channel.close(),
    );
    await channel.publish({ id: 'start', data: 'seen' });
    for (let n = 1; n <= 25; n++) await channel.publish({ id: `r${n % 5}`, data: 'x'.repeat(32 * 1024) });
    const { events } = await collect(`${srv.url}/events`, { count: 27, timeout: 5000, headers: { 'Last-Event-ID': 'start' } });
    expect(events).toHaveLength(27);
    expect(events.slice(-2).map((e) => [e.id, e.data])).toEqual([['r1', 'live, an id the replay had'], ['after', 'live']]);
  });

  describe('with an adapter whose since() is async', () => {
    // The replay waits for release(): the window in which live events race it.
    function slowAdapter(readHistory: 'before the wait' | 'after the wait') {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      return { adapter: slowReplayAdapter(() => gate, readHistory), release };
    }

    it.each(['before the wait', 'after the wait'] as const)(
      'sends events published during the fetch once, in order, after the replay (history read %s)',
      async (readHistory) => {
        const { adapter, release } = slowAdapter(readHistory);
        const { channel, srv } = await setup({ history: 100, adapter });
        const { idOf, range } = autoIds(await publishAll(channel, 1, 5));
        const [client] = await subscribe(channel, srv, 1, idOf(2));
        await publishAll(channel, 6, 8);
        release();
        // Published while the replay is being written, and then well after it.
        await channel.publish({ data: { n: 9 } });
        await sleep(20);
        await channel.publish({ data: { n: 10 } });
        await channel.close();
        const { events } = await client!;
        expect(idsOf(events)).toEqual(range(3, 10));
        expect(events.map((e) => JSON.parse(e.data).n)).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
      },
    );

    it.each(['before the wait', 'after the wait'] as const)(
      'sends once an event published during the fetch whose id repeats, and every later one (history read %s)',
      async (readHistory) => {
        const { adapter, release } = slowAdapter(readHistory);
        const { channel, srv } = await setup({ history: 100, adapter });
        await channel.publish({ id: 'a', data: '1' });
        await channel.publish({ id: 'b', data: '2' });
        const [client] = await subscribe(channel, srv, 1, 'a');
        await channel.publish({ id: 'b', data: '3' });
        release();
        await sleep(20);
        await channel.publish({ id: 'b', data: '4' });
        await channel.close();
        const { events } = await client!;
        expect(events.map((e) => [e.id, e.data])).toEqual([['b', '2'], ['b', '3'], ['b', '4']]);
      },
    );

    it('waits for a since() that answers with a thenable other than a native Promise', async () => {
      const inner = memoryAdapter();
      // What some store clients return: it has then(), but is no Promise.
      const notAPromise = <T>(answer: () => T | PromiseLike<T>): PromiseLike<T> => ({
        then: (onFulfilled, onRejected) => new Promise<T>((resolve) => setImmediate(() => resolve(answer()))).then(onFulfilled, onRejected),
      });
      const adapter: ChannelAdapter = { ...inner, since: (lastEventId) => notAPromise(() => inner.since(lastEventId)) };
      const { channel, srv } = await setup({ history: 10, adapter });
      const { idOf, range } = autoIds(await publishAll(channel, 1, 5));
      const [client] = await subscribe(channel, srv, 1, idOf(2));
      await publishAll(channel, 6, 7);
      await channel.close();
      expect(idsOf((await client!).events)).toEqual(range(3, 7));
    });

    it('counts a subscriber whose replay is being fetched', async () => {
      const { adapter, release } = slowAdapter('after the wait');
      const { channel, srv } = await setup({ history: 10, adapter });
      const { idOf } = autoIds(await publishAll(channel, 1, 2));
      await subscribe(channel, srv, 1, idOf(1));
      expect(channel.size).toBe(1);
      release();
    });

    it('closes the subscriber with reason error when the replay cannot be fetched', async () => {
      const failing: ChannelAdapter = { ...memoryAdapter(), since: () => Promise.reject(new Error('store down')) };
      const { channel, srv } = await setup({ history: 10, adapter: failing });
      const client = collect(`${srv.url}/events`, { timeout: 5000, headers: { 'Last-Event-ID': '1' } });
      expect(await client).toMatchObject({ events: [], ended: true });
      expect([...srv.reasons.values()]).toEqual(['error']);
      expect(channel.size).toBe(0);
    });
  });
});

describe('Channel: resync', () => {
  const resync = (event: string, lastEventId: string) => ({ event, id: undefined, data: JSON.stringify({ lastEventId }) });

  it('sends an id the history never held one resync event first, without id, then the live events', async () => {
    const { channel, srv } = await setup({ history: 10 });
    const { idOf } = autoIds(await publishAll(channel, 1, 3));
    const [client] = await subscribe(channel, srv, 1, 'never-sent');
    await channel.publish({ data: 'live' });
    await channel.close();
    const { events } = await client!;
    expect(events).toMatchObject([resync('resync', 'never-sent'), { id: idOf(4), data: 'live' }]);
    expect(events[0]!.id).toBeUndefined();
  });

  it('a restarted channel sends resync for an id from before the restart, even when it has published as many events', async () => {
    const before = await setup({ history: 10 });
    const lastSeen = await publishAll(before.channel, 1, 3);
    await before.channel.close();
    await before.srv.close();
    const { channel, srv } = await setup({ history: 10 });
    const { idOf } = autoIds(await publishAll(channel, 1, 5));
    const [client] = await subscribe(channel, srv, 1, lastSeen);
    await channel.publish({ data: 'live' });
    await channel.close();
    expect((await client!).events).toMatchObject([resync('resync', lastSeen), { id: idOf(6), data: 'live' }]);
  });

  it('sends a resync to an id that fell out of the bounded history', async () => {
    const { channel, srv } = await setup({ history: 3 });
    const { idOf } = autoIds(await publishAll(channel, 1, 10));
    const [client] = await subscribe(channel, srv, 1, idOf(6));
    await channel.close();
    expect((await client!).events).toMatchObject([resync('resync', idOf(6))]);
  });

  it('sends a resync on reconnect when the channel keeps no history', async () => {
    const { channel, srv } = await setup();
    const { idOf } = autoIds(await publishAll(channel, 1, 3));
    const [client] = await subscribe(channel, srv, 1, idOf(2));
    await channel.close();
    expect((await client!).events).toMatchObject([resync('resync', idOf(2))]);
  });

  it('uses a custom resyncEvent name', async () => {
    const { channel, srv } = await setup({ history: 10, resyncEvent: 'reload' });
    const [client] = await subscribe(channel, srv, 1, '99');
    await channel.close();
    expect((await client!).events).toMatchObject([resync('reload', '99')]);
  });

  it('sends no resync with resyncEvent: false, only the live events', async () => {
    const { channel, srv } = await setup({ history: 10, resyncEvent: false });
    const [client] = await subscribe(channel, srv, 1, '99');
    const { idOf } = autoIds(await channel.publish({ data: 'live' }));
    await channel.close();
    expect((await client!).events).toMatchObject([{ id: idOf(1), data: 'live' }]);
  });
});

describe('Channel: options', () => {
  it('refuses a resyncEvent name that could inject fields, when the channel is created', () => {
    expect(() => new Channel({ resyncEvent: 'a\nb' })).toThrow(expect.objectContaining({ code: 'ERR_SSE_INVALID_FIELD' }));
  });

  it('refuses a memoryAdapter() already serving another Channel, which would take its events', async () => {
    const adapter = memoryAdapter();
    const first = new Channel({ adapter });
    cleanups.push(() => first.close());
    expect(() => new Channel({ adapter })).toThrow(expect.objectContaining({ code: 'ERR_SSE_INVALID_OPTION', message: expect.stringContaining('one per channel') }));
    // The first keeps its deliveries.
    const srv = await serveChannel(first);
    cleanups.push(() => srv.close());
    const [client] = await subscribe(first, srv);
    await first.publish({ data: 'still mine' });
    await first.close();
    expect((await client!).events.map((e) => e.data)).toEqual(['still mine']);
  });

  it('refuses a history that is not a non-negative integer', () => {
    expect(() => new Channel({ history: -1 })).toThrow(expect.objectContaining({ code: 'ERR_SSE_INVALID_OPTION' }));
    expect(() => new Channel({ history: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_SSE_INVALID_OPTION' }));
  });
});

describe('Channel: a subscriber that stops reading', () => {
  const maxBufferedBytes = 256 * 1024;
  const payload = 'x'.repeat(32 * 1024);
  const logged: Array<[GuardReason, Record<string, unknown>]> = [];
  let srv: ChannelServer;
  let channel: Channel;
  let fast: Collected[];
  let slowestPublish = 0;
  let published = 0;
  let lastId = '';
  let sizeAfterDrop = 0;

  // One scenario, several observations: two clients read, one stalls, and the publisher keeps going.
  beforeAll(async () => {
    channel = new Channel();
    srv = await serveChannel(channel, { maxBufferedBytes, highWaterMark: 64 * 1024, logger: (reason, details) => logged.push([reason, details]) });
    const readers = await subscribe(channel, srv, 2);
    const stalled = await stalledClient(srv.port, '/events');
    await waitFor('the stalled subscriber', () => channel.size === 3);
    const dropped = (): boolean => [...srv.reasons.values()].includes('slow-consumer');
    // The kernel's socket buffers take a few MB before anything queues in the process: bounded at 12.5 MB.
    for (let n = 1; n <= 400 && !dropped(); n++) {
      const start = performance.now();
      await channel.publish({ data: payload });
      slowestPublish = Math.max(slowestPublish, performance.now() - start);
      published = n;
      // Lets the readers' sockets drain, as a real publisher's pace would.
      await sleep(1);
    }
    sizeAfterDrop = channel.size;
    lastId = await channel.publish({ data: 'after the drop' });
    published++;
    await channel.close();
    fast = await Promise.all(readers);
    stalled.close();
    await srv.close();
  });

  it('lets publish() resolve at once for every event', () => {
    // Waiting on the stalled client would mean forever; the bound only absorbs a loaded machine.
    expect(slowestPublish).toBeLessThan(250);
  });

  it('drops the stalled subscriber with reason slow-consumer', () => {
    expect([...srv.reasons.values()].sort()).toEqual(['server', 'server', 'slow-consumer']);
    expect(sizeAfterDrop).toBe(2);
  });

  it('drops it only once its buffer passed maxBufferedBytes, and logs why', () => {
    const drops = logged.filter(([reason]) => reason === 'slow-consumer');
    expect(drops).toHaveLength(1);
    expect(drops[0]![1].bufferedBytes).toBeGreaterThan(maxBufferedBytes);
    expect(drops[0]![1].maxBufferedBytes).toBe(maxBufferedBytes);
  });

  it('keeps every other subscriber receiving every event, in order', () => {
    for (const client of fast) {
      expect(idsOf(client.events)).toEqual(autoIds(lastId).range(1, published));
      expect(client.events.at(-1)!.data).toBe('after the drop');
    }
  });
});

describe('Channel: a reconnecting subscriber that stops reading during its replay', () => {
  it('is dropped as a slow consumer once the live events queued for it pass maxBufferedBytes', async () => {
    const maxBufferedBytes = 64 * 1024;
    const logged: Array<Record<string, unknown>> = [];
    const { channel, srv } = await setup(
      { history: 800 },
      { highWaterMark: 16 * 1024, maxBufferedBytes, logger: (reason, details) => reason === 'slow-consumer' && logged.push(details) },
    );
    const chunk = 'x'.repeat(16 * 1024);
    const { idOf } = autoIds(await channel.publish({ data: 'seen' }));
    // 12.8 MB behind: more than the kernel's socket buffers take, so the replay has to wait for the client.
    for (let n = 2; n <= 801; n++) await channel.publish({ data: chunk });
    const request = http.get(`${srv.url}/events`, { headers: { 'Last-Event-ID': idOf(1) } }, (res) => res.pause());
    request.on('error', () => {});
    cleanups.push(() => request.destroy());
    await waitFor('the subscriber', () => channel.size === 1);

    const live = 'y'.repeat(8 * 1024);
    let published = 0;
    while (published < 100 && srv.reasons.size === 0) {
      await channel.publish({ data: live });
      published++;
      await sleep(2);
    }
    expect([...srv.reasons.values()]).toEqual(['slow-consumer']);
    expect(channel.size).toBe(0);
    // Dropped within a few events past the limit: the queue held no more than that.
    expect(published).toBeLessThanOrEqual(maxBufferedBytes / live.length + 2);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ url: '/events', maxBufferedBytes });
    expect(logged[0]!.bufferedBytes).toBeGreaterThan(maxBufferedBytes);
  });
});

describe('Channel: fan-out cost', () => {
  it('serializes each event once, however many subscribers', async () => {
    const { channel, srv } = await setup();
    const clients = await subscribe(channel, srv, 5);
    let serialized = 0;
    const data = {
      toJSON() {
        serialized++;
        return { hello: 'world' };
      },
    };
    await channel.publish({ data });
    await channel.close();
    for (const client of await Promise.all(clients)) expect(client.events).toMatchObject([{ data: '{"hello":"world"}' }]);
    expect(serialized).toBe(1);
  });

  it('writes the very same Buffer to every subscriber', async () => {
    const { channel, srv } = await setup();
    const clients = await subscribe(channel, srv, 5);
    const write = jest.spyOn(net.Socket.prototype, 'write');
    let frames: unknown[];
    try {
      await channel.publish({ data: 'shared' });
    } finally {
      // Read before restoring: mockRestore() also forgets the calls.
      frames = write.mock.calls.map(([chunk]) => chunk).filter((chunk) => Buffer.isBuffer(chunk) && chunk.includes('data: shared'));
      write.mockRestore();
    }
    expect(frames).toHaveLength(5);
    expect(new Set(frames).size).toBe(1);
    await channel.close();
    for (const client of await Promise.all(clients)) expect(client.events).toMatchObject([{ data: 'shared' }]);
  });
});
