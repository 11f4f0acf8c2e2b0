// The servers under test. Every one serves the same three routes with the same logic (serve());
// only how a library writes and ends a stream, and how it broadcasts, differs.
// Each peer loads its libraries itself, so that a server process holds only the code it runs.
// Per-connection state lives in class instances, not in closures: the TypeScript loader names
// every closure it can (a `name` property each), which would add memory to every connection.
import { once } from 'node:events';
import http, { type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SSEReplyInterface } from '@fastify/sse';
import type { Channel as BetterSseChannel, Session } from 'better-sse';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type * as SseGuard from '../src/index';
import { PAYLOAD } from './protocol';

// sse-guard as users get it (dist/cjs, copied here by run.ts at the start of a run), typed from
// the sources it is built from. A path in a variable, so that typechecking needs no build.
const BUILT_PACKAGE = './results/sse-guard/index.js';

const ROUTES = ['/throughput', '/first', '/subscribe'];
// Scenarios B and C open hundreds of connections at once: room for them in the accept queue.
const BACKLOG = 8192;

/** One open event stream, whatever library is behind it. */
interface Stream {
  /** Writes one event; `true`, or a promise to await before the next write (backpressure). */
  write(data: string): true | PromiseLike<unknown>;
  end(): void;
  /** Joins the broadcast. */
  subscribe(): void;
}

export interface RunningPeer {
  port: number;
  /** Sends one event to every client of `/subscribe`; a promise when the library settles it later. */
  broadcast(data: string): unknown;
  subscribers(): number;
  /** Ends every subscriber's response as the library does at shutdown; settles once all finished (`--scale` peers only). */
  shutdown?(): Promise<unknown>;
}

/**
 * `/throughput?events=N`: N events as fast as backpressure allows, then the end of the response.
 * `/first`: one event at once. `/subscribe`: the stream joins the broadcast and stays idle.
 */
function serve(url: string, stream: Stream): void {
  if (url.startsWith('/throughput')) {
    void pump(Number(new URL(url, 'http://bench').searchParams.get('events')), stream);
  } else if (url.startsWith('/first')) {
    void stream.write(PAYLOAD);
  } else {
    stream.subscribe();
  }
}

async function pump(events: number, stream: Stream): Promise<void> {
  for (let i = 0; i < events; i++) {
    const wait = stream.write(PAYLOAD);
    if (wait !== true) await wait;
  }
  stream.end();
}

