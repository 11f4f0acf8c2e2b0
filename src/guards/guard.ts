// guard(): every event stream of the app, whoever writes it, gets what sse() gives its own streams.
// One middleware, which only marks the response; the decision for a response is made when its
// Content-Type becomes text/event-stream (see watch.ts), and every other response is left as it was.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeader, ServerResponse } from 'node:http';
import { contentEncoding, disarmTimeoutMiddleware, findTimeoutMiddleware, disarmSocketTimeout, hasCompressionLayer, timeoutMarks, type TimeoutMarks } from './detect.js';
import { urlOf } from '../core/url.js';
import { GuardedStream, type GuardedSettings } from './guarded.js';
import { markResponse, type GuardMark, type HeaderHooks } from './mark.js';
import { resolveOptions } from './options.js';
import type { SseMiddleware } from './sse.js';
import { installWatch } from './watch.js';
import { isEventStreamType } from '../core/media-type.js';
import type { SseLogger, SseOptions } from '../core/types.js';

/** guard()'s options: those of sse() that apply to a stream someone else writes, with the same meanings. */
export type GuardOptions = Pick<SseOptions, 'compression' | 'heartbeat' | 'maxBufferedBytes' | 'logger'>;

// Hop-by-hop headers: HTTP/2 forbids them, and Node's HTTP/2 layer throws on Keep-Alive and
// Transfer-Encoding when the head is written (RFC 9113 § 8.2.2).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade']);

const cacheControlText = (value: OutgoingHttpHeader): string => (Array.isArray(value) ? value.join(', ') : String(value));
const isNoTransform = (directive: string): boolean => directive.trim().toLowerCase() === 'no-transform';
const hasNoTransform = (text: string): boolean => text.split(',').some(isNoTransform);

/** Merges `no-transform` into a Cache-Control value, keeping the producer's own directives. */
export function withNoTransform(value: OutgoingHttpHeader): string {
  const text = cacheControlText(value);
  if (hasNoTransform(text)) return text;
  return text.trim() === '' ? 'no-transform' : `${text}, no-transform`;
}

/** Takes `no-transform` back out of a Cache-Control value, keeping the rest as it was written; undefined when nothing is left. */
function withoutNoTransform(value: OutgoingHttpHeader): string | undefined {
  const text = cacheControlText(value)
    .split(',')
    .filter((directive) => !isNoTransform(directive))
    .join(',')
    .trimStart();
  return text.trim() === '' ? undefined : text;
}

/** Cancels request-timeout middleware (those armed after `since`, when given) and the socket idle timer for this response, and says so. */
function disarmTimeouts(req: IncomingMessage, res: ServerResponse, logger: SseLogger | undefined, since?: TimeoutMarks): void {
  const found = findTimeoutMiddleware(req, res, since);
  if (found.length > 0) {
    disarmTimeoutMiddleware(req, res, found);
    logger?.('timeout-disarmed', { url: urlOf(req), middleware: found });
  }
  disarmSocketTimeout(req, res, logger);
}

/** EventSource always asks for text/event-stream. */
function asksForEventStream(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept;
  return accept !== undefined && accept.includes('text/event-stream');
}

/** One guard(): its settings, and the hooks it gives each of its responses that becomes an event stream. */
class GuardConfig implements GuardMark {
  constructor(
    readonly bypass: boolean,
    readonly compression: 'bypass' | 'flush',
    readonly logger: SseLogger | undefined,
    readonly settings: GuardedSettings,
  ) {}

  hooksFor(req: IncomingMessage, res: ServerResponse): HeaderHooks {
    return new ResponseGuard(req, res, this, undefined);
  }
}

/**
 * The mark of a request that asked for an event stream, whose timeouts the middleware disarmed on
 * its way in: once the type is set, only timeout middleware armed since (mounted after guard()) is
 * left to disarm, and only that is logged.
 */
class DisarmedOnEntry implements GuardMark {
  since: TimeoutMarks | undefined;

  constructor(readonly config: GuardConfig) {}

  disarm(req: IncomingMessage, res: ServerResponse): void {
    disarmTimeouts(req, res, this.config.logger);
    this.since = timeoutMarks(req, res);
  }

  hooksFor(req: IncomingMessage, res: ServerResponse): HeaderHooks {
    return new ResponseGuard(req, res, this.config, this.since);
  }
}

