// A server process: one peer, listening on 127.0.0.1, measured from inside on the runner's command.
// Started by run.ts with --expose-gc; argv[2] names the peer.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import v8 from 'node:v8';
import { peers, type PeerName, type RunningPeer } from './peers';
import { nowMicros, PAYLOAD, stampedPayload, type BroadcastReport, type MemoryReport, type Reply, type ServerCommand } from './protocol';

// Writes of the last broadcast finish in later ticks (socket callbacks): wait for them before
// reading the CPU clock.
const SETTLE_MS = 100;

function memory(): MemoryReport {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run the server with --expose-gc');
  // Twice: the first pass can leave garbage that only becomes collectable afterwards (weak refs, finalizers).
  gc();
  gc();
  const { rss, heapUsed, external } = process.memoryUsage();
  const newSpace = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
  return { rss, heapUsed, external, newSpace };
}

async function broadcast(peer: RunningPeer, rounds: number, warmup: number, intervalMs: number): Promise<BroadcastReport> {
  // The first broadcasts compile the write path; their cost is not the steady state.
  for (let round = 0; round < warmup; round++) {
    await peer.broadcast(PAYLOAD);
    await sleep(intervalMs);
  }
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const cpuStart = process.cpuUsage();
  let loopMicros = 0;
  for (let round = 0; round < rounds; round++) {
    const start = nowMicros();
    await peer.broadcast(stampedPayload(start));
    const spent = nowMicros() - start;
    loopMicros += spent;
    await sleep(Math.max(0, intervalMs - spent / 1000));
  }
  await sleep(SETTLE_MS);
  const cpu = process.cpuUsage(cpuStart);
  lag.disable();
  return { cpuMicros: cpu.user + cpu.system, loopMicros, maxLagMicros: lag.max / 1000 };
}

async function answer(peer: RunningPeer, message: ServerCommand): Promise<unknown> {
  switch (message.cmd) {
    case 'cpu': {
      const { user, system } = process.cpuUsage();
      return user + system;
    }
    case 'memory':
      return memory();
    case 'subscribers':
      return peer.subscribers();
    case 'broadcast':
      return broadcast(peer, message.rounds, message.warmup, message.intervalMs);
    case 'shutdown': {
      const start = nowMicros();
      if (peer.shutdown === undefined) throw new Error('this peer has no shutdown');
      await peer.shutdown();
      return nowMicros() - start;
    }
  }
}

async function main(): Promise<void> {
  // An orderly exit, so that --cpu-prof gets to write its profile.
  process.on('SIGTERM', () => process.exit(0));
  const name = process.argv[2] as PeerName;
  const peer = await peers[name]();
  process.on('message', (message: ServerCommand) => {
    answer(peer, message).then(
      (value) => process.send?.({ ok: true, value } satisfies Reply),
      (error: unknown) => process.send?.({ ok: false, error: String(error) } satisfies Reply),
    );
  });
  process.send?.({ ok: true, value: peer.port } satisfies Reply);
}

void main();
