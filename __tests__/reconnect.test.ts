// The real `eventsource` client against a Channel: the server drops the connection, the client comes
// back on its own with Last-Event-ID, and the history fills the gap.
import { EventSource } from 'eventsource';
import { Channel, type ChannelAdapter } from '../src/index';
import { autoIds, serveChannel, slowReplayAdapter, type ChannelServer } from './helpers/channel';
import { sleep, waitFor } from './helpers/server';

// Short, so that a reconnect takes tens of ms rather than the client's default of seconds.
const retry = 50;

let channel: Channel | undefined;
let srv: ChannelServer;
let client: EventSource;
// The id of every message the client dispatched, in order.
let ids: string[];

async function start(adapter?: ChannelAdapter): Promise<void> {
  channel = new Channel({ history: 1000, adapter });
  srv = await serveChannel(channel, { retry });
  ids = [];
  client = new EventSource(`${srv.url}/events`);
  client.addEventListener('message', (event) => ids.push(event.lastEventId));
  await waitFor('the client to subscribe', () => channel!.size === 1);
}

afterEach(async () => {
  client.close();
  await channel?.close();
  await srv.close();
});

const drops: Array<[string, (index: number) => void]> = [
  ['closes the stream', (index) => srv.streams[index]!.close()],
  ['destroys the socket', (index) => srv.sockets[index]!.destroy()],
];

/** Resolves to the id of the last event published. */
async function publishAll(from: number, to: number): Promise<string> {
  let id = '';
  for (let n = from; n <= to; n++) id = await channel!.publish({ data: String(n) });
  return id;
}

describe.each(drops)('when the server %s', (_name, drop) => {
  beforeEach(() => start());

  it('the client reconnects on its own, sending the id of the last event it got', async () => {
    const third = await publishAll(1, 3);
    await waitFor('three events', () => ids.length === 3);
    drop(0);
    await waitFor('the reconnect', () => srv.streams.length === 2);
    expect(srv.streams[1]!.lastEventId).toBe(third);
  });

  it('misses nothing published while it was away, and gets nothing twice', async () => {
    const { range } = autoIds(await publishAll(1, 3));
    await waitFor('three events', () => ids.length === 3);
    drop(0);
    await waitFor('the server to see the connection gone', () => channel!.size === 0);
    await publishAll(4, 6);
    await waitFor('the reconnect', () => srv.streams.length === 2 && channel!.size === 1);
    await publishAll(7, 9);
    await waitFor('nine events', () => ids.length >= 9);
    // Room for a duplicate to show up, had one been sent.
    await sleep(100);
    expect(ids).toEqual(range(1, 9));
  });
});

describe('when the server drops the connection again and again while events are published', () => {
  it.each<[string, () => ChannelAdapter | undefined]>([
    ['the in-memory history', () => undefined],
    ['a history that answers after 20 ms', () => slowReplayAdapter(() => sleep(20), 'before the wait')],
  ])('the client gets every event exactly once, in order, replayed from %s', async (_name, adapter) => {
    await start(adapter());
    const total = 150;
    let dropped = 0;
    let last = '';
    for (let n = 1; n <= total; n++) {
      last = await channel!.publish({ data: String(n) });
      const current = srv.streams.length - 1;
      // Every 25th event, cut the live connection, alternating the two ways a server drops one.
      if (n % 25 === 0 && !srv.streams[current]!.closed) drops[dropped++ % 2]![1](current);
      await sleep(3);
    }
    await waitFor(`${total} events`, () => ids.length >= total, 10_000);
    await sleep(100);
    expect(ids).toEqual(autoIds(last).range(1, total));
    expect(dropped).toBeGreaterThanOrEqual(3);
    expect(srv.streams.length).toBe(dropped + 1);
  });
});
