// The demo: an ordinary Express app, with compression and a request timeout mounted app-wide the way
// real apps have them, serving a clock and a chat through sse-guard next to a naive SSE route.
import { AsyncLocalStorage } from 'node:async_hooks';
import path from 'node:path';
import { setTimeout as wait } from 'node:timers/promises';
import compression from 'compression';
import timeout from 'connect-timeout';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import {
  Channel,
  guard,
  sse,
  SseGuardError,
  type ChannelAdapter,
  type GuardReason,
  type SseLogger,
  type SseOptions,
  type SseStream,
} from '../src/index.js';
import { MockModel } from './model.js';

export interface DemoOptions {
  /** Runs the chat channel on Redis Streams (sse-guard/redis) instead of in this process. */
  redisUrl?: string;
  /** The naive-vs-guard comparison: how many ticks, how far apart; both routes end after the last. Default 8 every 500 ms. */
  compare?: { events: number; intervalMs: number };
  /** Told each guard decision as one line of text. Default: silent. */
  log?: (line: string) => void;
  /** ms between the mock model's tokens on /answer. Default 80. */
  tokenMs?: number;
}

export interface DemoApp {
  app: express.Express;
  /** Closes every chat stream and the chat channel's adapter. */
  close(): Promise<void>;
}

/** One guard decision, as the page shows it. */
export interface Decision {
  reason: GuardReason;
  details: Record<string, unknown>;
}

/** The first event of every guarded stream: what the guard did for this very request. */
export interface GuardInfo {
  route: string;
  decisions: Decision[];
  /** The Last-Event-ID this connection resumed after, if any. */
  resumedAfter: string | null;
}

export interface ChatMessage {
  author: string;
  text: string;
  sentAt: number;
}

const MAX_TEXT = 500;
const MAX_AUTHOR = 40;

// sse()'s logger is given once per route, not per request: a store entered for each guarded request
// ties every decision to the request it was made for.
const decisionsOf = new AsyncLocalStorage<Decision[]>();

const recordDecisions: RequestHandler = (_req, _res, next) => decisionsOf.run([], next);

// EventSource cannot set headers, so a reloaded page says where it left off in the query string;
// the header still wins, because EventSource sends it on its own reconnects with the newer id.
const resumeFromQuery: RequestHandler = (req, _res, next) => {
  const fromQuery = req.query.lastEventId;
  if (req.headers['last-event-id'] === undefined && typeof fromQuery === 'string' && fromQuery !== '') {
    req.headers['last-event-id'] = fromQuery;
  }
  next();
};

// An Error in the details would serialize as {}.
const errorsAsText = (_key: string, value: unknown): unknown => (value instanceof Error ? value.message : value);

function guardInfo(route: string, stream: SseStream): GuardInfo {
  return { route, decisions: decisionsOf.getStore() ?? [], resumedAfter: stream.lastEventId ?? null };
}

/** A chat message from a request body, or why it is not one. */
function chatMessage(body: unknown): ChatMessage | string {
  const { author, text } = (body ?? {}) as Record<string, unknown>;
  if (typeof text !== 'string' || text.trim() === '' || text.length > MAX_TEXT) return `text must be 1 to ${MAX_TEXT} characters`;
  if (author !== undefined && (typeof author !== 'string' || author.length > MAX_AUTHOR)) return `author must be at most ${MAX_AUTHOR} characters`;
  return { author: author?.trim() || 'anonymous', text: text.trim(), sentAt: Date.now() };
}

async function chatAdapter(redisUrl: string | undefined): Promise<ChannelAdapter | undefined> {
  if (redisUrl === undefined) return undefined;
  // Loaded only when asked for, so that the default demo never needs the Redis client.
  const { redisAdapter } = await import('../src/fanout/redis.js');
  return redisAdapter(redisUrl);
}

