// Part 4, faults: what clients and user code do wrong. Sockets destroyed mid-write, clients that
// half-close or leave before sse() runs, res.end() from user code while events are queued, handlers
// that throw or reject. Every stream must close with the right reason, nothing may throw past the
// guard, and the process lives. The app and the client moves are shared with __tests__/faults.test.ts.
import express from 'express';
import type net from 'node:net';
import { Channel, sse, type CloseReason, type SseLogger, type SseStream } from '../src/index';
import { checkUnhandled, inBatches, KB, MB, rawGet, readEvents, scale, sleep, socketClosed, spawnServer, until, type Collected, type Mode, type Part, type Serve } from './harness';

export const ROUTES = ['/mid-write', '/half-close', '/end-while-queued', '/throw-sync', '/throw-async', '/late'] as const;
export type Route = (typeof ROUTES)[number];

/** Events /end-while-queued sends before res.end(); large enough that most are still queued then. */
export const QUEUED_EVENTS = 4;
const QUEUED_SIZE = 256 * KB;

/** What the server saw, per route. */
export interface FaultLog {
  /** Requests that reached the app: a client that leaves at once may be gone before its request was read. */
  arrived: Record<Route, number>;
  closes: Record<Route, Partial<Record<CloseReason, number>>>;
  /** What send() did once the stream had closed: returned false (expected), returned true, or threw. */
  sendAfterClose: { false: number; true: number; threw: string[] };
  /** The same, right after user code called res.end() with events still queued. */
  sendAfterEnd: { false: number; true: number; threw: string[] };
  /** Bytes still queued at each of those res.end() calls. */
  queuedAtEnd: number[];
  /** Messages of the errors the logger got with reason 'handler-error'. */
  handlerErrors: string[];
}

function trySend(stream: SseStream, tally: FaultLog['sendAfterClose']): void {
  try {
    tally[String(stream.send('too late')) as 'true' | 'false']++;
  } catch (error) {
    tally.threw.push(String(error));
  }
}

export function faultApp(): { app: express.Express; log: FaultLog } {
  const log: FaultLog = {
    arrived: Object.fromEntries(ROUTES.map((route) => [route, 0])) as FaultLog['arrived'],
    closes: Object.fromEntries(ROUTES.map((route) => [route, {}])) as FaultLog['closes'],
    sendAfterClose: { false: 0, true: 0, threw: [] },
    sendAfterEnd: { false: 0, true: 0, threw: [] },
    queuedAtEnd: [],
    handlerErrors: [],
  };
  const logger: SseLogger = (reason, details) => {
    if (reason === 'handler-error') log.handlerErrors.push((details.error as Error).message);
  };
  const watch = (route: Route, stream: SseStream): void => {
    stream.on('close', (reason) => {
      log.closes[route][reason] = (log.closes[route][reason] ?? 0) + 1;
      trySend(stream, log.sendAfterClose);
    });
  };
  const large = 'x'.repeat(64 * KB);
  const app = express();
  app.use((req, _res, next) => {
    if (req.path in log.arrived) log.arrived[req.path as Route]++;
    next();
  });

  // Writes for as long as the socket takes it, so that the client's leaving cuts a write.
  app.get('/mid-write', sse({ heartbeat: false }), (_req, res) => {
    const stream = res.sse;
    watch('/mid-write', stream);
    const pump = (): void => {
      while (stream.send(large));
      if (!stream.closed) void stream.ready().then(pump);
    };
    pump();
  });

  app.get('/half-close', sse({ heartbeat: 10 }), (_req, res) => {
    watch('/half-close', res.sse);
    const ticker = setInterval(() => res.sse.send('tick'), 5);
    res.sse.on('close', () => clearInterval(ticker));
  });

  // User code ends the response itself, with events queued, while a channel still holds the stream.
  const channel = new Channel();
  const queued = 'q'.repeat(QUEUED_SIZE);
  app.get('/end-while-queued', sse({ maxBufferedBytes: 4 * MB }), (_req, res) => {
    watch('/end-while-queued', res.sse);
    channel.subscribe(res.sse);
    for (let i = 0; i < QUEUED_EVENTS; i++) res.sse.send({ id: i, data: queued });
    log.queuedAtEnd.push(res.sse.bufferedBytes);
    res.end();
    trySend(res.sse, log.sendAfterEnd);
    res.sse.comment('after end');
    void channel.publish({ data: 'after end' });
  });

  app.get(
    '/throw-sync',
    sse((stream: SseStream) => {
      watch('/throw-sync', stream);
      stream.send('before');
      throw new Error('sync boom');
    }, { logger }),
  );

  app.get(
    '/throw-async',
    sse(async (stream: SseStream) => {
      watch('/throw-async', stream);
      stream.send('before');
      await sleep(5);
      throw new Error('async boom');
    }, { logger }),
  );

  // Stands for an auth or session lookup that takes a while: the client leaves before sse() runs.
  app.get('/late', (_req, _res, next) => void setTimeout(next, 30), sse(), (_req, res) => watch('/late', res.sse));

  return { app, log };
}

// ---------------------------------------------------------------------------------------------
// The client moves

/** Reads until well into the stream, then destroys the socket while the server is writing. */
export async function cutMidWrite(port: number): Promise<void> {
  const socket = rawGet(port, '/mid-write');
  let received = 0;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > 256 * KB) socket.destroy();
  });
  await socketClosed(socket);
}

/** Half-closes (FIN) after the first bytes; resolves to whether the server then closed the socket. */
export async function halfClose(port: number): Promise<boolean> {
  const socket: net.Socket = rawGet(port, '/half-close');
  socket.once('data', () => socket.end());
  socket.resume();
  let cut = false;
  const timer = setTimeout(() => {
    cut = true;
    socket.destroy();
  }, 2000);
  await socketClosed(socket);
  clearTimeout(timer);
  return !cut;
}

