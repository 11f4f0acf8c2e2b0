// Part 1, churn: connect/disconnect cycles, the clients leaving at random points (before the
// response, mid-event, by reset, by half-close), against a channel that keeps publishing.
// Afterwards nothing of them may remain: no stream, subscriber, timer, listener or heap.
import express from 'express';
import { once } from 'node:events';
import type net from 'node:net';
import { Channel, sse, type SseStream } from '../src/index';
import { checkUnhandled, inBatches, KB, MB, mb, rawGet, Random, scale, socketClosed, spawnServer, until, type Mode, type Part, type Probe, type Serve } from './harness';

const HISTORY = 100;
// Every tenth event is large, so that many clients leave while one is being written; ten in every
// hundred, so that the history holds the same bytes whenever it is measured.
const LARGE_EVERY = 10;
const LARGE = 32 * KB;

export const serve: Serve = ({ server }) => {
  const channel = new Channel({ history: HISTORY });
  const large = 'x'.repeat(LARGE);
  let n = 0;
  let publisher: NodeJS.Timeout | undefined;
  const publish = (): void => {
    n++;
    void channel.publish({ event: 'tick', data: n % LARGE_EVERY === 0 ? large : `tick ${n}` });
  };

  // Socket errors by code: EPIPE and ECONNRESET are writes the client cut off by leaving.
  const socketErrors: Record<string, number> = {};
  const app = express();
  // Stands for auth or session lookups: with `?slow` the client may be gone before sse() runs.
  const lookup: express.RequestHandler = (req, _res, next) => {
    req.socket.once('error', (error: NodeJS.ErrnoException) => {
      socketErrors[error.code ?? error.message] = (socketErrors[error.code ?? error.message] ?? 0) + 1;
    });
    if (req.query.slow === undefined) next();
    else setTimeout(next, 1);
  };
  const options = { heartbeat: 20 };
  app.get('/mw', lookup, sse(options), (_req, res) => channel.subscribe(res.sse));
  app.get(
    '/handler',
    lookup,
    sse(async (stream: SseStream) => {
      channel.subscribe(stream);
      stream.send({ event: 'hello', data: '' });
      if (!stream.signal.aborted) await once(stream.signal, 'abort');
    }, options),
  );
  server.on('request', app);

  return {
    resume: () => {
      publisher ??= setInterval(publish, 5);
    },
    pause: () => {
      clearInterval(publisher);
      publisher = undefined;
    },
    channelSize: () => channel.size,
    socketErrors: () => socketErrors,
  };
};

const EXITS = ['before-response', 'at-first-byte', 'mid-event', 'timed', 'reset', 'half-close'] as const;
type Exit = (typeof EXITS)[number];

interface Tally {
  exits: Record<Exit, number>;
  /** Half-closed clients the server did not close within a second. */
  halfCloseHung: number;
  /** The newest event id seen, for Last-Event-ID on later cycles. */
  newestId: string;
}

/** One client: connects, reads as its exit says, leaves; resolves once its socket closed. */
function cycle(port: number, random: Random, tally: Tally): Promise<void> {
  const exit = random.pick(EXITS);
  tally.exits[exit]++;
  const path = `${random.chance(0.5) ? '/mw' : '/handler'}${random.chance(0.3) ? '?slow' : ''}`;
  // Some resume from a recent id (replay), some from one long gone (resync).
  const headers: Record<string, string> = {};
  if (random.chance(0.2)) headers['Last-Event-ID'] = random.chance(0.5) ? tally.newestId : 'gone';
  const socket: net.Socket = rawGet(port, path, headers);
  const closed = socketClosed(socket);
  const leaveAfterBytes = 1 + random.int(48 * KB);
  const delay = random.int(30);
  let received = 0;
  if (exit === 'before-response') setImmediate(() => socket.destroy());
  if (exit === 'timed') setTimeout(() => socket.destroy(), delay);
  socket.on('data', (chunk: Buffer) => {
    if (received === 0) {
      const id = /\nid: ([^\n]+)\n/.exec(chunk.toString('latin1'));
      if (id !== null) tally.newestId = id[1]!;
    }
    const first = received === 0;
    received += chunk.length;
    if (exit === 'at-first-byte' && first) socket.destroy();
    else if (exit === 'mid-event' && received >= leaveAfterBytes) socket.destroy();
    else if (exit === 'reset' && first) setTimeout(() => socket.resetAndDestroy(), delay);
    else if (exit === 'half-close' && first) {
      socket.end();
      const guard = setTimeout(() => {
        tally.halfCloseHung++;
        socket.destroy();
      }, 1000);
      socket.once('close', () => clearTimeout(guard));
    }
  });
  return closed;
}

