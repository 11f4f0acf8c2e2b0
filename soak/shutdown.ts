// Part 6, shutdown: shutdown() with thousands of open streams, then server.close(), as a SIGTERM
// handler would. Every client must get the last event and a clean end, new requests a 503, and
// server.close() must finish within a second of shutdown() being called.
import express from 'express';
import http from 'node:http';
import { Channel, shutdown, sse } from '../src/index';
import { checkUnhandled, inBatches, ms, openEvents, readEvents, scale, spawnServer, until, type EventClient, type Mode, type Part, type Serve } from './harness';

const RETRY = 2000;

export const serve: Serve = ({ server }) => {
  const channel = new Channel();
  const app = express();
  app.get('/events', sse(), (_req, res) => channel.subscribe(res.sse));
  server.on('request', app);
  const timed = async (work: () => Promise<void>): Promise<number> => {
    const started = performance.now();
    await work();
    return performance.now() - started;
  };
  return {
    channelSize: () => channel.size,
    shutdown: () => timed(() => shutdown({ event: { event: 'bye', data: 'server restarting' }, retry: RETRY })),
    close: () => timed(() => new Promise<void>((resolve, reject) => server.close((error) => (error === undefined ? resolve() : reject(error))))),
  };
};

export async function run(mode: Mode, part: Part): Promise<void> {
  const streams = scale(mode, 5000, 1000);
  // Keep-alive, as browsers connect: after its response ends a socket stays open, idle, and it is
  // server.close() that has to let it go.
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const server = await spawnServer('shutdown');
  const clients: EventClient[] = [];
  try {
    let farewells = 0;
    let retries = 0;
    await inBatches(streams, 200, async () => {
      clients.push(
        await openEvents(`${server.url}/events`, {
          agent,
          onEvent: (event) => void (event.event === 'bye' && farewells++),
          onRetry: (retry) => void (retry === RETRY && retries++),
        }),
      );
    });
    await until(async () => (await server.call<number>('channelSize')) === streams, 10_000);
    const shutdownMs = await server.call<number>('shutdown');
    const refused = await readEvents(`${server.url}/events`);
    const closeMs = await server.call<number>('close');
    const ends = await Promise.all(clients.map((client) => client.closed));
    const clean = ends.filter((end) => end.complete).length;

    part.figure('streams', `${streams} open, keep-alive clients`);
    part.figure('shutdown() / server.close()', `${ms(shutdownMs)} / ${ms(closeMs)}`);
    part.check('shutdown() then server.close() < 1 s', shutdownMs + closeMs < 1000, ms(shutdownMs + closeMs));
    part.check('every client got the last event, the retry hint and a clean end', farewells === streams && retries === streams && clean === streams, `${farewells} events, ${retries} retry hints, ${clean} clean ends of ${streams}`);
    part.check(
      'a request after shutdown() gets 503 with Retry-After',
      refused.status === 503 && refused.headers['retry-after'] === String(RETRY / 1000),
      `${refused.status}, Retry-After ${String(refused.headers['retry-after'])}`,
    );
    const probe = await server.probe();
    part.check('stats().open back to 0', probe.open === 0, String(probe.open));
    checkUnhandled(part, probe);
  } finally {
    for (const client of clients) client.close();
    agent.destroy();
    await server.stop();
  }
}
