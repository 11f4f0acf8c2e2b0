// Scenario G (`npm run bench -- --scenarios=G`): what guard() costs. Each app runs in its own process
// (guard-server.ts), one at a time; the load comes from this process.
// - G0: guard()'s own work on a response that is not an event stream, in this process, without
//   sockets: the middleware plus four setHeader calls and a writeHead, against the same calls alone.
// - G1: requests per second of a small JSON route with and without guard() in front, by autocannon;
//   and the instructions the server process executes per request, counted by callgrind (valgrind),
//   which the rest of the machine cannot disturb.
// - G2: events per second of a hand-written stream behind compression() + guard(), against the
//   same stream with no compression at all (what guard() makes compression do: pass it through);
//   and the instructions per event, counted the same way.
// Rates are read per second of the server's CPU, as scenario A in run.ts: on a small shared machine
// the wall clock mostly measures who else is running. Repeats alternate between the two sides of
// each pair and the best one counts. Both sides of a pair send the same body and guard() makes no
// system call of its own, so what it adds is user-space work, which the instruction counts measure
// whole (how many events share a system call follows the reader's pace, on both sides).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import ts from 'typescript';
import type { GuardApp } from './guard-server';
import type * as SseGuard from '../src/index';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon') as (options: { url: string; connections: number; duration: number }) => Promise<{ requests: { total: number }; non2xx: number; errors: number }>;

const EVENT_BYTES = 58; // `data: ` + 50 bytes + LF LF, as guard-server.ts writes
// sse-guard as users get it: the copy of dist/cjs that run.ts makes at the start of a run.
const BUILT_PACKAGE = path.join(__dirname, 'results', 'sse-guard', 'index.js');
// Written once per run, by the first server started.
let plainServerFile: string | undefined;

/**
 * guard-server.ts as plain CommonJS, next to the results: the servers run without the TypeScript
 * loader, whose own work made callgrind's counts of one app differ by 2 % between repeats (plain
 * CommonJS: under 1 %).
 */
function plainServer(): string {
  if (plainServerFile === undefined) {
    const source = fs.readFileSync(path.join(__dirname, 'guard-server.ts'), 'utf8');
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } });
    plainServerFile = path.join(__dirname, 'results', 'guard-server.cjs');
    fs.writeFileSync(plainServerFile, outputText);
  }
  return plainServerFile;
}

export interface GuardFigures {
  /** ns per response, best of the repeats. */
  perResponseNs: Record<'without' | 'with guard()', number[]>;
  jsonRps: Record<'json' | 'json + guard()', number[]>;
  /** Instructions per request of the JSON route, one figure per repeat; absent without valgrind. */
  jsonInstructions?: Record<'json' | 'json + guard()' | 'json + no-op middleware', number[]>;
  streamEventsPerSecond: Record<'stream' | 'stream + compression() + guard()', number[]>;
  /** Instructions per event of the stream, one figure per repeat; absent without valgrind. */
  streamInstructions?: Record<'stream' | 'stream + compression() + guard()', number[]>;
}

interface Started {
  child: ChildProcess;
  port: number;
  exited: Promise<unknown>;
}

/**
 * Starts the app in its own process (guard-server.ts), under `under` (valgrind, say) when given, and
 * waits for its port: rejects if it exits first, and kills it if it has not listened within `startMs`.
 */
