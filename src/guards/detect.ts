// Detects what sits upstream of the stream on this request: request-timeout middleware and compression.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { queuedBehind } from '../core/queued.js';
import type { SseLogger } from '../core/types.js';
import { urlOf } from '../core/url.js';

/** Request-timeout middleware that would cut a long-lived response. */
export type TimeoutMiddleware = 'connect-timeout' | 'express-timeout-handler';

type TimeoutRequest = IncomingMessage & { timedout?: unknown; clearTimeout?: unknown };

/** The marks request-timeout middleware left on a request so far: what tells one armed later from them. */
export interface TimeoutMarks {
  readonly clearTimeout: unknown;
  readonly timeoutListeners: number;
}

export function timeoutMarks(req: IncomingMessage, res: ServerResponse): TimeoutMarks {
  return { clearTimeout: (req as TimeoutRequest).clearTimeout, timeoutListeners: res.listenerCount('timeout') };
}

/** Finds request-timeout middleware armed on this request (after `since` was taken, when given), by the marks each one leaves. */
export function findTimeoutMiddleware(req: IncomingMessage, res: ServerResponse, since?: TimeoutMarks): TimeoutMiddleware[] {
  const found: TimeoutMiddleware[] = [];
  const r = req as TimeoutRequest;
  // connect-timeout: a boolean req.timedout and req.clearTimeout(), a new function on each request;
  // on expiry it calls next(503).
  if (typeof r.timedout === 'boolean' && typeof r.clearTimeout === 'function' && r.clearTimeout !== since?.clearTimeout) found.push('connect-timeout');
  // express-timeout-handler: an idle timer on the socket and a 'timeout' listener on the response,
  // which answers 503 or, after headers, destroys the socket when the response finishes.
  if (res.listenerCount('timeout') > (since?.timeoutListeners ?? 0)) found.push('express-timeout-handler');
  return found;
}

/** Cancels the timers of the middleware found; the socket's idle timer is cleared by the caller. */
export function disarmTimeoutMiddleware(req: IncomingMessage, res: ServerResponse, found: readonly TimeoutMiddleware[]): void {
  if (found.includes('connect-timeout')) (req as TimeoutRequest & { clearTimeout(): void }).clearTimeout();
  if (found.includes('express-timeout-handler')) onOwnSocket(req, res, (socket) => socket.setTimeout(0));
}

/**
 * Runs `change` on the response's connection once the response owns it: at once (always on HTTP/2,
 * whose streams are not queued), or, for one queued behind another (HTTP/1.1 pipelining), when its
 * turn comes. Until then the connection's idle timer and its settings are the response ahead's:
 * cleared now, a response ahead that hangs would never be cut.
 */
export function onOwnSocket(req: IncomingMessage, res: ServerResponse, change: (socket: Socket) => void): void {
  const socket = req.socket;
  if (req.httpVersionMajor === 1 && queuedBehind(res, socket)) res.once('socket', () => change(socket));
  else change(socket);
}

/**
 * A compression-like layer upstream installs `res.flush()`: Node 20 has no such method of its own
 * (the deprecated one was removed) and Express defines none.
 */
export function hasCompressionLayer(res: ServerResponse): res is ServerResponse & { flush(): void } {
  return typeof (res as { flush?: unknown }).flush === 'function';
}

/** The encoding the compression layer chose; it decides inside writeHead, so ask after headers are flushed. */
export function contentEncoding(res: ServerResponse): string | undefined {
  const value = res.getHeader('content-encoding');
  // Node sends an array as one list.
  const encoding = typeof value === 'string' ? value.toLowerCase() : Array.isArray(value) && value.length > 0 ? value.join(', ').toLowerCase() : undefined;
  return encoding === undefined || encoding === 'identity' ? undefined : encoding;
}

/** Clears the socket's idle timer (server.timeout, socket.setTimeout), which would cut a quiet stream, and says so. HTTP/1 only: an HTTP/2 stream shares its socket. */
export function disarmSocketTimeout(req: IncomingMessage, res: ServerResponse, logger: SseLogger | undefined): void {
  if (req.httpVersionMajor !== 1) return;
  onOwnSocket(req, res, (socket) => {
    const timeout = socket.timeout;
    if (timeout === undefined || timeout <= 0) return;
    logger?.('socket-timeout-disarmed', { url: urlOf(req), timeout });
    socket.setTimeout(0);
    // The timer is the connection's: back once the stream ended, for a response queued behind it or
    // a later request, where Node arms no keep-alive timer of its own (its 'finish' listener runs first).
    res.once('finish', () => {
      if (!socket.destroyed && socket.timeout === 0) socket.setTimeout(timeout);
    });
  });
}