async function listen(server: Server): Promise<number> {
  server.listen({ host: '127.0.0.1', port: 0, backlog: BACKLOG });
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function express(): Promise<typeof import('express')> {
  return (await import('express')).default;
}

/** The practical limit: `data: ...\n\n` written by hand, and a broadcast that loops over the responses. */
class ByHand implements Stream {
  constructor(
    private readonly res: ServerResponse,
    private readonly subscribed: Set<ServerResponse>,
  ) {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    res.flushHeaders();
  }

  write(data: string): true | Promise<unknown> {
    return this.res.write(`data: ${data}\n\n`) || once(this.res, 'drain');
  }

  end(): void {
    this.res.end();
  }

  subscribe(): void {
    this.subscribed.add(this.res);
    this.res.on('close', () => this.subscribed.delete(this.res));
  }

  static async start(onExpress: boolean): Promise<RunningPeer> {
    const subscribed = new Set<ServerResponse>();
    const handler = (req: IncomingMessage, res: ServerResponse): void => serve(req.url ?? '/', new ByHand(res, subscribed));
    let listener: RequestListener = handler;
    if (onExpress) {
      const app = (await express())();
      app.get(ROUTES, handler);
      listener = app;
    }
    return {
      port: await listen(http.createServer(listener)),
      broadcast(data) {
        const frame = `data: ${data}\n\n`;
        for (const res of subscribed) res.write(frame);
      },
      subscribers: () => subscribed.size,
      // As sse-guard's shutdown() does: end every response and wait for its 'close'.
      shutdown: () =>
        Promise.all(
          [...subscribed].map(
            (res) =>
              new Promise((resolve) => {
                res.once('close', resolve);
                res.end();
              }),
          ),
        ),
    };
  }
}

/** better-sse on node:http; its Channel broadcasts. It has no backpressure of its own: Node's is used. */
class BetterSse implements Stream {
  constructor(
    private readonly session: Session,
    private readonly res: ServerResponse,
    private readonly channel: BetterSseChannel,
  ) {}

  write(data: string): true | Promise<unknown> {
    this.session.push(data);
    return !this.res.writableNeedDrain || once(this.res, 'drain');
  }

  end(): void {
    this.res.end();
  }

  subscribe(): void {
    this.channel.register(this.session);
  }

  static async start(): Promise<RunningPeer> {
    const { createChannel, createSession } = await import('better-sse');
    const channel = createChannel();
    const server = http.createServer(async (req, res) => serve(req.url ?? '/', new BetterSse(await createSession(req, res), res, channel)));
    return {
      port: await listen(server),
      broadcast: (data) => channel.broadcast(data),
      subscribers: () => channel.sessionCount,
    };
  }
}

/** @fastify/sse on Fastify 5. It has no broadcast of its own: a loop over the replies' `sse.send()`. */
class FastifySse implements Stream {
  constructor(
    private readonly sse: SSEReplyInterface,
    private readonly subscribed: Set<SSEReplyInterface>,
  ) {}

  write(data: string): Promise<void> {
    return this.sse.send(data);
  }

  end(): void {
    this.sse.close();
  }

  subscribe(): void {
    this.subscribed.add(this.sse);
    this.sse.onClose(() => this.subscribed.delete(this.sse));
  }

  static async start(): Promise<RunningPeer> {
    const { default: Fastify } = await import('fastify');
    const { default: fastifySse } = await import('@fastify/sse');
    const subscribed = new Set<SSEReplyInterface>();
    const app = Fastify({ logger: false });
    await app.register(fastifySse);
    const handler = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
      reply.sse.keepAlive();
      reply.sse.sendHeaders();
      // sendHeaders() only queues the head until the first event: an idle subscriber would see no response.
      reply.raw.flushHeaders();
      serve(req.url, new FastifySse(reply.sse, subscribed));
    };
    for (const route of ROUTES) app.get(route, { sse: true }, handler);
    await app.ready();
    return {
      port: await listen(app.server),
      broadcast(data) {
        for (const sse of subscribed) sse.send(data).catch(() => undefined);
      },
      subscribers: () => subscribed.size,
    };
  }
}

/** sse-guard in its middleware form, as its documentation shows it; its Channel broadcasts. */
class Guard implements Stream {
  constructor(
    private readonly stream: SseGuard.SseStream,
    private readonly channel: SseGuard.Channel,
  ) {}

  write(data: string): true | Promise<void> {
    return this.stream.send(data) || this.stream.ready();
  }

  end(): void {
    this.stream.close();
  }

  subscribe(): void {
    this.channel.subscribe(this.stream);
  }

  /** On node:http alone, on Express, or on Express behind `compression()` (which it bypasses). */
  static async start(host: 'node:http' | 'express' | 'express+compression'): Promise<RunningPeer> {
    const guard = (await import(BUILT_PACKAGE)) as typeof SseGuard;
    const channel = new guard.Channel();
    const middleware = guard.sse();
    const handler = (req: IncomingMessage, res: ServerResponse): void => serve(req.url ?? '/', new Guard((res as ServerResponse & { sse: SseGuard.SseStream }).sse, channel));
    let listener: RequestListener;
    if (host === 'node:http') {
      listener = (req, res) => middleware(req, res, () => handler(req, res));
    } else {
      const app = (await express())();
      if (host === 'express+compression') app.use((await import('compression')).default());
      app.get(ROUTES, middleware, handler);
      listener = app;
    }
    return {
      port: await listen(http.createServer(listener)),
      broadcast: (data) => channel.publish({ data }),
      subscribers: () => channel.size,
      shutdown: () => guard.shutdown(),
    };
  }
}

/** Peers in table order; the first is the baseline every ratio divides by. */
export const peers = {
  'node:http by hand': () => ByHand.start(false),
  'better-sse': () => BetterSse.start(),
  '@fastify/sse': () => FastifySse.start(),
  'sse-guard': () => Guard.start('node:http'),
  'Express 5 by hand': () => ByHand.start(true),
  'sse-guard on Express': () => Guard.start('express'),
  'sse-guard on Express + compression()': () => Guard.start('express+compression'),
} satisfies Record<string, () => Promise<RunningPeer>>;

export type PeerName = keyof typeof peers;
export const BASELINE: PeerName = 'node:http by hand';
