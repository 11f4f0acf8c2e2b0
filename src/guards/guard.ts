// guard(): every event stream of the app, whoever writes it, gets what sse() gives its own streams.
// One middleware; the decision for a response is made when its Content-Type becomes
// text/event-stream (see watch.ts), and every other response is left as it was.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { contentEncoding, disarmTimeoutMiddleware, findTimeoutMiddleware, hasCompressionLayer } from './detect.js';
import { GuardedStream } from './guarded.js';
import { resolveOptions } from './options.js';
import type { SseMiddleware } from './sse.js';
import { watchHeaders } from './watch.js';
import type { SseLogger, SseOptions } from '../core/types.js';

/** guard()'s options: those of sse() that apply to a stream someone else writes, with the same meanings. */
export type GuardOptions = Pick<SseOptions, 'compression' | 'heartbeat' | 'maxBufferedBytes' | 'logger'>;

// Hop-by-hop headers: HTTP/2 forbids them, and Node's HTTP/2 layer throws on Keep-Alive and
// Transfer-Encoding when the head is written (RFC 9113 § 8.2.2).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade']);

function urlOf(req: IncomingMessage): string | undefined {
  return (req as { originalUrl?: string }).originalUrl ?? req.url;
}

/** Merges `no-transform` into a Cache-Control value, keeping the producer's own directives. */
export function withNoTransform(value: string | number | readonly string[]): string {
  const text = Array.isArray(value) ? value.join(', ') : String(value);
  if (text.split(',').some((directive) => directive.trim().toLowerCase() === 'no-transform')) return text;
  return text.trim() === '' ? 'no-transform' : `${text}, no-transform`;
}

/** Cancels request-timeout middleware and the socket idle timer for this response, and says so. */
function disarmTimeouts(req: IncomingMessage, res: ServerResponse, logger: SseLogger | undefined): void {
  const found = findTimeoutMiddleware(req, res);
  if (found.length > 0) {
    disarmTimeoutMiddleware(req, found);
    logger?.('timeout-disarmed', { url: urlOf(req), middleware: found });
  }
  if (req.httpVersionMajor !== 1) return;
  const socket = req.socket;
  if (socket.timeout !== undefined && socket.timeout > 0) {
    logger?.('socket-timeout-disarmed', { url: urlOf(req), timeout: socket.timeout });
    socket.setTimeout(0);
  }
}

/**
 * Middleware that makes every event stream of the app safe, however it is written: mount it once,
 * before the routes (before or after compression(), after any request-timeout middleware).
 */
export function guard(options?: GuardOptions): SseMiddleware {
  // Validated as sse()'s are; highWaterMark has no meaning here (guard() never paces the producer).
  const { compression, heartbeat, maxBufferedBytes, logger } = resolveOptions({ ...options, highWaterMark: 0 });
  const settings = { heartbeat, maxBufferedBytes, logger };
  const bypass = compression === 'bypass';

  return function guardEventStreams(req, res, next) {
    // EventSource always asks for text/event-stream: disarm at once, so that a producer whose setup
    // is slower than the timeout still gets to answer (the timeout middleware must be mounted first).
    const accept = req.headers.accept;
    let disarmed = false;
    if (accept !== undefined && accept.includes('text/event-stream')) {
      disarmTimeouts(req, res, logger);
      disarmed = true;
    }
    const http2 = req.httpVersionMajor === 2;
    let stream: GuardedStream | undefined;
    let encodingBefore: string | undefined;
    watchHeaders(res, {
      onEventStream() {
        stream = new GuardedStream(req, res, settings);
        if (bypass) {
          const cacheControl = res.getHeader('cache-control');
          res.setHeader('Cache-Control', cacheControl === undefined ? 'no-transform' : withNoTransform(cacheControl));
        }
        if (!disarmed) disarmTimeouts(req, res, logger);
        disarmed = true;
      },
      rewrite(name, value) {
        if (http2 && HOP_BY_HOP.has(name)) return undefined;
        if (bypass && name === 'cache-control') return withNoTransform(value as string);
        return value;
      },
      beforeHead() {
        if (!res.hasHeader('x-accel-buffering')) res.setHeader('X-Accel-Buffering', 'no');
        if (http2) for (const name of HOP_BY_HOP) res.removeHeader(name);
        encodingBefore = contentEncoding(res);
      },
      afterHead() {
        if (stream === undefined) return;
        const encoding = contentEncoding(res);
        // A compressor that engaged sets Content-Encoding inside its writeHead hook; one the producer
        // set itself (the AI SDK's docs suggest `Content-Encoding: none`) is not a compressor.
        const compressed = encoding !== undefined && encoding !== encodingBefore && hasCompressionLayer(res);
        if (hasCompressionLayer(res)) {
          if (compressed) logger?.('compression-flushed', { url: urlOf(req), encoding, requested: compression });
          else logger?.('compression-bypassed', { url: urlOf(req) });
        }
        stream.start(compressed);
        stream = undefined;
      },
    });
    next();
  };
}
