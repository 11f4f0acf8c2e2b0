// The adapter's `lost` signal (a shared log trimmed past what this instance had read): the channel
// must tell every subscriber, whatever state it is in, before the next event reaches it.
import { Channel, memoryAdapter, type ChannelAdapter, type ChannelOptions } from '../src/index';
import { collect } from '../src/testing';
import { serveChannel, type ChannelServer } from './helpers/channel';
import { waitFor } from './helpers/server';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Lossy {
  adapter: ChannelAdapter;
  /** Calls the channel's `lost` callback, as an adapter that found a gap would. */
  lose(after: string): void;
  /** Lets pending since() calls answer. */
  release(): void;
}

// A memory adapter whose since() waits for release(), so that a subscriber can be caught mid-join.
function lossyAdapter(): Lossy {
  const inner = memoryAdapter();
  let lost: (after: string) => void = () => {};
  let release = (): void => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  return {
    adapter: {
      attach(deliver, history, onLost) {
        lost = onLost!;
        return inner.attach(deliver, history, onLost);
      },
      append: (body, id) => inner.append(body, id),
      since: async (lastEventId) => {
        await gate;
        return inner.since(lastEventId);
      },
      close: () => inner.close(),
    },
    lose: (after) => lost(after),
    release: () => release(),
  };
}

async function setup(options: ChannelOptions): Promise<{ channel: Channel; srv: ChannelServer }> {
  const channel = new Channel(options);
  const srv = await serveChannel(channel);
  cleanups.push(
    () => srv.close(),
    () => channel.close(),
  );
  return { channel, srv };
}

describe('Channel: an adapter reports lost events', () => {
  it('sends every live subscriber the resync event, naming the last id delivered, before the next event', async () => {
    const lossy = lossyAdapter();
    cleanups.push(() => lossy.release());
    const { channel, srv } = await setup({ adapter: lossy.adapter });
    const clients = [0, 1].map(() => collect(`${srv.url}/events`, { count: 4, timeout: 5000 }));
    await waitFor('2 subscribers', () => channel.size === 2);
    const first = await channel.publish({ data: 1 });
    const second = await channel.publish({ data: 2 });
    lossy.lose(second);
    const third = await channel.publish({ data: 3 });
    for (const { events } of await Promise.all(clients)) {
      expect(events.map((e) => [e.event, e.id])).toEqual([
        ['message', first],
        ['message', second],
        ['resync', undefined],
        ['message', third],
      ]);
      expect(JSON.parse(events[2]!.data)).toEqual({ lastEventId: second });
    }
  });

  it("closes live subscribers (reason 'server') when the channel sends no resync event, so that they reconnect", async () => {
    const lossy = lossyAdapter();
    cleanups.push(() => lossy.release());
    const { channel, srv } = await setup({ adapter: lossy.adapter, resyncEvent: false });
    const client = collect(`${srv.url}/events`, { timeout: 5000 });
    await waitFor('the subscriber', () => channel.size === 1);
    const id = await channel.publish({ data: 1 });
    lossy.lose(id);
    const { events } = await client;
    expect(events.map((e) => e.id)).toEqual([id]);
    expect([...srv.reasons.values()]).toEqual(['server']);
    expect(channel.size).toBe(0);
  });

  it("closes a subscriber still catching up (its replay ends before the gap), with reason 'server'", async () => {
    const lossy = lossyAdapter();
    const { channel, srv } = await setup({ history: 10, adapter: lossy.adapter });
    const id = await channel.publish({ data: 1 });
    const client = collect(`${srv.url}/events`, { timeout: 5000, headers: { 'Last-Event-ID': id } });
    await waitFor('the joining subscriber', () => channel.size === 1);
    lossy.lose(id);
    const { events } = await client;
    lossy.release();
    expect(events).toEqual([]);
    expect([...srv.reasons.values()]).toEqual(['server']);
    expect(channel.size).toBe(0);
  });
});