function sameCounts(a: Record<string, number>, b: Record<string, number>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((key) => (a[key] ?? 0) === (b[key] ?? 0));
}

const show = (counts: Record<string, number>): string => JSON.stringify(counts);

export async function run(mode: Mode, part: Part): Promise<void> {
  const cycles = scale(mode, 100_000, 10_000);
  const warmup = scale(mode, 5_000, 1_000);
  const concurrency = 50;
  const server = await spawnServer('churn');
  try {
    const random = new Random(0x5ee);
    const tally: Tally = { exits: { 'before-response': 0, 'at-first-byte': 0, 'mid-event': 0, timed: 0, reset: 0, 'half-close': 0 }, halfCloseHung: 0, newestId: 'none seen yet' };
    await server.call('resume');
    // Warm up first: JIT code, lazily built Express state and pools belong to the baseline, not to growth.
    await inBatches(warmup, concurrency, () => cycle(server.port, random, tally));
    const settle = async (): Promise<Probe> => {
      await until(async () => (await server.probe()).open === 0 && (await server.call<number>('channelSize')) === 0, 10_000);
      await server.call('pause');
      return server.probe();
    };
    const before = await settle();
    await server.call('resume');

    for (const exit of EXITS) tally.exits[exit] = 0;
    const started = Date.now();
    await inBatches(cycles, concurrency, () => cycle(server.port, random, tally));
    const seconds = (Date.now() - started) / 1000;
    const after = await settle();
    const channelSize = await server.call<number>('channelSize');

    part.figure('cycles', `${cycles} in ${seconds.toFixed(1)} s (${Math.round(cycles / seconds)}/s), ${concurrency} in flight, after ${warmup} warm-up`);
    part.figure('exits', show(tally.exits));
    part.figure('events sent meanwhile', String(after.eventsSent - before.eventsSent));
    part.figure('server socket errors, warm-up included (writes cut by a leaving client)', show(await server.call<Record<string, number>>('socketErrors')));
    part.figure('server heap after GC', `${mb(before.heapUsed)} -> ${mb(after.heapUsed)}; RSS ${mb(before.rss)} -> ${mb(after.rss)}`);
    const growth = after.heapUsed - before.heapUsed;
    part.check('heap growth after GC < 5 MB', growth < 5 * MB, mb(growth));
    part.check('stats().open back to 0', after.open === 0, String(after.open));
    part.check('channel.size back to 0', channelSize === 0, String(channelSize));
    part.check('timers as before (unref\'d included)', after.timers === before.timers, `${before.timers} -> ${after.timers}`);
    part.check('active resources as before', sameCounts(before.resources, after.resources), `${show(before.resources)} -> ${show(after.resources)}`);
    part.check('server listeners as before', sameCounts(before.serverListeners, after.serverListeners), show(after.serverListeners));
    part.check('process listeners as before', sameCounts(before.processListeners, after.processListeners), show(after.processListeners));
    part.check('half-closed clients closed by the server', tally.halfCloseHung === 0, `${tally.halfCloseHung} of ${tally.exits['half-close']} hung`);
    checkUnhandled(part, after);
  } finally {
    await server.stop();
  }
}
