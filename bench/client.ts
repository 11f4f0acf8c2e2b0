// The load generator: one process, driven task by task by run.ts. Plain http.request, except for
// the many subscribers of scenario B, which read bare sockets (see subscribe()).
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import net, { type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  nowMicros,
  type ClientTask,
  type LatencyReport,
  type Reply,
  type ThroughputReport,
} from './protocol';

// A fresh TCP connection per request: no pooling to hide connection set-up, no cap on sockets.
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
const HEADERS = { accept: 'text/event-stream', 'accept-encoding': 'gzip, deflate, br' };
// Connections opened at once while connecting many clients; more only fills the accept queue.
const CONNECT_CONCURRENCY = 200;
const NEWLINE = 0x0a;
const STAMP = Buffer.from('t=');
const DATA = Buffer.from('data:');
const EMPTY = Buffer.alloc(0);
const HEAD_END = Buffer.from('\r\n\r\n');
// The terminating chunk of a chunked response, written on its own by res.end().
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

function open(port: number, path: string, timeoutMs: number): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent, headers: HEADERS }, (res) => {
      clearTimeout(timer);
      // The client never decodes: a compressed stream here would be a broken peer, not a slow one.
      if (res.statusCode !== 200 || res.headers['content-encoding'] !== undefined) {
        req.destroy();
        reject(new Error(`${path}: status ${res.statusCode}, content-encoding ${res.headers['content-encoding']}`));
      } else {
        resolve({ req, res });
      }
    });
    const timer = setTimeout(() => req.destroy(new Error(`${path}: no response within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end();
  });
}

/** Scenario A: events per second over one connection until the server ends the response. */
async function throughput(port: number, events: number): Promise<ThroughputReport> {
  const cpuStart = process.cpuUsage();
  const start = nowMicros();
  const { req, res } = await open(port, `/throughput?events=${events}`, 10_000);
  let count = 0;
  let previous = 0;
  // An event ends with an empty line: count LF LF, also across chunk boundaries.
  res.on('data', (chunk: Buffer) => {
    if (previous === NEWLINE && chunk[0] === NEWLINE) count++;
    let at = chunk.indexOf(NEWLINE);
    while (at !== -1 && at + 1 < chunk.length) {
      if (chunk[at + 1] === NEWLINE) count++;
      at = chunk.indexOf(NEWLINE, at + 1);
    }
    previous = chunk[chunk.length - 1]!;
  });
  const deadline = setTimeout(() => req.destroy(new Error(`throughput: not finished within 120 s (${count} events)`)), 120_000);
  try {
    await new Promise<void>((resolve, reject) => {
      res.on('end', resolve);
      res.on('error', reject);
      req.on('error', reject);
    });
  } finally {
    clearTimeout(deadline);
  }
  const elapsed = nowMicros() - start;
  // A preamble (a retry hint, a heartbeat) ends in an empty line too; fewer than asked is a failure.
  if (count < events) throw new Error(`throughput: ${count} events received of ${events}`);
  const cpu = process.cpuUsage(cpuStart);
  return { events, seconds: elapsed / 1e6, clientCpuShare: (cpu.user + cpu.system) / elapsed };
}

/** Scenario D: microseconds from the request to the first `data:` line, on fresh connections, one at a time. */
async function firstEvent(port: number, samples: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const start = nowMicros();
    const { req, res } = await open(port, '/first', 10_000);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('first event: none within 10 s')), 10_000);
      let seen = Buffer.alloc(0);
      res.on('data', (chunk: Buffer) => {
        seen = Buffer.concat([seen, chunk]);
        if (seen.includes(DATA)) {
          times.push(nowMicros() - start);
          clearTimeout(timer);
          resolve();
        }
      });
    });
    req.destroy();
  }
  return times;
}

/**
 * A subscriber on a bare TCP socket. Its time is part of every latency measured, so past the
 * response head it parses no HTTP at all: it only scans the bytes for stamps, which chunked
 * encoding leaves whole since every library writes an event in one piece.
 */
function subscribe(port: number, timeoutMs: number, localAddress: string): Promise<{ socket: Socket; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    const timer = setTimeout(() => socket.destroy(new Error(`/subscribe: no response within ${timeoutMs} ms`)), timeoutMs);
    let head = EMPTY;
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end === -1) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', reject);
      // Past the head the client never decodes: a compressed stream here would be a broken peer.
      const text = head.toString('latin1', 0, end).toLowerCase();
      if (!text.startsWith('http/1.1 200') || text.includes('\r\ncontent-encoding:')) {
        socket.destroy();
        reject(new Error(`/subscribe answered ${JSON.stringify(text)}`));
      } else {
        resolve({ socket, body: head.subarray(end + HEAD_END.length) });
      }
    };
    socket.on('data', onData);
    socket.on('error', reject);
    socket.write(`GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: ${HEADERS.accept}\r\nAccept-Encoding: ${HEADERS['accept-encoding']}\r\n\r\n`);
  });
}

/** Scenarios B and C: many idle subscribers, then the latency of every broadcast each one receives. */
class Subscribers {
  readonly #sockets: Socket[] = [];
  #latencies: number[] = [];
  #received = 0;
  #ended = 0;
  #onEvent: (() => void) | undefined;

  async connect(port: number, clients: number, sources: string[]): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < clients) {
        const source = sources[next++ % sources.length]!;
        const { socket, body } = await subscribe(port, 30_000, source);
        this.#sockets.push(socket);
        this.#listen(socket, body);
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, clients) }, worker));
  }

  #listen(socket: Socket, body: Buffer): void {
    // A lost connection shows as missing events, which the runner reports.
    socket.on('error', () => undefined);
    // The stamp may straddle two reads.
    let tail: Buffer = EMPTY;
    let ended = false;
    const scan = (chunk: Buffer): void => {
      const receivedAt = nowMicros();
      if (!ended && chunk.length >= LAST_CHUNK.length && chunk.lastIndexOf(LAST_CHUNK) === chunk.length - LAST_CHUNK.length) {
        ended = true;
        this.#ended++;
      }
      const text = tail.length === 0 ? chunk : Buffer.concat([tail, chunk]);
      let found = false;
      let at = text.indexOf(STAMP);
      while (at !== -1) {
        const stop = text.indexOf(0x3b, at); // ';' closes the stamp
        if (stop === -1) break;
        this.#latencies.push(receivedAt - Number(text.toString('latin1', at + STAMP.length, stop)));
        this.#received++;
        found = true;
        at = text.indexOf(STAMP, stop);
      }
      tail = at === -1 ? EMPTY : text.subarray(at);
      if (found) this.#onEvent?.();
    };
    scan(body);
    socket.on('data', scan);
  }

  /** Waits until every client received `rounds` broadcasts, or the time runs out; in ms. */
  async collect(rounds: number, timeoutMs: number): Promise<LatencyReport> {
    const expected = rounds * this.#sockets.length;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#onEvent = () => {
        if (this.#received < expected) return;
        clearTimeout(timer);
        resolve();
      };
      this.#onEvent();
    });
    this.#onEvent = undefined;
    const sorted = this.#latencies.sort((a, b) => a - b);
    const at = (q: number): number => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN) / 1000;
    const report = { received: this.#received, expected, p50: at(0.5), p99: at(0.99) };
    this.#latencies = [];
    this.#received = 0;
    return report;
  }

  /** Waits, polling, until every subscriber's response ended or `timeoutMs` passed; how many did. */
  async ended(timeoutMs: number): Promise<number> {
    for (let waited = 0; this.#ended < this.#sockets.length && waited < timeoutMs; waited += 50) await sleep(50);
    return this.#ended;
  }

  disconnect(): void {
    for (const socket of this.#sockets.splice(0)) socket.destroy();
    this.#ended = 0;
  }
}

const subscribers = new Subscribers();

async function run(task: ClientTask): Promise<unknown> {
  switch (task.task) {
    case 'throughput':
      return throughput(task.port, task.events);
    case 'first-event':
      return firstEvent(task.port, task.samples);
    case 'connect':
      return subscribers.connect(task.port, task.clients, task.sources ?? ['127.0.0.1']);
    case 'collect':
      return subscribers.collect(task.rounds, task.timeoutMs);
    case 'ended':
      return subscribers.ended(task.timeoutMs);
    case 'disconnect':
      return subscribers.disconnect();
  }
}

process.on('message', (task: ClientTask) => {
  run(task).then(
    (value) => process.send?.({ ok: true, value } satisfies Reply),
    (error: unknown) => process.send?.({ ok: false, error: String(error) } satisfies Reply),
  );
});