/** Sends the request and leaves, once `arrived()` says so, before the slow middleware in front of sse() is done. */
export async function leaveEarly(port: number, arrived: () => Promise<unknown> = () => sleep(5)): Promise<void> {
  const socket = rawGet(port, '/late');
  await arrived();
  socket.destroy();
  await socketClosed(socket);
}

/** Reads a route's whole response. */
export function readRoute(url: string, route: Route): Promise<Collected> {
  return readEvents(`${url}${route}`);
}

// ---------------------------------------------------------------------------------------------
// The soak part: every fault many times over, then the server's account of them

export const serve: Serve = ({ server }) => {
  const { app, log } = faultApp();
  server.on('request', app);
  return { log: () => log };
};

export async function run(mode: Mode, part: Part): Promise<void> {
  const rounds = scale(mode, 1000, 200);
  const server = await spawnServer('faults');
  try {
    let halfClosedByServer = 0;
    const responses: Partial<Record<Route, Collected[]>> = {};
    const read = async (route: Route): Promise<void> => {
      (responses[route] ??= []).push(await readRoute(server.url, route));
    };
    const moves: Record<Route, () => Promise<void>> = {
      '/mid-write': () => cutMidWrite(server.port),
      '/half-close': async () => {
        if (await halfClose(server.port)) halfClosedByServer++;
      },
      '/end-while-queued': () => read('/end-while-queued'),
      '/throw-sync': () => read('/throw-sync'),
      '/throw-async': () => read('/throw-async'),
      '/late': () => leaveEarly(server.port),
    };
    const started = Date.now();
    // All faults mixed, 24 at a time.
    await inBatches(rounds * ROUTES.length, 24, (i) => moves[ROUTES[i % ROUTES.length]!]());
    // The last clients of /late are gone before the server reaches sse() for them: wait for every close.
    const count = (counts: Partial<Record<string, number>>): number => Object.values(counts).reduce<number>((sum, n) => sum + (n ?? 0), 0);
    const settled = (log: FaultLog): boolean => ROUTES.every((route) => count(log.closes[route]) === log.arrived[route]);
    await until(async () => settled(await server.call<FaultLog>('log')), 10_000);
    const probe = await server.probe();
    const log = await server.call<FaultLog>('log');
    part.figure('faults', `${rounds} of each of ${ROUTES.length} kinds in ${((Date.now() - started) / 1000).toFixed(1)} s: ${ROUTES.join(', ')}`);
    part.figure('close reasons', JSON.stringify(log.closes));

    const late = log.arrived['/late'];
    part.figure('clients of /late gone before their request was read', String(rounds - late));
    const only = (route: Route, reason: CloseReason, expected = rounds): boolean => log.closes[route][reason] === expected && Object.keys(log.closes[route]).length === 1;
    part.check("destroyed mid-write: every stream closed, reason 'client'", only('/mid-write', 'client'), JSON.stringify(log.closes['/mid-write']));
    part.check("half-closed: every stream closed by the server, reason 'client'", only('/half-close', 'client') && halfClosedByServer === rounds, `${halfClosedByServer} of ${rounds} sockets closed by the server`);
    part.check("left before sse() ran: every stream closed, reason 'client'", only('/late', 'client', late), `${JSON.stringify(log.closes['/late'])} of ${late} that arrived`);
    const queuedEverywhere = log.queuedAtEnd.filter((bytes) => bytes > 0).length;
    const endedCleanly = (responses['/end-while-queued'] ?? []).filter((r) => r.complete && r.events.length === QUEUED_EVENTS).length;
    part.check(
      "res.end() with events queued: reason 'server', send() false, all queued events delivered",
      only('/end-while-queued', 'server') && log.sendAfterEnd.false === rounds && queuedEverywhere === rounds && endedCleanly === rounds,
      `send() after end: ${log.sendAfterEnd.false} false, ${log.sendAfterEnd.true} true, ${log.sendAfterEnd.threw.length} threw; bytes queued at end in ${queuedEverywhere}; ${endedCleanly} clients got all ${QUEUED_EVENTS} events and a clean end`,
    );
    const threw = (route: Route): number => (responses[route] ?? []).filter((r) => r.complete && r.events.length === 1).length;
    const errors = (message: string): number => log.handlerErrors.filter((m) => m === message).length;
    part.check(
      "handler throws: reason 'error', logged as 'handler-error', response ended",
      only('/throw-sync', 'error') && errors('sync boom') === rounds && threw('/throw-sync') === rounds,
      `${errors('sync boom')} logged, ${threw('/throw-sync')} clean ends`,
    );
    part.check(
      "handler rejects: reason 'error', logged as 'handler-error', response ended",
      only('/throw-async', 'error') && errors('async boom') === rounds && threw('/throw-async') === rounds,
      `${errors('async boom')} logged, ${threw('/throw-async')} clean ends`,
    );
    const afterClose = log.sendAfterClose;
    part.check('send() after close returns false, never throws', afterClose.false === rounds * (ROUTES.length - 1) + late && afterClose.true === 0 && afterClose.threw.length === 0, `${afterClose.false} false, ${afterClose.true} true, ${afterClose.threw.length} threw${afterClose.threw.map((e) => `: ${e}`).slice(0, 1).join('')}`);
    part.check('stats().open back to 0', probe.open === 0, String(probe.open));
    checkUnhandled(part, probe);
  } finally {
    await server.stop();
  }
}
