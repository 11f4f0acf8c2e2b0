// The soak's shared machinery: run mode and bounds, the server child each part drives over IPC,
// the clients, and seeded randomness.
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { stats } from '../src/index';

export interface Mode {
  short: boolean;
}

/** The full-mode figure, or the short-mode one. */
export function scale(mode: Mode, full: number, short: number): number {
  return mode.short ? short : full;
}

/** One part's figures and bounds, printed as they come. */
export class Part {
  readonly failures: string[] = [];

  constructor(readonly name: string) {}

  figure(label: string, value: string): void {
    console.log(`  ${label}: ${value}`);
  }

  /** Asserts one bound and prints it with what was measured. */
  check(label: string, ok: boolean, measured: string): void {
    console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${label} (${measured})`);
    if (!ok) this.failures.push(`${label}: ${measured}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Numbers

export const KB = 1024;
export const MB = 1024 * 1024;

export const mb = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`;
export const ms = (value: number): string => `${value.toFixed(1)} ms`;

/** Microseconds on the monotonic clock, which every process on the machine shares. */
export function nowMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Nearest-rank percentile; 0 for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A seeded generator (mulberry32): the same seed gives the same run, in any process. */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** The open-file limit this process (and the children it starts) runs with. */
export function fileLimit(): number {
  const limit = execFileSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  return limit === 'unlimited' ? Infinity : Number(limit);
}

export const sleep = (msecs: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, msecs));

/** Runs `task(0..total-1)` with at most `concurrency` in flight. */
export async function inBatches(total: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
}

/** Polls `test` every 20 ms until it holds or `timeoutMs` passed; resolves to whether it held. */
export async function until(test: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await test()) return true;
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
}

// ---------------------------------------------------------------------------------------------
// Unhandled errors, counted in every soak process

export const unhandled = { rejections: 0, exceptions: 0, last: '' };

/** Counts instead of crashing, so that a part can report an unhandled error as a missed bound. */
export function countUnhandled(): void {
  process.on('unhandledRejection', (reason) => {
    unhandled.rejections++;
    unhandled.last = String(reason instanceof Error ? reason.stack : reason);
  });
  process.on('uncaughtException', (error) => {
    unhandled.exceptions++;
    unhandled.last = String(error.stack);
  });
}

/** The bound every part ends with: the server child saw no unhandled error. */
export function checkUnhandled(part: Part, probe: Probe): void {
  const { exceptions, rejections, last } = probe.unhandled;
  part.check('no unhandled error in the server', exceptions + rejections === 0, `${exceptions} exceptions, ${rejections} rejections${last === '' ? '' : `; last: ${last}`}`);
}

// ---------------------------------------------------------------------------------------------
// The server child: a part's server side, in its own process, so that its heap, RSS, timers and
// file descriptors are measured apart from the clients'.

/** What the server side of a part is given. */
export interface ServeContext<C> {
  server: http.Server;
  config: C;
}

/** What it gives back: the commands the client side may call. */
export type Methods = Record<string, (arg: never) => unknown>;

export type Serve<C = unknown> = (ctx: ServeContext<C>) => Methods | Promise<Methods>;

/** The server child's state, measured after garbage collection. */
export interface Probe {
  heapUsed: number;
  heapTotal: number;
  rss: number;
  external: number;
  open: number;
  bufferedBytes: number;
  eventsSent: number;
  slowConsumerDrops: number;
  /** process.getActiveResourcesInfo(), counted by type. */
  resources: Record<string, number>;
  /** Timers created and not yet cleared or fired, unref'd ones included. */
  timers: number;
  serverListeners: Record<string, number>;
  processListeners: Record<string, number>;
  unhandled: typeof unhandled;
}

export interface Remote {
  url: string;
  port: number;
  call<T = unknown>(method: string, arg?: unknown): Promise<T>;
  probe(): Promise<Probe>;
  /** Ends the child and resolves once it exited. */
  stop(): Promise<void>;
}

type Request = { id: number; method: string; arg: unknown };
type Reply = { id: number; value?: unknown; error?: string };

const root = path.resolve(__dirname, '..');

/** Starts `part`'s server side in a child process (with --expose-gc) and connects to it. */
export function spawnServer(part: string, config: unknown = {}): Promise<Remote> {
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(__dirname, 'server.ts'), part, JSON.stringify(config)], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let nextId = 0;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  exited.then(() => {
    for (const { reject } of pending.values()) reject(new Error(`the ${part} server exited`));
    pending.clear();
  });
  return new Promise<Remote>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the ${part} server exited with ${code} before listening`)));
    child.on('message', (message: { port: number } | Reply) => {
      if ('port' in message) {
        const port = message.port;
        const call = <T>(method: string, arg?: unknown): Promise<T> =>
          new Promise<T>((ok, fail) => {
            const id = nextId++;
            pending.set(id, { resolve: ok as (value: unknown) => void, reject: fail });
            child.send({ id, method, arg } satisfies Request);
          });
        resolve({
          port,
          url: `http://127.0.0.1:${port}`,
          call,
          probe: () => call<Probe>('probe'),
          stop: () => {
            if (child.connected) child.disconnect();
            return exited;
          },
        });
        return;
      }
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(message.error));
      else waiter?.resolve(message.value);
    });
  });
}

// getActiveResourcesInfo() leaves out unref'd timers, and the heartbeat interval is one, so the
// server child counts timers itself. The library and user code reach timers through the globals.
const liveTimers = new Set<unknown>();