/** One response's guard: what happens when its Content-Type turns out to be text/event-stream. */
class ResponseGuard implements HeaderHooks {
  #stream: GuardedStream | undefined;
  // The Content-Encoding the producer set, as last seen before any layer's writeHead hook ran.
  #producerEncoding: string | undefined;
  // Whether headStarts() came: not when the type came in with the head, through another layer's writeHead.
  #headStarted = false;
  // What the guard put in the head, taken out again if the type changes before the head goes out:
  // whether a Cache-Control the producer set lacked the `no-transform` it now has (the producer may
  // read the merged value and write it back, appending to it), and whether X-Accel-Buffering is the guard's.
  #addedNoTransform = false;
  #ownAccel = false;
  // The type is no longer text/event-stream: the response is left to its producer, as if unguarded.
  #released = false;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly config: GuardConfig,
    // The timeout middleware's marks when the middleware disarmed it, if the request asked for an event stream.
    readonly disarmedOnEntry: TimeoutMarks | undefined,
  ) {}

  onEventStream(): void {
    const { req, res, config } = this;
    this.#stream = new GuardedStream(req, res, config.settings);
    if (config.bypass) {
      const cacheControl = res.getHeader('cache-control');
      res.setHeader('Cache-Control', cacheControl === undefined ? 'no-transform' : withNoTransform(cacheControl));
      // After: setHeader goes through rewrite() now, which takes any value as the producer's.
      this.#addedNoTransform = cacheControl === undefined || !hasNoTransform(cacheControlText(cacheControl));
    }
    // Now rather than as the head goes out: a layer may write the head with a writeHead of Node's
    // it saved before guard() wrapped it. A producer's own X-Accel-Buffering set later replaces it.
    if (!res.hasHeader('x-accel-buffering')) {
      res.setHeader('X-Accel-Buffering', 'no');
      this.#ownAccel = true;
    }
    if (req.httpVersionMajor === 2) for (const name of HOP_BY_HOP) res.removeHeader(name);
    disarmTimeouts(req, res, config.logger, this.disarmedOnEntry);
    this.#producerEncoding = contentEncoding(res);
  }

  headStarts(): void {
    this.#headStarted = true;
    if (!isEventStreamType(this.res.getHeader('content-type'))) this.#release();
    else this.#producerEncoding = contentEncoding(this.res);
  }

  rewrite(name: string, value: OutgoingHttpHeader): OutgoingHttpHeader | undefined {
    if (this.req.httpVersionMajor === 2 && HOP_BY_HOP.has(name)) return undefined;
    if (this.#released) return value;
    if (name === 'x-accel-buffering') this.#ownAccel = false;
    if (this.config.bypass && name === 'cache-control') {
      // Once the guard added it, a no-transform in a later value may be the guard's read back (Express's
      // res.append reads the value and writes it back): it cannot be told from one of the producer's own.
      if (!hasNoTransform(cacheControlText(value))) this.#addedNoTransform = true;
      return withNoTransform(value);
    }
    return value;
  }

  afterHead(): void {
    const stream = this.#stream;
    if (stream === undefined) return;
    const { req, res, config } = this;
    if (!isEventStreamType(res.getHeader('content-type'))) return this.#release();
    this.#stream = undefined;
    const encoding = contentEncoding(res);
    // A compressor that engaged sets Content-Encoding inside its writeHead hook; one the producer set
    // itself is not a compressor. `none` never is: graphql-sse and the AI SDK's docs set it, and when
    // the type came in writeHead's headers through another layer's hook, it is seen only after.
    const layer = hasCompressionLayer(res);
    const compressed = layer && encoding !== undefined && encoding !== 'none' && encoding !== this.#producerEncoding;
    if (layer) {
      if (compressed) config.logger?.('compression-flushed', { url: urlOf(req), encoding, requested: config.compression });
      else config.logger?.('compression-bypassed', { url: urlOf(req) });
    }
    // Any other encoding was applied where the guard's writes cannot reach: the producer's own
    // (a relayed gzip upstream), or a compressor mounted on the route after the type was set.
    // When the type came in with the head through another layer's writeHead (a compressor's hook
    // folding its headers in), the producer's Content-Encoding was set there too, and cannot be told
    // from the compressor's by when it came.
    stream.start(compressed, !compressed && encoding !== undefined && encoding !== 'none', compressed && !this.#headStarted);
  }

  /**
   * The type changed again before the head went out (an error page after all, say): the response is
   * not an event stream. What the guard added to the head is taken out while the head can still
   * change, and its writes are no longer watched; its timeouts stay disarmed.
   */
  #release(): void {
    this.#stream?.release();
    this.#stream = undefined;
    if (this.#released) return;
    this.#released = true;
    const res = this.res;
    if (res.headersSent) return;
    if (this.#ownAccel && res.getHeader('x-accel-buffering') === 'no') res.removeHeader('x-accel-buffering');
    const cacheControl = res.getHeader('cache-control');
    if (this.config.bypass && this.#addedNoTransform && cacheControl !== undefined) {
      const rest = withoutNoTransform(cacheControl);
      if (rest === undefined) res.removeHeader('cache-control');
      else res.setHeader('Cache-Control', rest);
    }
  }
}

/**
 * Middleware that makes every event stream of the app safe, however it is written: mount it once,
 * before the routes (before or after compression(), after any request-timeout middleware).
 */
export function guard(options?: GuardOptions): SseMiddleware {
  // Its own options validated as sse()'s are, the others (sse()'s alone) ignored, as sse() ignores
  // what it does not know; highWaterMark has no meaning here (guard() never paces the producer).
  if (options !== undefined && (options === null || typeof options !== 'object')) resolveOptions(options);
  const own: GuardOptions = { compression: options?.compression, heartbeat: options?.heartbeat, maxBufferedBytes: options?.maxBufferedBytes, logger: options?.logger };
  const { compression, heartbeat, maxBufferedBytes, logger } = resolveOptions({ ...own, highWaterMark: 0 });
  const config = new GuardConfig(compression === 'bypass', compression, logger, { heartbeat, maxBufferedBytes, logger });
  installWatch();

  return function guardEventStreams(req, res, next) {
    // A second guard() on the same request (app-wide and on a router) leaves it to the first.
    // A request that asks for an event stream is disarmed at once, so that a producer whose setup is
    // slower than the timeout still gets to answer (the timeout middleware must be mounted first).
    if (!asksForEventStream(req.headers)) markResponse(res, config);
    else {
      const entry = new DisarmedOnEntry(config);
      if (markResponse(res, entry)) entry.disarm(req, res);
    }
    next();
  };
}
