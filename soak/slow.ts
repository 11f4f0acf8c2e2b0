// Part 3, slow consumers: clients that never read, among many that do, on one broadcast channel.
// Each slow one must be dropped once its buffer passes maxBufferedBytes, server memory must stay
// bounded, and the fast clients must not wait on the slow ones.
import express from 'express';
import { Channel, sse, stats, type CloseReason } from '../src/index';
import {
  checkUnhandled,
  inBatches,
  KB,
  MB,
  mb,
  ms,
  nowMicros,
  openEvents,
  percentile,
  rawGet,
  scale,
  sleep,
  spawnServer,
  until,
  type EventClient,
  type Mode,
  type Part,
  type Remote,
  type Serve,
} from './harness';

const HIGH_WATER_MARK = 64 * KB;
const MAX_BUFFERED = 256 * KB;

interface Broadcast {
  events: number;
  intervalMs: number;
  size: number;
}

interface Phase {
  baseRss: number;
  peakRss: number;
  peakBuffered: number;
  drops: number;
  /** The largest buffer a dropped stream had when it was dropped. */
  largestAtDrop: number;
  closes: Record<CloseReason, number>;
}

export const serve: Serve = ({ server }) => {
  const channel = new Channel();
  let phase: Phase;
  const reset = (): void => {
    phase = { baseRss: 0, peakRss: 0, peakBuffered: 0, drops: 0, largestAtDrop: 0, closes: { client: 0, server: 0, 'slow-consumer': 0, error: 0 } };
  };
  reset();
  const options = {
    heartbeat: false as const,
    highWaterMark: HIGH_WATER_MARK,
    maxBufferedBytes: MAX_BUFFERED,
    logger: (reason: string, details: Record<string, unknown>) => {
      if (reason !== 'slow-consumer') return;
      phase.drops++;
      phase.largestAtDrop = Math.max(phase.largestAtDrop, details.bufferedBytes as number);
    },
  };
  const app = express();
  app.get('/events', sse(options), (_req, res) => {
    res.sse.on('close', (reason) => phase.closes[reason]++);
    channel.subscribe(res.sse);
  });
  server.on('request', app);

  return {
    channelSize: () => channel.size,
    /** Publishes on a fixed schedule, each event stamped with its send time, sampling memory as it goes. */
    broadcast: async ({ events, intervalMs, size }: Broadcast): Promise<Phase> => {
      reset();
      phase.baseRss = process.memoryUsage.rss();
      const padding = 'x'.repeat(size - 24);
      const start = Date.now();
      for (let i = 0; i < events; i++) {
        await channel.publish({ data: `${nowMicros()} ${padding}` });
        phase.peakRss = Math.max(phase.peakRss, process.memoryUsage.rss());
        phase.peakBuffered = Math.max(phase.peakBuffered, stats().bufferedBytes);
        await sleep(Math.max(0, start + (i + 1) * intervalMs - Date.now()));
      }
      return phase;
    },
  };
};

interface Outcome {
  phase: Phase;
  /** ms from publish to arrival, every event at every fast client. */
  latencies: number[];
  /** Fast clients that got every event. */
  complete: number;
}

async function runPhase(server: Remote, fastCount: number, slowCount: number, broadcast: Broadcast): Promise<Outcome> {
  const latencies: number[] = [];
  const received = new Array<number>(fastCount).fill(0);
  const fast: EventClient[] = [];
  await inBatches(fastCount, 100, async (i) => {
    fast.push(
      await openEvents(`${server.url}/events`, {
        onEvent: ({ data }) => {
          latencies.push((nowMicros() - Number(data.slice(0, data.indexOf(' ')))) / 1000);
          received[i]!++;
        },
      }),
    );
  });
  // Never read: past the kernel's buffers, everything sent to them piles up in the server.
  const slow = Array.from({ length: slowCount }, () => rawGet(server.port, '/events').pause());
  try {
    if (!(await until(async () => (await server.call<number>('channelSize')) === fastCount + slowCount, 10_000))) throw new Error('not every client got subscribed');
    const phase = await server.call<Phase>('broadcast', broadcast);
    await until(() => received.every((count) => count === broadcast.events), 10_000);
    return { phase, latencies, complete: received.filter((count) => count === broadcast.events).length };
  } finally {
    for (const client of fast) client.close();
    for (const socket of slow) socket.destroy();
    await until(async () => (await server.probe()).open === 0, 10_000);
  }
}

