// What the runner, the server processes and the client process say to each other, and the
// event payloads they agree on.

/** The payload of scenario A and D events: 50 bytes that no serializer needs to escape. */
export const PAYLOAD = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX';

/**
 * Microseconds on the monotonic clock. Every process on the machine reads the same clock
 * (CLOCK_MONOTONIC behind process.hrtime), so a timestamp taken by the server can be
 * subtracted from one taken by the client.
 */
export function nowMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** A broadcast payload carrying its send time, padded to the same 50 bytes. */
export function stampedPayload(sentAt: number): string {
  return `t=${sentAt};`.padEnd(PAYLOAD.length, 'x');
}

/** Runner to server. */
export type ServerCommand =
  | { cmd: 'cpu' }
  | { cmd: 'memory' }
  | { cmd: 'subscribers' }
  /** `warmup` unstamped rounds first, which clients do not time. */
  | { cmd: 'broadcast'; rounds: number; warmup: number; intervalMs: number }
  /** Closes every subscriber's response as the library does at shutdown; answers the µs it took. */
  | { cmd: 'shutdown' };

export interface MemoryReport {
  rss: number;
  heapUsed: number;
  /** Buffers and other memory held outside the JS heap. */
  external: number;
  /**
   * Committed size of V8's young generation. It grows with the allocation rate, not with the
   * connections, and is part of the RSS: the same few MB in every server, which narrows RSS ratios.
   */
  newSpace: number;
}

export interface BroadcastReport {
  /** Server CPU (user + system) from the first broadcast until the writes of the last one settled. */
  cpuMicros: number;
  /** Time from each broadcast call until it returned (or its promise settled). */
  loopMicros: number;
  /** The longest event-loop delay seen over the rounds (perf_hooks, 10 ms resolution). */
  maxLagMicros: number;
}

/** Runner to client. */
export type ClientTask =
  | { task: 'throughput'; port: number; events: number }
  | { task: 'first-event'; port: number; samples: number }
  /** `sources`: local addresses to connect from, in turn (each has its own ~28k ephemeral ports). */
  | { task: 'connect'; port: number; clients: number; sources?: string[] }
  | { task: 'collect'; rounds: number; timeoutMs: number }
  /** How many subscribers saw their response end (the terminating chunk), waiting up to `timeoutMs` for all. */
  | { task: 'ended'; timeoutMs: number }
  | { task: 'disconnect' };

export interface ThroughputReport {
  events: number;
  seconds: number;
  /** The client's own CPU share over the run: near 1 means the client, not the server, set the pace. */
  clientCpuShare: number;
}

export interface LatencyReport {
  received: number;
  expected: number;
  p50: number;
  p99: number;
}

/** A reply from a child: the result of the last command, or its failure. */
export type Reply<T = unknown> = { ok: true; value: T } | { ok: false; error: string };