async function startApp(name: GuardApp, startMs: number, under: string[] = [], nodeFlags: string[] = []): Promise<Started> {
  const [command, ...args] = [...under, process.execPath, ...nodeFlags, plainServer(), name, BUILT_PACKAGE];
  const child = spawn(command!, args, {
    cwd: path.join(__dirname, '..'),
    // valgrind's own notices (brk segment, JIT) are not errors of the run.
    stdio: ['ignore', under.length > 0 ? 'ignore' : 'inherit', under.length > 0 ? 'ignore' : 'inherit', 'ipc'],
  });
  const exited = once(child, 'exit');
  const timer = setTimeout(() => child.kill(), startMs);
  try {
    const listening = once(child, 'message') as Promise<[number]>;
    const [port] = await Promise.race([listening, exited.then(() => Promise.reject(new Error(`${name} exited before it listened`)))]);
    return { child, port, exited };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `body` against the app in its own process; returns its result and the server CPU it cost, in seconds. */
async function withApp(name: GuardApp, body: (port: number) => Promise<number>, warmUp: (port: number) => Promise<unknown>): Promise<{ value: number; cpuSeconds: number }> {
  const { child, port, exited } = await startApp(name, 30_000);
  try {
    const cpu = async (): Promise<number> => {
      child.send('cpu');
      return ((await once(child, 'message')) as [number])[0];
    };
    await warmUp(port);
    const before = await cpu();
    const value = await body(port);
    return { value, cpuSeconds: ((await cpu()) - before) / 1e6 };
  } finally {
    child.kill();
    await exited;
  }
}

/** G0: ns per response of what an Express JSON route does to its headers, with and without guard() in front. */
function perResponse(count: number, repeats: number): GuardFigures['perResponseNs'] {
  // sse-guard as users get it: the copy of dist/cjs that run.ts makes at the start of a run.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const middleware = (require(BUILT_PACKAGE) as typeof SseGuard).guard();
  const expressResponse = Object.create(http.ServerResponse.prototype) as http.ServerResponse;
  const headers = (res: http.ServerResponse): void => {
    res.setHeader('X-Powered-By', 'Express');
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', '60');
    res.setHeader('ETag', 'W/"3c-2fd8"');
    res.writeHead(200);
  };
  const one = (withGuard: boolean): void => {
    const req = new http.IncomingMessage(new net.Socket());
    req.headers = { accept: 'application/json' };
    req.httpVersionMajor = 1;
    req.url = '/json';
    const res = new http.ServerResponse(req);
    // As Express does on every request: V8 then gives each property added to the response a new
    // hidden class, which is why guard() adds none (it marks the request's headers object instead).
    Object.setPrototypeOf(res, expressResponse);
    if (withGuard) middleware(req, res, () => headers(res));
    else headers(res);
  };
  const figures: GuardFigures['perResponseNs'] = { without: [], 'with guard()': [] };
  for (let repeat = 0; repeat <= repeats; repeat++) {
    for (const side of ['without', 'with guard()'] as const) {
      const started = process.hrtime.bigint();
      for (let i = 0; i < count; i++) one(side !== 'without');
      // The first round warms the JIT up and is not kept.
      if (repeat > 0) figures[side].push(Number(process.hrtime.bigint() - started) / count);
    }
  }
  return figures;
}

/** `count` requests to `/json`, one after the other on one keep-alive connection. */
async function sequentialRequests(port: number, count: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < count; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/json', agent }, (res) => {
          if (res.statusCode !== 200) reject(new Error(`/json answered ${res.statusCode}`));
          res.resume();
          res.on('end', resolve);
        });
        req.setTimeout(60_000, () => req.destroy(new Error('no answer within 60 s')));
        req.on('error', reject);
      });
    }
  } finally {
    agent.destroy();
  }
}