export async function createDemoApp(options: DemoOptions = {}): Promise<DemoApp> {
  const { events, intervalMs } = options.compare ?? { events: 8, intervalMs: 500 };
  const log = options.log ?? (() => {});

  const logger: SseLogger = (reason, details) => {
    const plain = JSON.parse(JSON.stringify(details, errorsAsText)) as Record<string, unknown>;
    decisionsOf.getStore()?.push({ reason, details: plain });
    log(`sse-guard: ${reason} ${JSON.stringify(plain)}`);
  };
  const streamOptions: SseOptions = {
    // connect-timeout runs on every route of this app; the default policy would refuse the stream
    // (GET /stream/default-policy shows the refusal).
    timeoutHandler: 'disarm',
    retry: 1000,
    logger,
  };

  const chat = new Channel<{ chat: ChatMessage }>({ history: 200, adapter: await chatAdapter(options.redisUrl) });
  // The Channel does not hand out its subscribers; /admin/drop needs them.
  const chatStreams = new Set<SseStream>();

  // Both sides of the comparison run this schedule, so that only the transport differs. Each tick
  // carries its send time; resolves to false when the client left before the end.
  async function runTicks(signal: AbortSignal, emit: (event: string, data: object) => void): Promise<boolean> {
    for (let n = 1; n <= events; n++) {
      if (n > 1 && !(await wait(intervalMs, true, { signal }).catch(() => false))) return false;
      emit('tick', { n, of: events, sentAt: Date.now() });
    }
    emit('done', { sentAt: Date.now() });
    return true;
  }

  const app = express();
  app.disable('x-powered-by');
  app.use(compression());
  app.use(timeout('10s'));
  app.use(express.static(path.join(__dirname, 'public')));

  // Per tab, one stream carries both the clock and the chat: browsers allow six HTTP/1.1
  // connections per host, and every open stream holds one.
  app.get('/stream', resumeFromQuery, recordDecisions, sse(streamOptions), (_req, res) => {
    const stream = res.sse;
    stream.send({ event: 'guard', data: guardInfo('/stream', stream) });
    // Clock ticks carry no id, so the client's Last-Event-ID stays on the last chat message.
    const tick = (): void => void stream.send({ event: 'clock', data: { sentAt: Date.now() } });
    tick();
    const clock = setInterval(tick, 1000);
    chatStreams.add(stream);
    stream.on('close', () => {
      clearInterval(clock);
      chatStreams.delete(stream);
    });
    chat.subscribe(stream);
  });

  app.post('/chat', express.json({ limit: '4kb' }), async (req, res) => {
    const message = chatMessage(req.body);
    if (typeof message === 'string') {
      res.status(400).json({ error: message });
      return;
    }
    const id = await chat.publish({ event: 'chat', data: message });
    res.status(201).json({ id });
  });

  // Demo and test affordance, not for a real app: cuts every chat stream from the server, as a deploy
  // or a flaky network would. Browsers reconnect on their own and catch up with Last-Event-ID;
  // `retry` (ms) holds them off for a while first.
  app.post('/admin/drop', express.json(), (req, res) => {
    const retry: unknown = (req.body as { retry?: unknown } | undefined)?.retry;
    if (retry !== undefined && !(Number.isSafeInteger(retry) && (retry as number) >= 0 && (retry as number) <= 60_000)) {
      res.status(400).json({ error: 'retry must be an integer from 0 to 60000 (ms)' });
      return;
    }
    const dropped = [...chatStreams];
    for (const stream of dropped) {
      if (retry !== undefined) stream.retry(retry as number);
      stream.close();
    }
    res.json({ dropped: dropped.length });
  });

  // What most SSE tutorials show. Correct on its own, but compression() above holds every event
  // until the response ends: the client sees nothing, then everything at once.
  app.get('/compare/naive', (_req, res) => {
    res.setHeader('Content-Type', 'text/event-stream');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Connection', 'keep-alive');
    res.flushHeaders();
    const left = new AbortController();
    res.on('close', () => left.abort());
    void runTicks(left.signal, (event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)).then((finished) => {
      if (finished) res.end();
    });
  });

  app.get(
    '/compare/guarded',
    recordDecisions,
    sse(async (stream) => {
      stream.send({ event: 'guard', data: guardInfo('/compare/guarded', stream) });
      await runTicks(stream.signal, (event, data) => stream.send({ event, data }));
    }, streamOptions),
  );

  // A model's answer through pipe(): the stream's signal goes to the model call, as with a real SDK,
  // and the generation ends with the client's connection (Stop on the page closes it).
  const model = new MockModel(options.tokenMs);
  app.get(
    '/answer',
    recordDecisions,
    sse(async (stream) => {
      const { generation, tokens } = model.generate(stream.signal);
      stream.on('close', () => (generation.generatedAtClose = generation.generated));
      stream.send({ event: 'answer', data: { id: generation.id, total: generation.total } });
      await stream.pipe(tokens, { map: (token) => ({ event: 'token', data: token }) });
      stream.send({ event: 'answer-done', data: { id: generation.id } });
    }, streamOptions),
  );

  app.get('/answer/stats/:id', (req, res) => {
    const stats = model.stats(req.params.id);
    if (stats === undefined) res.status(404).json({ error: 'no such answer' });
    else res.json(stats);
  });

  // A stream this app does not write: a mock AI token stream, written the way the AI SDK 6 and most
  // libraries write theirs (writeHead with a headers object, then one res.write per token, no flush).
  // Served twice behind the app's compression(): as it is, and with guard() in front. guard() is
  // mounted on the one route here so that the naive lane above stays naive; an app mounts it once,
  // app-wide (app.use(guard())).
  const TOKENS = ['Once ', 'upon ', 'a ', 'time, ', 'a ', 'stream ', 'arrived ', 'on time.'];
  const tokenStream: RequestHandler = (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    const left = new AbortController();
    res.on('close', () => left.abort());
    let token = 0;
    void runTicks(left.signal, (event, data) => {
      const payload = event === 'tick' ? { ...data, token: TOKENS[token++ % TOKENS.length] } : data;
      res.write(`event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`);
    }).then((finished) => {
      if (finished) res.end();
    });
  };
  app.get('/third-party/plain', tokenStream);
  app.get('/third-party/guarded', guard({ logger }), tokenStream);

  // sse() with its defaults, on this app: refused, because connect-timeout is armed on every request.
  app.get('/stream/default-policy', recordDecisions, sse((stream) => stream.close(), { logger }));

  const onError: ErrorRequestHandler = (err: unknown, _req, res, next) => {
    // A stream is already under way: only Express's own handler (which cuts the socket) is left.
    if (res.headersSent) {
      next(err);
      return;
    }
    const e = err as { status?: unknown; expose?: unknown; code?: unknown; message?: unknown };
    const status = typeof e.status === 'number' ? e.status : 500;
    const shown = err instanceof SseGuardError || e.expose === true;
    if (!shown) log(`error: ${String(err)}`);
    res.status(status).json({
      error: shown ? String(e.message) : 'Internal Server Error',
      code: typeof e.code === 'string' ? e.code : undefined,
      decisions: decisionsOf.getStore(),
    });
  };
  app.use(onError);

  return { app, close: () => chat.close() };
}
