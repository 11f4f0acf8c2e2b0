// `npm run bench [-- --quick] [-- --cpu-prof] [-- --peers=a,b] [-- --scenarios=AD|BC] [-- --scale]`: every peer
// against a bare node:http server, each server in its own process, one at a time, driven by one
// client process over 127.0.0.1. Prints Markdown tables of ratios against the bare server and
// writes every figure to bench/results/. See bench/README.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Child } from './child';
import { benchGuard, guardTable, type GuardFigures } from './guard';
import { BASELINE, peers, type PeerName } from './peers';
import { pipeScenario, pipeTable, type PipeResult } from './pipe';
import { historyBench } from './history';
import { scale } from './scale';
import type { BroadcastReport, ClientTask, LatencyReport, MemoryReport, ServerCommand, ThroughputReport } from './protocol';

const ROOT = path.join(__dirname, '..');
const RESULTS = path.join(__dirname, 'results');
const BUILD = path.join(ROOT, 'dist', 'cjs');
// Every server of a run loads this copy of the build, so that a rebuild of dist/ in the middle of
// a run cannot break it or mix two versions.
const BUILD_COPY = path.join(RESULTS, 'sse-guard');
const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const option = (name: string): string | undefined =>
  [...args].find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
// Narrowing a run is for iterating on one figure; the baseline always runs, since every ratio needs it.
const only = option('peers')?.split(',');
const scenarios = option('scenarios') ?? 'ABCDGHP';

// Every figure is measured `repeats` times, alternating between peers, and the best one counts:
// load from elsewhere on the machine only ever makes a figure worse.
const config = quick
  ? { events: 50_000, fanout: [200, 1000], rounds: 10, intervalMs: 100, firstSamples: 100, repeats: { single: 2, fanout: 1 } }
  : { events: 200_000, fanout: [1000, 5000], rounds: 20, intervalMs: 100, firstSamples: 200, repeats: { single: 3, fanout: 2 } };

const WARMUP_ROUNDS = 3;

let client: Child;