function countTimers(): void {
  const { setTimeout: setT, setInterval: setI, clearTimeout: clearT, clearInterval: clearI } = globalThis;
  globalThis.setInterval = ((fn: (...args: unknown[]) => void, delay?: number, ...args: unknown[]) => {
    const timer = setI(fn, delay, ...args);
    liveTimers.add(timer);
    return timer;
  }) as typeof setInterval;
  globalThis.setTimeout = ((fn: (...args: unknown[]) => void, delay?: number, ...args: unknown[]) => {
    const timer = setT(
      (...a: unknown[]) => {
        liveTimers.delete(timer);
        fn(...a);
      },
      delay,
      ...args,
    );
    liveTimers.add(timer);
    return timer;
  }) as typeof setTimeout;
  const clear = (timer: unknown): void => {
    liveTimers.delete(timer);
  };
  globalThis.clearTimeout = ((timer?: NodeJS.Timeout) => (clear(timer), clearT(timer))) as typeof clearTimeout;
  globalThis.clearInterval = ((timer?: NodeJS.Timeout) => (clear(timer), clearI(timer))) as typeof clearInterval;
}

function listenerCounts(emitter: NodeJS.EventEmitter): Record<string, number> {
  return Object.fromEntries(emitter.eventNames().map((name) => [String(name), emitter.listenerCount(name)]));
}

async function probe(server: http.Server): Promise<Probe> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('the server child runs without --expose-gc');
  // Several rounds, each after a turn of the loop, so that objects freed by close callbacks go too.
  for (let i = 0; i < 4; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  const memory = process.memoryUsage();
  const live = stats();
  const resources: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) resources[type] = (resources[type] ?? 0) + 1;
  return {
    heapUsed: memory.heapUsed,
    heapTotal: memory.heapTotal,
    rss: memory.rss,
    external: memory.external,
    open: live.open,
    bufferedBytes: live.bufferedBytes,
    eventsSent: live.eventsSent,
    slowConsumerDrops: live.slowConsumerDrops,
    resources,
    timers: liveTimers.size,
    serverListeners: listenerCounts(server),
    processListeners: listenerCounts(process),
    unhandled: { ...unhandled },
  };
}

/** The child's side: count what the probe needs, start the part's server, answer its commands. */
export async function serveChild(serve: Serve, config: unknown): Promise<void> {
  countTimers();
  countUnhandled();
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const methods: Methods = { ...(await serve({ server, config })), probe: () => probe(server) };
  process.on('message', async ({ id, method, arg }: Request) => {
    const fn = methods[method];
    try {
      if (fn === undefined) throw new Error(`no server method ${method}`);
      process.send!({ id, value: await fn(arg as never) } satisfies Reply);
    } catch (error) {
      process.send!({ id, error: String(error instanceof Error ? error.stack : error) } satisfies Reply);
    }
  });
  // The runner went away (or stopped us): nothing else may keep the child alive.
  process.once('disconnect', () => process.exit(0));
  process.send!({ port: (server.address() as net.AddressInfo).port });
}

// ---------------------------------------------------------------------------------------------
// Clients

// One socket per stream, no pooling: every client is its own connection, as browsers' would be.
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

/** An event as the spec parser hands it over: `event` and `id` are undefined when the event had none. */
export type ClientEvent = EventSourceMessage;

export interface EventClient {
  res: http.IncomingMessage;
  /** Resolves when the response ended or was cut; `complete` is true for a clean end from the server. */
  closed: Promise<{ complete: boolean }>;
  close(): void;
}

export interface OpenOptions {
  headers?: http.OutgoingHttpHeaders;
  /** Default: one connection per request, closed after it. */
  agent?: http.Agent;
  onEvent?: (event: ClientEvent) => void;
  onRetry?: (ms: number) => void;
}

/** Opens an event stream with Node's HTTP client and a spec parser; resolves at the response headers. */
export function openEvents(url: string, options: OpenOptions = {}): Promise<EventClient> {
  return new Promise<EventClient>((resolve, reject) => {
    const req = http.get(url, { agent: options.agent ?? agent, headers: { accept: 'text/event-stream', ...options.headers } }, (res) => {
      const parser = createParser({ onEvent: options.onEvent, onRetry: options.onRetry });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      const closed = new Promise<{ complete: boolean }>((done) => {
        res.on('close', () => done({ complete: res.complete }));
        res.on('error', () => {});
      });
      resolve({ res, closed, close: () => res.destroy() });
    });
    req.on('error', reject);
  });
}

export interface Collected {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: ClientEvent[];
  retries: number[];
  complete: boolean;
}

/** Reads a whole response as events, until the server ends it. */
export async function readEvents(url: string, headers: http.OutgoingHttpHeaders = {}): Promise<Collected> {
  const events: ClientEvent[] = [];
  const retries: number[] = [];
  const client = await openEvents(url, { headers, onEvent: (event) => events.push(event), onRetry: (retry) => retries.push(retry) });
  const { complete } = await client.closed;
  return { status: client.res.statusCode ?? 0, headers: client.res.headers, events, retries, complete };
}

/** A raw GET on its own socket, for what Node's HTTP client will not do: reset, half-close, never read. */
export function rawGet(port: number, pathname: string, headers: Record<string, string> = {}): net.Socket {
  const socket = net.connect(port, '127.0.0.1');
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.write(`GET ${pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n${lines.join('')}\r\n`, 'latin1');
  socket.on('error', () => {});
  return socket;
}

/** Resolves when the socket closed. */
export function socketClosed(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => (socket.closed ? resolve() : socket.once('close', () => resolve())));
}
