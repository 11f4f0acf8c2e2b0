// Part 7, review: the faults of the hardening review that one machine can replay in bounded time.
// - HTTP/2 streams with a highWaterMark below the stream's own 16 KiB: every event of every stream
//   and of every Channel replay arrives, in order, within a bound (ready() never waits for a 'drain'
//   that cannot come), and no client is dropped as a slow consumer.
// - A logger that throws (and one that rejects) on every call: the process stays up, every stream
//   closes with its true reason, publish() resolves, the fast subscribers get every event, and each
//   logger costs one warning.
// - Both builds loaded together (dist/cjs by require, dist/esm by import, in one child process): a
//   stream of one fed by a Channel of the other, replayed from it, and ended by the other's
//   shutdown(); instanceof holds across them.
// Server and clients share this process: the runner counts any unhandled error against the part.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createParser } from 'eventsource-parser';
import express from 'express';
import { Channel, sse, stats, type CloseReason, type SseLogger, type SseStream } from '../src/index';
import { inBatches, KB, MB, ms, openEvents, rawGet, scale, until, type Mode, type Part } from './harness';

const ROOT = path.join(__dirname, '..');

async function listenOn(server: http.Server | http2.Http2Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 with highWaterMark 1000

async function http2SmallMark(mode: Mode, part: Part): Promise<void> {
  const streams = scale(mode, 100, 20);
  const events = scale(mode, 200, 100);
  const size = 2 * KB;
  const data = 'x'.repeat(size);
  const channel = new Channel({ history: events });
  const route = sse({ highWaterMark: 1000, heartbeat: false });
  const reasons: CloseReason[] = [];
  const server = http2.createServer((req, res) => {
    route(req as never, res as never, () => {
      const stream = (res as unknown as { sse: SseStream }).sse;
      stream.on('close', (reason) => reasons.push(reason));
      if (req.url === '/replay') {
        channel.subscribe(stream);
        return;
      }
      void (async () => {
        for (let i = 1; i <= events && !stream.closed; i++) {
          if (!stream.send({ id: String(i), data })) await stream.ready();
        }
        stream.close();
      })();
    });
  });
  const port = await listenOn(server);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const drops = stats().slowConsumerDrops;
  try {
    const first = await channel.publish({ data: 'before' });
    for (let i = 0; i < events; i++) await channel.publish({ data });
    const started = Date.now();
    const received: string[][] = [];
    const read = (pathname: string, headers: http2.OutgoingHttpHeaders, count: number, index: number): Promise<void> =>
      new Promise((resolve) => {
        const ids: string[] = (received[index] = []);
        const parser = createParser({ onEvent: (event) => ids.push(event.id ?? '?') });
        const request = session.request({ ':path': pathname, ...headers });
        request.setEncoding('utf8');
        request.on('data', (chunk: string) => {
          parser.feed(chunk);
          if (ids.length >= count) request.close();
        });
        request.on('close', () => resolve());
        request.on('error', () => resolve());
      });
    const timeoutMs = scale(mode, 60_000, 20_000);
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all(
      Array.from({ length: streams }, (_, i) => (i % 2 === 0 ? read('/send', {}, events, i) : read('/replay', { 'last-event-id': first }, events, i))),
    );
    const finished = await Promise.race([all.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))]);
    clearTimeout(timer);
    const elapsed = Date.now() - started;
    const complete = received.filter((ids, i) => ids.length === events && (i % 2 === 1 || ids.every((id, n) => id === String(n + 1)))).length;
    part.figure('HTTP/2, highWaterMark 1000', `${streams} streams (half send() + ready(), half a Channel replay) × ${events} events of ${size / KB} KB in ${ms(elapsed)}`);
    part.check(`HTTP/2: every stream got all ${events} events, in order, within ${timeoutMs / 1000} s`, finished && complete === streams, `${complete} of ${streams} complete`);
    part.check('HTTP/2: no stream dropped as a slow consumer', stats().slowConsumerDrops === drops && !reasons.includes('slow-consumer'), `${stats().slowConsumerDrops - drops} drops`);
  } finally {
    session.destroy();
    await channel.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------------------------
// A logger that throws, and one that rejects

async function throwingLogger(mode: Mode, part: Part): Promise<void> {
  const rounds = scale(mode, 200, 50);
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }): void => {
    if (warning.code === 'SSE_GUARD_LOGGER_FAILED') warnings.push(warning.message);
  };
  process.on('warning', onWarning);
  const loggers: Record<string, SseLogger> = {
    throws: () => {
      throw new Error('logger throws');
    },
    rejects: (async () => {
      throw new Error('logger rejects');
    }) as unknown as SseLogger,
  };
  let failures = 0;
  let publishes = 0;
  let publishFailures = 0;
  let fastComplete = 0;
  let fastTotal = 0;
  try {
    for (const [name, logger] of Object.entries(loggers)) {
      const reasons: Record<string, Partial<Record<CloseReason, number>>> = { throw: {}, slow: {} };
      const count = (route: string, reason: CloseReason): void => {
        reasons[route]![reason] = (reasons[route]![reason] ?? 0) + 1;
      };
      const channel = new Channel();
      const app = express();
      const options = { logger, heartbeat: 50, maxBufferedBytes: 64 * KB, highWaterMark: 16 * KB };
      app.get('/throw', sse((stream) => {
        stream.on('close', (reason) => count('throw', reason));
        if (Math.random() < 0.5) throw new Error('handler throws');
        return Promise.reject(new Error('handler rejects'));
      }, options));
      app.get('/channel', sse(options), (_req, res) => {
        res.sse.on('close', (reason) => count('slow', reason));
        channel.subscribe(res.sse);
      });
      const server = http.createServer(app);
      const port = await listenOn(server);
      try {
        // Handler errors: every stream closes with 'error' whatever the logger does.
        await inBatches(rounds, 16, async () => {
          const client = await openEvents(`http://127.0.0.1:${port}/throw`);
          await client.closed;
        });
        // Slow consumers found by publish() and by the heartbeat, next to fast subscribers.
        const slow = Array.from({ length: 5 }, () => rawGet(port, '/channel'));
        const fastCount = 5;
        const eventsPerFast = 10;
        const fastIds: string[][] = Array.from({ length: fastCount }, () => []);
        const fast = await Promise.all(fastIds.map((ids) => openEvents(`http://127.0.0.1:${port}/channel`, { onEvent: (event) => ids.push(event.id ?? '?') })));
        await until(() => channel.size === slow.length + fastCount, 5000);
        for (const socket of slow) socket.pause();
        for (let i = 0; i < eventsPerFast; i++) {
          publishes++;
          await channel.publish({ data: 'x'.repeat(MB) }).catch(() => publishFailures++);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await until(() => fastIds.every((ids) => ids.length === eventsPerFast), 10_000);
        fastTotal += fastCount;
        fastComplete += fastIds.filter((ids) => ids.length === eventsPerFast).length;
        const slowDropped = await until(() => (reasons.slow!['slow-consumer'] ?? 0) === slow.length, 10_000);
        for (const client of fast) client.close();
        for (const socket of slow) socket.destroy();
        const throwOk = reasons.throw!.error === rounds && Object.keys(reasons.throw!).length === 1;
        if (!throwOk || !slowDropped) failures++;
        part.figure(`logger that ${name}`, `handler streams closed ${JSON.stringify(reasons.throw)}; channel subscribers ${JSON.stringify(reasons.slow)}`);
      } finally {
        await channel.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    }
    await until(() => warnings.length >= 2, 2000);
  } finally {
    process.off('warning', onWarning);
  }
  part.check('throwing logger: every handler stream closed with error, every slow subscriber dropped', failures === 0, `${failures} of 2 loggers failed it`);
  part.check('throwing logger: every publish() resolved, and the fast subscribers got every event', publishFailures === 0 && fastComplete === fastTotal, `${publishFailures} of ${publishes} rejected; ${fastComplete} of ${fastTotal} complete`);
  part.check('throwing logger: one process warning per failing logger', warnings.length === 2, `${warnings.length} warnings`);
}

// ---------------------------------------------------------------------------------------------
// Both builds in one process

// Run in a child: shutdown() is final for its process. Prints one JSON line.
const BOTH_BUILDS = `
import { createRequire } from 'node:module';
import http from 'node:http';
const require = createRequire(import.meta.url);
const [cjsPath, esmPath, clientsArg, eventsArg] = process.argv.slice(1);
const cjs = require(cjsPath);
const esm = await import(esmPath);
const clients = Number(clientsArg), events = Number(eventsArg);
const unhandled = [];
process.on('unhandledRejection', (e) => unhandled.push(String(e)));
process.on('uncaughtException', (e) => unhandled.push(String(e)));
const channel = new esm.Channel({ history: events });
const route = cjs.sse({ heartbeat: false });
const server = http.createServer((req, res) => route(req, res, () => channel.subscribe(res.sse)));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = 'http://127.0.0.1:' + server.address().port;
function read(headers, until) {
  return new Promise((resolve) => {
    const ids = [];
    let buffer = '';
    http.get(url, { headers }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf('\\n\\n')) >= 0) {
          const id = /^id: (.*)$/m.exec(buffer.slice(0, end));
          if (id) ids.push(id[1]);
          buffer = buffer.slice(end + 2);
        }
        if (until !== undefined && ids.length >= until) res.destroy();
      });
      res.on('close', () => resolve({ ids, complete: res.complete }));
    });
  });
}
const live = Array.from({ length: clients }, () => read({}, undefined));
while (channel.size < clients) await new Promise((r) => setTimeout(r, 10));
const published = [];
for (let i = 0; i < events; i++) published.push(await channel.publish({ data: 'event ' + i }));
const replay = await read({ 'last-event-id': published[0] }, events - 1);
const started = Date.now();
await esm.shutdown({ graceMs: 2000 });
const shutdownMs = Date.now() - started;
const results = await Promise.all(live);
const closeStarted = Date.now();
await new Promise((r) => server.close(r));
console.log(JSON.stringify({
  liveComplete: results.filter((r) => r.complete && r.ids.join() === published.join()).length,
  replayed: replay.ids.join() === published.slice(1).join(),
  shutdownMs, closeMs: Date.now() - closeStarted,
  sameClass: new esm.SseGuardError('ERR_SSE_ADAPTER', 'x') instanceof cjs.SseGuardError && esm.SseStream === cjs.SseStream,
  unhandled,
}));
`;

// The build from these sources: built now when missing or older than a source file.
function ensureBuild(): Promise<string> {
  const built = path.join(ROOT, 'dist', 'cjs', 'index.js');
  const newest = (dir: string): number =>
    Math.max(0, ...fs.readdirSync(dir, { withFileTypes: true }).map((entry) => (entry.isDirectory() ? newest(path.join(dir, entry.name)) : fs.statSync(path.join(dir, entry.name)).mtimeMs)));
  if (fs.existsSync(built) && fs.statSync(built).mtimeMs >= newest(path.join(ROOT, 'src'))) return Promise.resolve('the existing build');
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { cwd: ROOT, timeout: 180_000 }, (error) => (error === null ? resolve('a fresh build') : reject(error)));
  });
}

