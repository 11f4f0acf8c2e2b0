// Part 2, concurrency: many simultaneous streams on one process, a broadcast reaching every one
// of them, and what each stream costs in memory.
import express from 'express';
import { Channel, sse } from '../src/index';
import { checkUnhandled, fileLimit, inBatches, KB, mb, ms, nowMicros, openEvents, percentile, scale, sleep, spawnServer, until, type EventClient, type Mode, type Part, type Serve } from './harness';

/** Streams held open at once; the runner raises the open-file limit for them. */
export const streamCount = (mode: Mode): number => scale(mode, 10_000, 4_000);

export const serve: Serve = ({ server }) => {
  const channel = new Channel();
  const app = express();
  app.get('/events', sse(), (_req, res) => channel.subscribe(res.sse));
  server.on('request', app);
  return {
    broadcast: (round: number) => channel.publish({ event: 'round', data: `${round} ${nowMicros()}` }),
    channelSize: () => channel.size,
  };
};

export async function run(mode: Mode, part: Part): Promise<void> {
  const streams = streamCount(mode);
  const rounds = scale(mode, 20, 10);
  const limit = fileLimit();
  // One descriptor per stream in this process and one in the server child, plus what Node holds.
  if (limit < streams + 256) throw new Error(`the open-file limit is ${limit}, too low for ${streams} streams; raise it (ulimit -n)`);
  const server = await spawnServer('concurrency');
  const clients: EventClient[] = [];
  try {
    const before = await server.probe();
    // Per round: how many streams got it, and the slowest arrival after the publish.
    const got = new Array<number>(rounds).fill(0);
    const slowest = new Array<number>(rounds).fill(0);
    const onEvent = ({ data }: { data: string }): void => {
      const [round, sentAt] = data.split(' ').map(Number) as [number, number];
      got[round]!++;
      slowest[round] = Math.max(slowest[round]!, nowMicros() - sentAt);
    };

    const open = (count: number): Promise<void> =>
      inBatches(count, 200, async () => {
        clients.push(await openEvents(`${server.url}/events`, { onEvent }));
      });
    // Measured at a quarter and at all streams: the slope is what one more stream costs, without
    // the one-time growth (young generation, JIT code, pools) that the first thousand pay for.
    const quarter = Math.floor(streams / 4);
    const started = Date.now();
    await open(quarter);
    await until(async () => (await server.call<number>('channelSize')) === quarter, 10_000);
    const atQuarter = await server.probe();
    await open(streams - quarter);
    const connectSeconds = (Date.now() - started) / 1000;
    const allOpen = await until(async () => (await server.call<number>('channelSize')) === streams, 10_000);
    const during = await server.probe();
    part.figure('streams', `${streams} opened in ${connectSeconds.toFixed(1)} s (${Math.round(streams / connectSeconds)}/s), 200 connecting at a time; open-file limit ${limit}`);
    part.check(`stats().open and channel.size reach ${streams}`, allOpen && during.open === streams, `open ${during.open}`);

    const perStream = (from: number, to: number, count: number): string => `${((to - from) / count / KB).toFixed(1)} KB`;
    part.figure('server memory after GC, at 0 / a quarter / all streams', `RSS ${mb(before.rss)} / ${mb(atQuarter.rss)} / ${mb(during.rss)}, heap ${mb(before.heapUsed)} / ${mb(atQuarter.heapUsed)} / ${mb(during.heapUsed)}`);
    part.figure('average per stream (fixed costs included)', `${perStream(before.rss, during.rss, streams)} RSS, ${perStream(before.heapUsed, during.heapUsed, streams)} heap`);
    part.figure('each further stream (from a quarter to all)', `${perStream(atQuarter.rss, during.rss, streams - quarter)} RSS, ${perStream(atQuarter.heapUsed, during.heapUsed, streams - quarter)} heap used, ${perStream(atQuarter.heapTotal, during.heapTotal, streams - quarter)} heap committed`);
    // The heap figure is exact from run to run; RSS moves by a few KB per stream with the pages V8
    // and malloc keep committed, hence its wider bound.
    const heap = (during.heapUsed - atQuarter.heapUsed) / (streams - quarter);
    const rss = (during.rss - atQuarter.rss) / (streams - quarter);
    part.check('heap per further stream < 16 KB', heap < 16 * KB, `${(heap / KB).toFixed(1)} KB`);
    part.check('RSS per further stream < 24 KB', rss < 24 * KB, `${(rss / KB).toFixed(1)} KB`);

    for (let round = 0; round < rounds; round++) {
      await server.call('broadcast', round);
      await sleep(50);
    }
    const delivered = await until(() => got.every((count) => count === streams), 30_000);
    const fanOut = slowest.map((micros) => micros / 1000);
    part.figure('broadcasts', `${rounds} rounds, one every 50 ms, each to ${streams} streams`);
    part.figure('publish to last stream', `p50 ${ms(percentile(fanOut, 50))}, max ${ms(percentile(fanOut, 100))}`);
    part.check('every broadcast reached every stream', delivered, `${got.reduce((a, b) => a + b, 0)} of ${rounds * streams} events`);

    for (const client of clients) client.close();
    const drained = await until(async () => (await server.probe()).open === 0, 10_000);
    const after = await server.probe();
    part.check('stats().open back to 0 once the clients left', drained, String(after.open));
    checkUnhandled(part, after);
  } finally {
    for (const client of clients) client.close();
    await server.stop();
  }
}
