// Scenario P: stream.pipe() of an async generator against the hand-written send()/ready() loop
// over the same generator, each in its own server process, driven by the runner's client process.
// Run as a script (`pipe.ts <variant>`), this file is that server.
import http from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type * as SseGuard from '../src/index';
import { PAYLOAD, type Reply, type ServerCommand, type ThroughputReport } from './protocol';

// The build copied by run.ts, as in peers.ts.
const BUILT_PACKAGE = './results/sse-guard/index.js';

async function* items(count: number): AsyncGenerator<string> {
  for (let i = 0; i < count; i++) yield PAYLOAD;
}

const variants = {
  'send()/ready() loop by hand': async (stream: SseGuard.SseStream, count: number): Promise<void> => {
    for await (const item of items(count)) {
      if (!stream.send(item)) await stream.ready();
    }
    stream.close();
  },
  'pipe()': async (stream: SseGuard.SseStream, count: number): Promise<void> => {
    await stream.pipe(items(count), { end: true });
  },
};
type Variant = keyof typeof variants;

/** What run.ts hands over: a way to start a child process, and its client process. */
interface Child {
  request<T>(message: ServerCommand | { task: 'throughput'; port: number; events: number } | undefined, timeoutMs: number): Promise<T>;
  stop(): Promise<void>;
}

export interface PipeResult {
  variant: Variant;
  eventsPerCpuSecond: number;
  eventsPerSecond: number;
}

/** P, `repeats` times alternating between the variants; returns every measurement. */
export async function pipeScenario(start: (script: string, args: string[]) => Child, client: Child, events: number, repeats: number): Promise<PipeResult[]> {
  const results: PipeResult[] = [];
  for (let repeat = 0; repeat < repeats; repeat++) {
    for (const variant of Object.keys(variants) as Variant[]) {
      const server = start(__filename, [variant]);
      try {
        const port = await server.request<number>(undefined, 30_000);
        await client.request({ task: 'throughput', port, events: Math.ceil(events / 10) }, 60_000);
        const cpuBefore = await server.request<number>({ cmd: 'cpu' }, 10_000);
        const report = await client.request<ThroughputReport>({ task: 'throughput', port, events }, 180_000);
        const cpu = (await server.request<number>({ cmd: 'cpu' }, 10_000)) - cpuBefore;
        results.push({ variant, eventsPerCpuSecond: report.events / (cpu / 1e6), eventsPerSecond: report.events / report.seconds });
        console.error(`P  ${variant}: ${(results.at(-1)!.eventsPerCpuSecond / 1000).toFixed(0)}k/s per CPU-s`);
      } finally {
        await server.stop();
      }
    }
  }
  return results;
}

/** The Markdown table: the best of each variant, and pipe()'s ratio to the loop by hand. */
export function pipeTable(results: PipeResult[]): string {
  const best = (variant: Variant, key: 'eventsPerCpuSecond' | 'eventsPerSecond'): number =>
    Math.max(...results.filter((r) => r.variant === variant).map((r) => r[key]));
  const base: Variant = 'send()/ready() loop by hand';
  const cell = (variant: Variant, key: 'eventsPerCpuSecond' | 'eventsPerSecond'): string =>
    `${(best(variant, key) / 1000).toFixed(0)}k/s (${(best(variant, key) / best(base, key)).toFixed(2)}×)`;
  const rows = (Object.keys(variants) as Variant[]).map((v) => `| ${v} | ${cell(v, 'eventsPerCpuSecond')} | ${cell(v, 'eventsPerSecond')} |`);
  return ['| P: async generator into one stream | events per CPU-second ↑ | events/s, wall clock ↑ |', '| --- | --- | --- |', ...rows].join('\n');
}

async function serve(variant: Variant): Promise<void> {
  process.on('SIGTERM', () => process.exit(0));
  const guard = (await import(path.join(__dirname, BUILT_PACKAGE))) as typeof SseGuard;
  const middleware = guard.sse();
  const run = variants[variant];
  const server = http.createServer((req, res) => {
    middleware(req, res, () => {
      const count = Number(new URL(req.url ?? '/', 'http://bench').searchParams.get('events'));
      void run((res as http.ServerResponse & { sse: SseGuard.SseStream }).sse, count);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.on('message', (message: ServerCommand) => {
    const { user, system } = process.cpuUsage();
    const reply: Reply = message.cmd === 'cpu' ? { ok: true, value: user + system } : { ok: false, error: `pipe server: no ${message.cmd}` };
    process.send?.(reply);
  });
  process.send?.({ ok: true, value: (server.address() as AddressInfo).port } satisfies Reply);
}

if (require.main === module) void serve(process.argv[2] as Variant);