/** Instructions the server process executed in all, from its start to its exit after `load` ran against it. */
async function instructionsUntilExit(name: GuardApp, label: string, load: (port: number) => Promise<unknown>): Promise<number> {
  const out = path.join(os.tmpdir(), `sse-guard-callgrind-${process.pid}-${name.replace(/\W+/g, '_')}-${label}`);
  try {
    // V8's helper threads would add instructions that depend on timing.
    const { child, port, exited } = await startApp(name, 600_000, ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`, '--dump-line=no', '--dump-instr=no'], ['--single-threaded']);
    const timer = setTimeout(() => child.kill(), 600_000);
    try {
      await load(port);
      child.send('exit');
      await exited;
    } finally {
      clearTimeout(timer);
      child.kill();
    }
    const summary = /^summary: (\d+)$/m.exec(fs.readFileSync(out, 'utf8'));
    if (summary === null) throw new Error(`callgrind wrote no summary for ${name}`);
    return Number(summary[1]);
  } finally {
    fs.rmSync(out, { force: true });
  }
}

/**
 * Runs `tasks`, at most one per core at a time: more would slow each down, and the work Node does
 * on wall-clock timers (the Date header's cache, connection checks) would then vary with that.
 */
async function onePerCore<T>(tasks: Array<() => Promise<T>>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const at = next++;
      results[at] = await tasks[at]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(os.availableParallelism(), tasks.length) }, worker));
  return results;
}

/**
 * Instructions per unit of work (a request, an event) of each app: the difference between a run of
 * `large` units and one of `small`, divided by the difference, so that start-up and warm-up cancel
 * out. Undefined without valgrind.
 */
async function instructionsPer<Name extends GuardApp>(
  what: string,
  names: readonly Name[],
  sizes: { small: number; large: number; repeats: number },
  load: (port: number, units: number) => Promise<unknown>,
  log: (line: string) => void,
): Promise<Record<Name, number[]> | undefined> {
  if (spawnSync('valgrind', ['--version']).status !== 0) {
    log(`${what} skipped: valgrind is not installed (apt-get install valgrind)`);
    return undefined;
  }
  const { small, large, repeats } = sizes;
  const figures = Object.fromEntries(names.map((name) => [name, [] as number[]])) as Record<Name, number[]>;
  for (let repeat = 0; repeat < repeats; repeat++) {
    const counts = await onePerCore(names.flatMap((name) => [small, large].map((units) => () => instructionsUntilExit(name, `${units}`, (port) => load(port, units)))));
    names.forEach((name, i) => {
      const perUnit = (counts[2 * i + 1]! - counts[2 * i]!) / (large - small);
      figures[name].push(perUnit);
      log(`${what} ${name}: ${(perUnit / 1000).toFixed(2)}k`);
    });
  }
  return figures;
}

/** Reads `/stream?n=` to its end; events per second, wall clock. Fails on any Content-Encoding. */
function readStream(port: number, events: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.get({ host: '127.0.0.1', port, path: `/stream?n=${events}`, headers: { 'accept-encoding': 'gzip, deflate, br' }, agent: false }, (res) => {
      if (res.headers['content-encoding'] !== undefined) reject(new Error(`the stream came ${res.headers['content-encoding']}-encoded`));
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('end', () => {
        if (bytes !== events * EVENT_BYTES) return reject(new Error(`${bytes} bytes instead of ${events * EVENT_BYTES}`));
        resolve(events / ((performance.now() - started) / 1000));
      });
    });
    req.setTimeout(120_000, () => req.destroy(new Error('the stream did not end within 120 s')));
    req.on('error', reject);
  });
}

export async function benchGuard(quick: boolean, log: (line: string) => void): Promise<GuardFigures> {
  const repeats = quick ? 3 : 5;
  const duration = quick ? 3 : 8;
  const events = quick ? 200_000 : 1_000_000;
  const figures: GuardFigures = { perResponseNs: perResponse(quick ? 100_000 : 400_000, repeats), jsonRps: { json: [], 'json + guard()': [] }, streamEventsPerSecond: { stream: [], 'stream + compression() + guard()': [] } };
  for (let repeat = 0; repeat < repeats; repeat++) {
    for (const name of ['json', 'json + guard()'] as const) {
      const url = (port: number): string => `http://127.0.0.1:${port}/json`;
      const { value: requests, cpuSeconds } = await withApp(
        name,
        async (port) => {
          const result = await autocannon({ url: url(port), connections: 10, duration });
          if (result.non2xx > 0 || result.errors > 0) throw new Error(`${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
          return result.requests.total;
        },
        (port) => autocannon({ url: url(port), connections: 10, duration: 1 }),
      );
      figures.jsonRps[name].push(requests / cpuSeconds);
      log(`G1 ${name}: ${(requests / cpuSeconds).toFixed(0)} requests per CPU-second (${(requests / duration).toFixed(0)}/s wall clock)`);
    }
    for (const name of ['stream', 'stream + compression() + guard()'] as const) {
      const { value: rate, cpuSeconds } = await withApp(
        name,
        (port) => readStream(port, events),
        (port) => readStream(port, events / 10),
      );
      figures.streamEventsPerSecond[name].push(events / cpuSeconds);
      log(`G2 ${name}: ${(events / cpuSeconds / 1000).toFixed(0)}k events per CPU-second (${(rate / 1000).toFixed(0)}k/s wall clock)`);
    }
  }
  figures.jsonInstructions = await instructionsPer(
    'G1 instructions per request,',
    ['json', 'json + guard()', 'json + no-op middleware'],
    { small: 300, large: quick ? 1300 : 6300, repeats: quick ? 1 : 2 },
    sequentialRequests,
    log,
  );
  figures.streamInstructions = await instructionsPer(
    'G2 instructions per event,',
    ['stream', 'stream + compression() + guard()'],
    { small: 20_000, large: quick ? 60_000 : 120_000, repeats: quick ? 1 : 2 },
    readStream,
    log,
  );
  return figures;
}

const signedNs = (ns: number): string => `${ns < 0 ? '−' : '+'}${Math.abs(ns).toFixed(0)} ns`;

/** The Markdown table of scenario G: the best of the repeats, and the ratio within each pair. */
export function guardTable(figures: GuardFigures): string {
  const best = (values: number[]): number => Math.max(...values);
  const spread = (values: number[]): string => `${(((best(values) - Math.min(...values)) / best(values)) * 100).toFixed(0)}%`;
  const { jsonRps: j, streamEventsPerSecond: s, perResponseNs: p } = figures;
  const low = (values: number[]): number => Math.min(...values);
  const rows = [
    ['G0 headers of a JSON response, in-process, ns per response ↓', `${low(p.without).toFixed(0)} ns`, `${low(p['with guard()']).toFixed(0)} ns`, signedNs(low(p['with guard()']) - low(p.without))],
    ['G1 small JSON route, requests per CPU-second ↑', `${best(j.json).toFixed(0)}/s (spread ${spread(j.json)})`, `${best(j['json + guard()']).toFixed(0)}/s (spread ${spread(j['json + guard()'])})`, `${(best(j['json + guard()']) / best(j.json)).toFixed(3)}×`],
    ['G2 hand-written stream, events per CPU-second ↑', `${(best(s.stream) / 1000).toFixed(0)}k/s, no compression (spread ${spread(s.stream)})`, `${(best(s['stream + compression() + guard()']) / 1000).toFixed(0)}k/s, compression() + guard() (spread ${spread(s['stream + compression() + guard()'])})`, `${(best(s['stream + compression() + guard()']) / best(s.stream)).toFixed(3)}×`],
  ];
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const counts = (values: number[]): string => `${(median(values) / 1000).toFixed(2)}k (${values.map((v) => (v / 1000).toFixed(2)).join(', ')})`;
  const i = figures.jsonInstructions;
  if (i !== undefined) {
    const cost = (values: number[]): string => `${(median(values) / median(i.json)).toFixed(3)}× cost`;
    rows.splice(
      2,
      0,
      ['G1 small JSON route, instructions per request (callgrind) ↓', counts(i.json), counts(i['json + guard()']), cost(i['json + guard()'])],
      ['G1 the same, a no-op middleware in guard()’s place (what any middleware costs) ↓', counts(i.json), counts(i['json + no-op middleware']), cost(i['json + no-op middleware'])],
    );
  }
  const e = figures.streamInstructions;
  // As a rate: events per instruction, with guard() against without (the target's direction).
  if (e !== undefined) rows.push(['G2 hand-written stream, instructions per event (callgrind) ↓', `${counts(e.stream)}, no compression`, `${counts(e['stream + compression() + guard()'])}, compression() + guard()`, `${(median(e.stream) / median(e['stream + compression() + guard()'])).toFixed(3)}× rate`]);
  return [['scenario G', 'without guard()', 'with guard()', 'ratio'], ['---', '---', '---', '---'], ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}