export async function run(mode: Mode, part: Part): Promise<void> {
  const fast = scale(mode, 1000, 200);
  const slow = scale(mode, 100, 20);
  const size = 16 * KB;
  // Bytes per client and second, times the fast clients, is what the client process must parse.
  const intervalMs = scale(mode, 100, 20);
  const seconds = scale(mode, 40, 10);
  const broadcast: Broadcast = { events: (seconds * 1000) / intervalMs, intervalMs, size };
  const server = await spawnServer('slow');
  try {
    part.figure('broadcast', `${broadcast.events} events of ${size / KB} KB, one every ${intervalMs} ms; highWaterMark ${HIGH_WATER_MARK / KB} KB, maxBufferedBytes ${MAX_BUFFERED / KB} KB`);
    const base = await runPhase(server, fast, 0, broadcast);
    const loaded = await runPhase(server, fast, slow, broadcast);
    const latency = (outcome: Outcome): string =>
      `p50 ${ms(percentile(outcome.latencies, 50))}, p99 ${ms(percentile(outcome.latencies, 99))}, max ${ms(percentile(outcome.latencies, 100))}`;
    part.figure(`${fast} fast clients alone`, latency(base));
    part.figure(`${fast} fast with ${slow} slow`, latency(loaded));
    part.figure('server RSS, base -> peak', `alone ${mb(base.phase.baseRss)} -> ${mb(base.phase.peakRss)}, with slow ${mb(loaded.phase.baseRss)} -> ${mb(loaded.phase.peakRss)}`);
    part.figure('peak stats().bufferedBytes', `alone ${mb(base.phase.peakBuffered)}, with slow ${mb(loaded.phase.peakBuffered)}`);

    const { closes } = loaded.phase;
    part.check(`every slow client dropped (${slow})`, loaded.phase.drops === slow && closes['slow-consumer'] === slow, `${loaded.phase.drops} drops, close reasons ${JSON.stringify(closes)}`);
    part.check('no fast client dropped, every fast client got every event', base.complete === fast && loaded.complete === fast && base.phase.drops === 0, `${base.complete} and ${loaded.complete} of ${fast} complete`);
    // A frame is written whole before the check that follows it, so a buffer can pass the mark by one frame.
    const frame = size + 64;
    part.check('dropped at maxBufferedBytes (within one frame)', loaded.phase.largestAtDrop <= MAX_BUFFERED + frame, `largest buffer at drop ${(loaded.phase.largestAtDrop / KB).toFixed(0)} KB`);
    // What the drop rule guarantees: no stream holds more than maxBufferedBytes and one frame.
    const bufferBound = (fast + slow) * (MAX_BUFFERED + frame);
    part.check('buffered bytes within (streams x maxBufferedBytes)', loaded.phase.peakBuffered <= bufferBound, `${mb(loaded.phase.peakBuffered)} <= ${mb(bufferBound)}`);
    const growth = loaded.phase.peakRss - loaded.phase.baseRss;
    const baseGrowth = Math.max(0, base.phase.peakRss - base.phase.baseRss);
    // What the drops allow the slow clients to hold, twice over for allocator slack, plus 32 MB. A
    // broadcast shares one buffer per event among all queues, so RSS alone would not show missing
    // drops within this run: the two checks above do.
    const rssBound = baseGrowth + slow * MAX_BUFFERED * 2 + 32 * MB;
    part.check('server RSS growth bounded', growth <= rssBound, `${mb(growth)} <= ${mb(rssBound)}`);
    const p99Base = percentile(base.latencies, 99);
    const p99Loaded = percentile(loaded.latencies, 99);
    // On a shared machine the p99 of one run moves by hundreds of ms from other load alone, so the
    // bound separates a slowdown from a stall (fast clients waiting on slow ones stall for seconds).
    part.check('fast clients p99 within 20% + 500 ms of the run without slow ones', p99Loaded <= p99Base * 1.2 + 500, `${ms(p99Loaded)} vs ${ms(p99Base)}, ratio ${(p99Loaded / p99Base).toFixed(2)}`);
    checkUnhandled(part, await server.probe());
  } finally {
    await server.stop();
  }
}