async function bothBuilds(mode: Mode, part: Part): Promise<void> {
  const which = await ensureBuild();
  const clients = scale(mode, 200, 50);
  const events = scale(mode, 200, 50);
  const output = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', BOTH_BUILDS, path.join(ROOT, 'dist', 'cjs', 'index.js'), path.join(ROOT, 'dist', 'esm', 'index.js'), String(clients), String(events)],
      { cwd: ROOT, timeout: 60_000 },
      (error, stdout, stderr) => (error === null ? resolve(stdout) : reject(new Error(`${error.message}\n${stderr}`))),
    );
  });
  const result = JSON.parse(output.trim().split('\n').pop()!) as { liveComplete: number; replayed: boolean; shutdownMs: number; closeMs: number; sameClass: boolean; unhandled: string[] };
  part.figure('both builds', `${which}; ${clients} dist/cjs streams fed by a dist/esm Channel, ${events} events; esm shutdown() ${ms(result.shutdownMs)}, server.close() ${ms(result.closeMs)}`);
  part.check('both builds: every stream got every event and a clean end from the other build’s shutdown()', result.liveComplete === clients, `${result.liveComplete} of ${clients}`);
  part.check('both builds: a reconnect is replayed across builds', result.replayed, String(result.replayed));
  part.check('both builds: shutdown() then server.close() < 2 s', result.shutdownMs + result.closeMs < 2000, ms(result.shutdownMs + result.closeMs));
  part.check('both builds: one class per name (instanceof holds)', result.sameClass, String(result.sameClass));
  part.check('both builds: no unhandled error', result.unhandled.length === 0, result.unhandled[0] ?? 'none');
}

export async function run(mode: Mode, part: Part): Promise<void> {
  await http2SmallMark(mode, part);
  await throwingLogger(mode, part);
  await bothBuilds(mode, part);
}
