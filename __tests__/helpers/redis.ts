// A real redis-server as a foreground child, on a free port of 127.0.0.1, without persistence.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createClient } from 'redis';
import { waitFor } from './server';

/** A port free on 127.0.0.1 a moment ago, for a server that cannot be told to pick one itself. */
export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

export interface RedisServer {
  port: number;
  url: string;
  /** SIGTERM for a clean stop, SIGKILL for a crash. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startRedis(binary: string, port?: number): Promise<RedisServer> {
  const listenOn = port ?? (await freePort());
  const child: ChildProcess = spawn(binary, ['--port', String(listenOn), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // Read to the end, so that its logging never blocks on a full pipe.
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit');
  await Promise.race([
    waitFor(`redis-server on port ${listenOn}`, () => output.includes('Ready to accept connections'), 10_000),
    exited.then(([code]) => {
      throw new Error(`redis-server exited with ${String(code)}:\n${output}`);
    }),
  ]);
  return {
    port: listenOn,
    url: `redis://127.0.0.1:${listenOn}`,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** An event as a client parsed it: `event` is `'resync'` for the channel's resync event, which has no id. */
export interface Received {
  id?: string;
  event?: string;
}

/**
 * The invariant of a channel on a shared log, checked on what one client received against every id
 * published, in stream order: each event at most once and in order, and every event missing from
 * the client's sequence covered by a resync that arrived in its place. Returns the first breach, or
 * undefined. Events published before the client's first one are not asked for.
 */
export function silentLoss(received: readonly Received[], published: readonly string[]): string | undefined {
  const index = new Map(published.map((id, i) => [id, i]));
  let last = -1;
  let resynced = false;
  for (const [n, event] of received.entries()) {
    if (event.id === undefined) {
      if (event.event !== 'resync') return `event ${n} has no id and is not a resync`;
      resynced = true;
      continue;
    }
    const at = index.get(event.id);
    if (at === undefined) return `event ${n} (${event.id}) was never published`;
    if (at <= last) return `event ${n} (${event.id}) came ${at === last ? 'twice' : 'out of order'}`;
    if (last >= 0 && at > last + 1 && !resynced) {
      return `${at - last - 1} events between ${published[last]} and ${event.id} were skipped without a resync`;
    }
    last = at;
    resynced = false;
  }
  return undefined;
}

/** Orders stream ids (`<ms>-<seq>`) as Redis does: numerically, milliseconds first. */
export function compareIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bMs, bSeq] = b.split('-').map(BigInt) as [bigint, bigint];
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

// The client type createClient() gives with no modules (as the tests make it).
const makeAdmin = (url: string) => createClient({ url });
export type AdminClient = ReturnType<typeof makeAdmin>;

/** A redis-server and a client of the test's own on it, to look at and shape the stream directly. */
export async function startRedisWithAdmin(binary: string, port?: number): Promise<{ redis: RedisServer; admin: AdminClient }> {
  const redis = await startRedis(binary, port);
  const admin = makeAdmin(redis.url);
  admin.on('error', () => {});
  await admin.connect();
  return { redis, admin };
}
