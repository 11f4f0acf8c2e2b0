// `npm run bench -- --scale [--clients=N]`: N idle streams (default 100,000) in one server process,
// opened by a separate client process from several 127.0.0.x source addresses, then 10 broadcasts
// to all of them and a shutdown; the bare node:http server at the same count in the same run.
// Not part of CI: it needs a raised open-file limit and a few GB of memory. See bench/README.md.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Child } from './child';
import { BASELINE, type PeerName } from './peers';
import type { BroadcastReport, ClientTask, LatencyReport, MemoryReport, ServerCommand } from './protocol';

const PEERS: PeerName[] = [BASELINE, 'sse-guard'];
const ROUNDS = 10;
const WARMUP_ROUNDS = 2;
// Connections per source address, as a share of the kernel's ephemeral port range (about 28k by
// default): every connection to the one server port needs its own local port, and bind() (which a
// source address takes) picks from one half of the range first; past it every bind scans the range,
// and opening slows to a crawl.
const PORT_SHARE = 0.4;

interface Kernel {
  /** Kernel slab memory (socket, file and inode objects live here), bytes. */
  slab: number;
  /** Memory charged to TCP sockets (buffers), bytes. */
  tcp: number;
}

/** Kernel memory as Linux reports it; both ends of every connection live in this kernel. */
function kernel(): Kernel {
  const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
  const slabKiB = Number(/^Slab:\s+(\d+) kB/m.exec(meminfo)?.[1]);
  const pages = Number(/^TCP:.* mem (\d+)/m.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'))?.[1]);
  return { slab: slabKiB * 1024, tcp: pages * 4096 };
}

function ephemeralPorts(): number {
  const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  return high! - low! + 1;
}

/** A bound that failed is a failed run: its figures would not mean what they say. */
function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`scale: ${what}`);
}

interface ScaleResult {
  clients: number;
  openSeconds: number;
  rssPerClient: number;
  heapPerClient: number;
  kernelPerClient: number;
  cpuPerBroadcastMicros: number;
  maxLagMs: number;
  latency: LatencyReport;
  shutdownMs: number;
  memory: { before: MemoryReport; after: MemoryReport };
  kernel: { before: Kernel; after: Kernel };
}

interface Setup {
  clients: number;
  /** Per peer: a fresh block of addresses, so that no peer opens among the last one's closing ports. */
  sources: string[][];
  intervalMs: number;
  fileLimit: number;
}

function setup(clients: number): Setup {
  check(Number.isSafeInteger(clients) && clients > 0, `--clients must be a positive integer, got ${clients}`);
  const perSource = Math.floor(ephemeralPorts() * PORT_SHARE);
  const count = Math.ceil(clients / perSource);
  check(count * PEERS.length <= 250, `${clients} clients need ${count} source addresses of ${perSource} ports per peer; at most 250 in all (127.0.0.2-251)`);
  return {
    clients,
    sources: PEERS.map((_, peer) => Array.from({ length: count }, (_, i) => `127.0.0.${2 + peer * count + i}`)),
    // Room for the broadcast to finish (about 10 µs of CPU per subscriber) and for the client to
    // read it before the next: overlapping rounds would measure a queue, not a broadcast.
    intervalMs: Math.max(200, Math.ceil(clients / 40)),
    // One socket per client in each process, plus a few hundred for the rest (stdio, IPC, the listener).
    fileLimit: clients + 512,
  };
}

const ask = <T>(child: Child, message: ServerCommand | ClientTask, timeoutMs: number): Promise<T> => child.request<T>(message, timeoutMs);

