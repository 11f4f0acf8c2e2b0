// The middleware: refuse or disarm what would break the stream, send the headers, hand over the stream.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SseGuardError } from '../core/errors.js';
import { claimForSse } from './claim.js';
import { contentEncoding, disarmTimeoutMiddleware, findTimeoutMiddleware, disarmSocketTimeout, hasCompressionLayer, onOwnSocket } from './detect.js';
import { urlOf } from '../core/url.js';
import { keepsConnection, sendHead, streamHead } from './head.js';
import { resolveOptions } from './options.js';
import { probePassThrough } from './passthrough.js';
import { startProbe } from './probe.js';
import { counters, registry } from '../stream/registry.js';
import { serializeComment, serializeRetry } from '../stream/serialize.js';
import { closeWith, passThroughWrite, SseStream, writeFrame, type StreamSettings } from '../stream/stream.js';
import { isThenable } from '../core/thenable.js';
import type { AnyEvents, EventMap, SseOptions } from '../core/types.js';

/** The handler form's function: runs once headers are flushed. */
export type SseHandler<M extends EventMap, Req extends IncomingMessage> = (stream: SseStream<M>, req: Req) => unknown;

/** What sse() returns: an Express (or plain node:http) request handler. */
export type SseMiddleware<Req extends IncomingMessage = IncomingMessage> = (
  req: Req,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void;

/** Middleware form: sets `res.sse` and calls `next()`. */
export function sse(options?: SseOptions): SseMiddleware;
/** Handler form: runs `handler(stream, req)`; the stream closes when the client leaves, on `close()`, or when a returned promise settles. */
export function sse<M extends EventMap = AnyEvents, Req extends IncomingMessage = IncomingMessage>(
  handler: SseHandler<M, Req>,
  options?: SseOptions,
): SseMiddleware<Req>;
export function sse<M extends EventMap, Req extends IncomingMessage>(
  handlerOrOptions?: SseHandler<M, Req> | SseOptions,
  maybeOptions?: SseOptions,
): SseMiddleware<Req> {
  const handler = typeof handlerOrOptions === 'function' ? handlerOrOptions : undefined;
  const options = resolveOptions(handler === undefined ? (handlerOrOptions as SseOptions | undefined) : maybeOptions);
  const { logger } = options;
  const settings: StreamSettings = {
    highWaterMark: options.highWaterMark,
    maxBufferedBytes: options.maxBufferedBytes,
    heartbeat: options.heartbeat,
    serialize: options.serialize,
    logger,
  };
  // Written once per connection, before any event: padding for old proxies, then the retry hint, and
  // at least one line in any case: some proxies (nginx over HTTP/2, Caddy with `encode`) hold the
  // response head until the first body byte, which would hold the client's `open` until the first event.
  const preamble =
    (options.padding > 0 ? `:${' '.repeat(options.padding - 2)}\n` : '') +
    (options.retry === undefined ? '' : serializeRetry(options.retry)) ||
    serializeComment();
  const head = streamHead(options.compression === 'bypass' ? 'no-cache, no-transform' : 'no-cache', options.headers);

  return function sseGuard(req, res, next) {
    // 1. Too late for an event stream once a status and headers went out.
    if (res.headersSent) {
      counters.refusedHeadersSent++;
      logger?.('headers-sent', { url: urlOf(req) });
      next(new SseGuardError('ERR_SSE_HEADERS_SENT', `headers were already sent for ${urlOf(req)}; mount sse() before any middleware or handler that writes to the response.`));
      return;
    }
    if (registry.retryAfter !== undefined) {
      // Connection is hop-by-hop: HTTP/2 forbids it.
      const connection = req.httpVersionMajor === 1 ? { Connection: 'close' } : {};
      res.writeHead(503, { 'Retry-After': String(registry.retryAfter), 'Content-Type': 'text/plain; charset=utf-8', ...connection });
      res.end('Server is shutting down\n');
      return;
    }

    // 2. Request-timeout middleware would answer 503 or cut the socket mid-stream.
    const timeouts = findTimeoutMiddleware(req, res);
    if (timeouts.length > 0) {
      if (options.timeoutHandler === 'refuse') {
        counters.refusedTimeoutHandler++;
        logger?.('timeout-refused', { url: urlOf(req), middleware: timeouts });
        next(
          new SseGuardError(
            'ERR_SSE_TIMEOUT_HANDLER',
            `${timeouts.join(' and ')} is active on ${urlOf(req)} and would cut the event stream. ` +
              `Fix: mount the timeout middleware only on routes that are not event streams, or use sse({ timeoutHandler: 'disarm' }) to cancel it for this stream.`,
          ),
        );
        return;
      }
      disarmTimeoutMiddleware(req, res, timeouts);
      logger?.('timeout-disarmed', { url: urlOf(req), middleware: timeouts });
    }

    // 3 and 4. Headers, flushed now so that the client's `open` fires at once. In 'bypass' mode
    // `no-transform` makes compression pass the response through; it decides inside writeHead.
    const compressionLayer = hasCompressionLayer(res);
    // guard() leaves this response to sse().
    claimForSse(res);
    sendHead(res, req.httpVersionMajor !== 1 ? head.http2 : req.httpVersionMinor !== 0 && keepsConnection(res) ? head.http1 : head.closing);

    const encoding = contentEncoding(res);
    if (compressionLayer) {
      // A layer that ignored no-transform (or a user header that dropped it) still gets every event flushed.
      if (encoding === undefined) logger?.('compression-bypassed', { url: urlOf(req) });
      else logger?.('compression-flushed', { url: urlOf(req), encoding, requested: options.compression });
    }

    // 5. No idle timer on the socket, no delay for small writes.
    disarmSocketTimeout(req, res, logger);
    if (req.httpVersionMajor === 1) onOwnSocket(req, res, (socket) => socket.setNoDelay(true));

    if (req.method === 'HEAD') {
      res.end();
      return;
    }

    // 6. The preamble, then hand over the stream.
    const stream = new SseStream<M>(req, res, settings, encoding !== undefined);
    // Compression that passed the stream through: its first write tells whether the later ones may
    // go around compression's res.write wrapper (only if nothing else wraps it).
    if (compressionLayer && encoding === undefined && req.httpVersionMajor === 1) {
      stream[passThroughWrite] = probePassThrough(res, () => stream[writeFrame](preamble, false));
    } else {
      stream[writeFrame](preamble, false);
    }
    if (options.probe) startProbe(stream, req, options.heartbeat);
    if (handler === undefined) {
      (res as ServerResponse & { sse: SseStream }).sse = stream as unknown as SseStream;
      next();
      return;
    }
    // Headers are out: an error must not reach next(err), where Express would destroy the socket.
    // Closed before the logger hears of it.
    const fail = (error: unknown): void => {
      stream[closeWith]('error');
      logger?.('handler-error', { url: urlOf(req), error });
    };
    let result: unknown;
    try {
      result = handler(stream, req);
    } catch (error) {
      fail(error);
      return;
    }
    if (isThenable(result)) Promise.resolve(result).then(() => stream.close(), fail);
  };
}