async function withServer<T>(peer: PeerName, label: string, body: (server: Child, port: number) => Promise<T>): Promise<T> {
  const execArgv = ['--expose-gc'];
  if (args.has('--cpu-prof')) {
    // One folder per server: the module loader's worker thread writes a profile of its own.
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${path.join(RESULTS, 'profiles', `${label}-${peer.replace(/\W+/g, '_')}`)}`);
  }
  const server = new Child(path.join(__dirname, 'server.ts'), [peer], execArgv);
  try {
    const port = await server.request<number>(undefined, 30_000);
    return await body(server, port);
  } finally {
    await server.stop();
  }
}

const ask = <T>(child: Child, message: ServerCommand | ClientTask, timeoutMs = 60_000): Promise<T> => child.request<T>(message, timeoutMs);

interface ThroughputResult extends ThroughputReport {
  eventsPerSecond: number;
  /** Events per second of server CPU: what the server could send with a core to itself. */
  eventsPerCpuSecond: number;
}

/** A: events per second over one connection, by the wall clock and per second of server CPU. */
async function throughput(peer: PeerName): Promise<ThroughputResult> {
  return withServer(peer, 'A', async (server, port) => {
    // Warm the JIT on a tenth of the load first.
    await ask(client, { task: 'throughput', port, events: Math.ceil(config.events / 10) });
    const cpuBefore = await ask<number>(server, { cmd: 'cpu' });
    const report = await ask<ThroughputReport>(client, { task: 'throughput', port, events: config.events }, 180_000);
    const cpu = (await ask<number>(server, { cmd: 'cpu' })) - cpuBefore;
    return { ...report, eventsPerSecond: report.events / report.seconds, eventsPerCpuSecond: report.events / (cpu / 1e6) };
  });
}

/** D: median ms from the request to the first event, on fresh connections. */
async function firstEvent(peer: PeerName): Promise<number> {
  return withServer(peer, 'D', async (_, port) => {
    await ask(client, { task: 'first-event', port, samples: 20 });
    const samples = await ask<number[]>(client, { task: 'first-event', port, samples: config.firstSamples });
    return median(samples) / 1000;
  });
}

interface FanoutResult {
  clients: number;
  rssPerClient: number;
  heapPerClient: number;
  externalPerClient: number;
  cpuPerBroadcastMicros: number;
  loopPerBroadcastMicros: number;
  latency: LatencyReport;
  memory: { before: MemoryReport; after: MemoryReport };
}

/** B and C: memory per idle subscriber, then server CPU and delivery latency per broadcast. */
async function fanout(peer: PeerName, clients: number): Promise<FanoutResult> {
  return withServer(peer, `B${clients}`, async (server, port) => {
    // Lazily compiled code and lazily allocated pools belong to the baseline, not to the clients.
    await ask(client, { task: 'first-event', port, samples: 20 });
    const before = await ask<MemoryReport>(server, { cmd: 'memory' });
    await ask(client, { task: 'connect', port, clients }, 120_000);
    // Some libraries register a subscriber a tick after the response started.
    for (let tries = 0; (await ask<number>(server, { cmd: 'subscribers' })) < clients; tries++) {
      if (tries === 100) throw new Error(`${peer}: subscribers never reached ${clients}`);
      await sleep(50);
    }
    const after = await ask<MemoryReport>(server, { cmd: 'memory' });
    const budget = (WARMUP_ROUNDS + config.rounds) * config.intervalMs + 30_000;
    const [broadcast, latency] = await Promise.all([
      ask<BroadcastReport>(server, { cmd: 'broadcast', rounds: config.rounds, warmup: WARMUP_ROUNDS, intervalMs: config.intervalMs }, budget),
      ask<LatencyReport>(client, { task: 'collect', rounds: config.rounds, timeoutMs: budget - 5_000 }, budget),
    ]);
    await ask(client, { task: 'disconnect' });
    if (latency.received < latency.expected) throw new Error(`${peer}: ${latency.received} of ${latency.expected} broadcast events arrived`);
    return {
      clients,
      rssPerClient: (after.rss - before.rss) / clients,
      heapPerClient: (after.heapUsed - before.heapUsed) / clients,
      externalPerClient: (after.external - before.external) / clients,
      cpuPerBroadcastMicros: broadcast.cpuMicros / config.rounds,
      loopPerBroadcastMicros: broadcast.loopMicros / config.rounds,
      latency,
      memory: { before, after },
    };
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const percent = (v: number): string => `${(v * 100).toFixed(0)}%`;

/** Spread of repeated measurements: (max - min) / median. */
function spread(values: number[]): number {
  return (Math.max(...values) - Math.min(...values)) / median(values);
}

interface PeerResult {
  throughput: ThroughputResult[];
  firstEventMs: number[];
  /** By number of clients. */
  fanout: Record<number, FanoutResult[]>;
}

function versionOf(name: string): string {
  const manifest = path.join(ROOT, 'node_modules', name, 'package.json');
  return (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version: string }).version;
}

function machine(): Record<string, string | number> {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadAverage1m: Number(os.loadavg()[0]!.toFixed(2)),
  };
}

const fmt = {
  rate: (v: number) => `${(v / 1000).toFixed(0)}k/s`,
  micros: (v: number) => `${v.toFixed(0)} µs`,
  ms: (v: number) => `${v.toFixed(2)} ms`,
  bytes: (v: number) => `${(v / 1024).toFixed(1)} KiB`,
};

type Column = [title: string, value: (r: PeerResult) => number, format: (v: number) => string];

/** A Markdown table: each figure with its ratio to the baseline's in the same run. */
function markdown(results: Map<PeerName, PeerResult>, columns: Column[]): string {
  const base = results.get(BASELINE)!;
  const head = ['peer', ...columns.map(([title]) => title)];
  const rows = [...results].map(([name, r]) => [
    name,
    ...columns.map(([, value, format]) => `${format(value(r))} (${(value(r) / value(base)).toFixed(2)}×)`),
  ]);
  return [head, head.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}

const best = {
  max: (values: number[]): number => Math.max(...values),
  min: (values: number[]): number => Math.min(...values),
};

/** One table for the single-stream scenarios (A, D), one for the many-client ones (B, C). */
function tables(results: Map<PeerName, PeerResult>): string[] {
  const base = results.get(BASELINE)!;
  const single: Column[] = [];
  if (base.throughput.length > 0) {
    single.push(
      ['A events per CPU-second ↑', (r) => best.max(r.throughput.map((t) => t.eventsPerCpuSecond)), fmt.rate],
      ['A events/s, wall clock ↑', (r) => best.max(r.throughput.map((t) => t.eventsPerSecond)), fmt.rate],
    );
  }
  if (base.firstEventMs.length > 0) single.push(['D first event, median ↓', (r) => best.min(r.firstEventMs), fmt.ms]);
  const sizes = Object.keys(base.fanout).map(Number);
  const many: Column[] = sizes.flatMap((n): Column[] => [
    [`B CPU/broadcast @${n} ↓`, (r) => best.min(r.fanout[n]!.map((f) => f.cpuPerBroadcastMicros)), fmt.micros],
    [`B p50 @${n} ↓`, (r) => best.min(r.fanout[n]!.map((f) => f.latency.p50)), fmt.ms],
    [`B p99 @${n} ↓`, (r) => best.min(r.fanout[n]!.map((f) => f.latency.p99)), fmt.ms],
  ]);
  const largest = sizes.at(-1);
  if (largest !== undefined) {
    many.push(
      [`C RSS/conn @${largest} ↓`, (r) => best.min(r.fanout[largest]!.map((f) => f.rssPerClient)), fmt.bytes],
      [`C heap/conn @${largest} ↓`, (r) => best.min(r.fanout[largest]!.map((f) => f.heapPerClient)), fmt.bytes],
    );
  }
  return [single, many].filter((columns) => columns.length > 0).map((columns) => markdown(results, columns));
}

function noise(results: Map<PeerName, PeerResult>): string {
  const lines = [...results].map(([name, r]) => {
    const parts: string[] = [];
    if (r.throughput.length > 1) {
      const clientCpu = best.max(r.throughput.map((t) => t.clientCpuShare));
      parts.push(`A ${percent(spread(r.throughput.map((t) => t.eventsPerCpuSecond)))} (client CPU up to ${percent(clientCpu)})`);
    }
    if (r.firstEventMs.length > 1) parts.push(`D ${percent(spread(r.firstEventMs))}`);
    for (const [n, runs] of Object.entries(r.fanout)) {
      if (runs.length > 1) parts.push(`B CPU @${n} ${percent(spread(runs.map((f) => f.cpuPerBroadcastMicros)))}, p99 @${n} ${percent(spread(runs.map((f) => f.latency.p99)))}`);
    }
    return parts.length === 0 ? '' : `- ${name}: ${parts.join('; ')}`;
  });
  const measured = lines.filter((line) => line !== '');
  return measured.length === 0 ? 'One run per figure: no spread to report.' : `Spread between repeats, (max - min) / median:\n${measured.join('\n')}`;
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(BUILD, 'index.js'))) throw new Error('no build in dist/cjs: run `npm run build` (`npm run bench` does)');
  fs.mkdirSync(RESULTS, { recursive: true });
  fs.rmSync(BUILD_COPY, { recursive: true, force: true });
  fs.cpSync(BUILD, BUILD_COPY, { recursive: true });
  // 100k idle streams: its own runner (bench/scale.ts), with its own file limits and report.
  if (args.has('--scale')) return scale({ clients: option('clients'), resultsDir: RESULTS, machine });
  const names = (Object.keys(peers) as PeerName[]).filter((name) => name === BASELINE || only === undefined || only.some((part) => name.includes(part)));
  const results = new Map<PeerName, PeerResult>(names.map((name) => [name, { throughput: [], firstEventMs: [], fanout: {} }]));
  let pipe: PipeResult[] = [];
  const started = Date.now();
  const machineBefore = machine();
  client = new Child(path.join(__dirname, 'client.ts'), [], []);
  try {
    // Repeats alternate between peers, so that a burst of load from elsewhere hits them all alike.
    for (let repeat = 0; repeat < config.repeats.single; repeat++) {
      for (const name of names) {
        if (scenarios.includes('A')) {
          const a = await throughput(name);
          results.get(name)!.throughput.push(a);
          console.error(`A  ${name}: ${fmt.rate(a.eventsPerCpuSecond)} per CPU-s, ${fmt.rate(a.eventsPerSecond)} (client CPU ${(a.clientCpuShare * 100).toFixed(0)}%)`);
        }
        if (scenarios.includes('D')) {
          const d = await firstEvent(name);
          results.get(name)!.firstEventMs.push(d);
          console.error(`D  ${name}: ${fmt.ms(d)}`);
        }
      }
    }
    for (let repeat = 0; repeat < (/[BC]/.test(scenarios) ? config.repeats.fanout : 0); repeat++) {
      for (const clients of config.fanout) {
        for (const name of names) {
          const f = await fanout(name, clients);
          (results.get(name)!.fanout[clients] ??= []).push(f);
          console.error(
            `BC ${name} @${clients}: ${fmt.micros(f.cpuPerBroadcastMicros)} CPU/broadcast, p50 ${fmt.ms(f.latency.p50)}, p99 ${fmt.ms(f.latency.p99)}, ${fmt.bytes(f.rssPerClient)} RSS/conn`,
          );
        }
      }
    }
    // P: pipe() against the loop it replaces (bench/pipe.ts), 200k events in both modes.
    if (scenarios.includes('P')) pipe = await pipeScenario((script, argv) => new Child(script, argv, []), client, 200_000, quick ? 3 : 5);
  } finally {
    await client.stop();
  }
  // G: guard() (bench/guard.ts).
  const guardFigures: GuardFigures | undefined = scenarios.includes('G') ? await benchGuard(quick, console.error) : undefined;
  const versions = Object.fromEntries(['better-sse', '@fastify/sse', 'fastify', 'express', 'compression'].map((name) => [name, versionOf(name)]));
  versions['sse-guard'] = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const report = {
    mode: quick ? 'quick' : 'full',
    date: new Date(started).toISOString(),
    seconds: Math.round((Date.now() - started) / 1000),
    machine: { ...machineBefore, loadAverage1mAfter: machine().loadAverage1m },
    versions,
    config,
    results: Object.fromEntries(results),
    pipe,
    guard: guardFigures,
  };
  const file = path.join(RESULTS, `${report.date.replace(/[:.]/g, '-')}-${report.mode}.json`);
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log([...tables(results), ...(pipe.length > 0 ? [pipeTable(pipe)] : []), ...(guardFigures === undefined ? [] : [guardTable(guardFigures)])].join('\n\n'));
  console.log(`\n${noise(results)}`);
  if (scenarios.includes('H')) console.log(`\nH  Channel history, cost of one publish() once full:\n${await historyBench(BUILD_COPY, quick)}`);
  console.log(`\n${report.mode} run, ${report.seconds} s; ${JSON.stringify(report.machine)}; ${JSON.stringify(versions)}`);
  console.log(`figures: ${path.relative(ROOT, file)}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