async function measure(peer: PeerName, sources: string[], s: Setup, client: Child): Promise<ScaleResult> {
  const { clients } = s;
  const server = new Child(path.join(__dirname, 'server.ts'), [peer], ['--expose-gc'], s.fileLimit);
  try {
    const port = await server.request<number>(undefined, 30_000);
    await ask(client, { task: 'first-event', port, samples: 20 }, 30_000);
    const before = await ask<MemoryReport>(server, { cmd: 'memory' }, 30_000);
    const kernelBefore = kernel();
    const openStart = Date.now();
    await ask(client, { task: 'connect', port, clients, sources }, 60_000 + clients * 2);
    for (let tries = 0; (await ask<number>(server, { cmd: 'subscribers' }, 30_000)) < clients; tries++) {
      check(tries < 200, `${peer}: subscribers never reached ${clients}`);
      await sleep(50);
    }
    const openSeconds = (Date.now() - openStart) / 1000;
    const after = await ask<MemoryReport>(server, { cmd: 'memory' }, 60_000);
    const kernelAfter = kernel();

    const budget = (WARMUP_ROUNDS + ROUNDS) * s.intervalMs + 60_000;
    const [broadcast, latency] = await Promise.all([
      ask<BroadcastReport>(server, { cmd: 'broadcast', rounds: ROUNDS, warmup: WARMUP_ROUNDS, intervalMs: s.intervalMs }, budget),
      ask<LatencyReport>(client, { task: 'collect', rounds: ROUNDS, timeoutMs: budget - 5_000 }, budget),
    ]);
    check(latency.received === latency.expected, `${peer}: ${latency.received} of ${latency.expected} broadcast events arrived`);

    const shutdownBudget = 30_000 + clients;
    const shutdownMicros = await ask<number>(server, { cmd: 'shutdown' }, shutdownBudget);
    const ended = await ask<number>(client, { task: 'ended', timeoutMs: 30_000 }, 60_000);
    check(ended === clients, `${peer}: ${ended} of ${clients} responses ended after shutdown`);
    check((await ask<number>(server, { cmd: 'subscribers' }, 30_000)) === 0, `${peer}: subscribers left after shutdown`);
    return {
      clients,
      openSeconds,
      rssPerClient: (after.rss - before.rss) / clients,
      heapPerClient: (after.heapUsed - before.heapUsed) / clients,
      kernelPerClient: (kernelAfter.slab + kernelAfter.tcp - kernelBefore.slab - kernelBefore.tcp) / clients,
      cpuPerBroadcastMicros: broadcast.cpuMicros / ROUNDS,
      maxLagMs: broadcast.maxLagMicros / 1000,
      latency,
      shutdownMs: shutdownMicros / 1000,
      memory: { before, after },
      kernel: { before: kernelBefore, after: kernelAfter },
    };
  } finally {
    // The server closes first, so that the closing ports wait out TIME_WAIT on its side, not among
    // the client's source ports.
    await server.stop();
    await ask(client, { task: 'disconnect' }, 60_000).catch(() => undefined);
  }
}

type Row = [title: string, value: (r: ScaleResult) => number, format: (v: number) => string];

const kib = (v: number): string => `${(v / 1024).toFixed(1)} KiB`;
const ms = (v: number): string => `${v.toFixed(1)} ms`;
const ROWS: Row[] = [
  ['time to open, s ↓', (r) => r.openSeconds, (v) => `${v.toFixed(1)} s`],
  ['RSS/conn ↓', (r) => r.rssPerClient, kib],
  ['heap/conn ↓', (r) => r.heapPerClient, kib],
  ['kernel/conn, both ends ↓', (r) => r.kernelPerClient, kib],
  ['CPU/broadcast ↓', (r) => r.cpuPerBroadcastMicros / 1000, ms],
  ['p50 delivery ↓', (r) => r.latency.p50, ms],
  ['p99 delivery ↓', (r) => r.latency.p99, ms],
  ['max event-loop lag ↓', (r) => r.maxLagMs, ms],
  ['shutdown ↓', (r) => r.shutdownMs, ms],
];

function table(results: Map<PeerName, ScaleResult>): string {
  const base = results.get(BASELINE)!;
  const names = [...results.keys()];
  const head = [`@${base.clients}`, ...names];
  const lines = ROWS.map(([title, value, format]) => [title, ...names.map((n) => `${format(value(results.get(n)!))} (${(value(results.get(n)!) / value(base)).toFixed(2)}×)`)]);
  return [head, head.map(() => '---'), ...lines].map((row) => `| ${row.join(' | ')} |`).join('\n');
}

export interface ScaleRun {
  clients: string | undefined;
  resultsDir: string;
  machine: () => Record<string, string | number>;
}

export async function scale(run: ScaleRun): Promise<void> {
  const s = setup(Number(run.clients ?? 100_000));
  const machineBefore = run.machine();
  const started = Date.now();
  console.error(`scale: ${s.clients} streams from ${s.sources.map((block) => block.join(', ')).join(' / ')}, a broadcast every ${s.intervalMs} ms, open-file limit ${s.fileLimit}`);
  const client = new Child(path.join(__dirname, 'client.ts'), [], [], s.fileLimit);
  const results = new Map<PeerName, ScaleResult>();
  try {
    for (const [i, peer] of PEERS.entries()) {
      const r = await measure(peer, s.sources[i]!, s, client);
      results.set(peer, r);
      console.error(`scale ${peer}: ${ROWS.map(([title, value, format]) => `${title.replace(/ [↓↑]$/, '')} ${format(value(r))}`).join(', ')}`);
    }
  } finally {
    await client.stop();
  }
  const report = {
    mode: 'scale',
    date: new Date(started).toISOString(),
    seconds: Math.round((Date.now() - started) / 1000),
    machine: { ...machineBefore, loadAverage1mAfter: run.machine().loadAverage1m, totalMemoryBytes: os.totalmem() },
    config: { ...s, rounds: ROUNDS, warmup: WARMUP_ROUNDS },
    results: Object.fromEntries(results),
  };
  const file = path.join(run.resultsDir, `${report.date.replace(/[:.]/g, '-')}-scale.json`);
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(table(results));
  console.log(`\nscale run, ${report.seconds} s; ${JSON.stringify(report.machine)}`);
  console.log(`figures: ${path.relative(path.join(__dirname, '..'), file)}`);
}
