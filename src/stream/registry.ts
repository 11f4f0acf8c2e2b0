// Process-wide bookkeeping behind stats() and shutdown().
import { serializeEvent, serializeRetry } from './serialize.js';
import { SseGuardError } from '../core/errors.js';
import { MAX_TIMER_MS } from '../core/limits.js';
import type { SseEvent } from '../core/types.js';
import { describe } from '../core/describe.js';

/** Internal: a stream's part in shutdown(); registered (Symbol.for), as the registry is, so that another copy of the package can call it. */
export const drainStream = Symbol.for('sse-guard.drain.v2');

/** A response that shutdown() waits for: it closes, or is cut once the grace period is over. */
export interface Closing {
  readonly closed: boolean;
  destroy(): void;
  on(event: 'close', listener: () => void): unknown;
}

/** What the registry needs of an open stream. */
export interface Registered {
  readonly bufferedBytes: number;
  /** Writes `farewell` and ends the response; returns the response while it has yet to close. */
  [drainStream](farewell: string): Closing | undefined;
}

interface Registry {
  open: Set<Registered>;
  counters: { eventsSent: number; slowConsumerDrops: number; refusedTimeoutHandler: number; refusedHeadersSent: number };
  /** Seconds for `Retry-After` once shutdown() was called; undefined while serving. */
  retryAfter: number | undefined;
  /** The completion of the first shutdown() call, which every later call returns. */
  shutdown?: Promise<void>;
}

// One registry per process, even when both the ESM and the CommonJS build are loaded, or two copies
// of the package: shutdown() must reach every stream. The version moves with the Registered contract.
const scope = globalThis as { [key: symbol]: Registry | undefined };
const KEY = Symbol.for('sse-guard.registry.v2');
export const registry: Registry = (scope[KEY] ??= {
  open: new Set(),
  counters: { eventsSent: 0, slowConsumerDrops: 0, refusedTimeoutHandler: 0, refusedHeadersSent: 0 },
  retryAfter: undefined,
});
const { open, counters } = registry;
export { counters, open };

export interface Stats {
  open: number;
  bufferedBytes: number;
  eventsSent: number;
  slowConsumerDrops: number;
  refused: { timeoutHandler: number; headersSent: number };
}

/** Live counters for every stream of this process. */
export function stats(): Stats {
  let bufferedBytes = 0;
  for (const stream of open) bufferedBytes += stream.bufferedBytes;
  return {
    open: open.size,
    bufferedBytes,
    eventsSent: counters.eventsSent,
    slowConsumerDrops: counters.slowConsumerDrops,
    refused: { timeoutHandler: counters.refusedTimeoutHandler, headersSent: counters.refusedHeadersSent },
  };
}

export interface ShutdownOptions {
  /** A last event sent to every open stream before it closes. */
  event?: SseEvent;
  /** A `retry:` hint (ms) sent before closing; also sets `Retry-After` on refused new requests. */
  retry?: number;
  /** ms to wait for each response to finish before its socket is cut. Default `5000`. */
  graceMs?: number;
}

/**
 * Closes every open stream (reason `'server'`) after the optional last event and retry hint,
 * so that `server.close()` can finish; new sse() requests get 503 with `Retry-After` from now on.
 * Call it from a SIGTERM handler.
 */
export function shutdown(options: ShutdownOptions = {}): Promise<void> {
  // A second call (a second SIGTERM, two handlers) waits for the same drain, with the first settings.
  if (registry.shutdown !== undefined) return registry.shutdown;
  try {
    const { event, retry, graceMs = 5000 } = options;
    if (typeof graceMs !== 'number' || !Number.isSafeInteger(graceMs) || graceMs < 0 || graceMs > MAX_TIMER_MS) {
      throw new SseGuardError('ERR_SSE_INVALID_OPTION', `graceMs must be an integer number of ms from 0 to ${MAX_TIMER_MS}, got ${describe(graceMs)}; above it Node's timer fires at once and cuts every client.`);
    }
    // Serialized once, and before anything is closed: an invalid event throws with every stream intact.
    const farewell = (retry === undefined ? '' : serializeRetry(retry)) + (event === undefined ? '' : serializeEvent(event));
    registry.retryAfter = Math.max(1, Math.ceil((retry ?? 1000) / 1000));
    registry.shutdown = drainAll(farewell, graceMs);
    return registry.shutdown;
  } catch (error) {
    return Promise.reject(error);
  }
}

// How long shutdown() waits for the responses it cut at graceMs to report 'close'.
const CLOSE_AFTER_CUT_MS = 1000;

/**
 * Ends every open stream, and settles once each response closed; one timer cuts those still open
 * after `graceMs`, and it settles at most CLOSE_AFTER_CUT_MS later. No promise, timer or closure
 * per stream: with tens of thousands open, those were most of the work.
 */
function drainAll(farewell: string, graceMs: number): Promise<void> {
  const pending = new Set<Closing>();
  for (const stream of [...open]) {
    try {
      const res = stream[drainStream](farewell);
      if (res !== undefined && !res.closed) pending.add(res);
    } catch (error) {
      // One response whose end() throws (a wrapper of someone else's) must not keep the others open.
      process.emitWarning(`sse-guard: shutdown() could not end a stream (${describe(error)}); the other streams were ended.`, {
        code: 'SSE_GUARD_DRAIN_FAILED',
      });
    }
  }
  if (pending.size === 0) return Promise.resolve();
  return new Promise<void>((resolve) => {
    let settle: NodeJS.Timeout | undefined;
    const cut = setTimeout(() => {
      for (const res of pending) res.destroy();
      // A cut socket reports 'close' on a later turn of the loop; one that never does (an HTTP/2
      // response that closed before it was counted) must not hold shutdown() past its bound.
      settle = setTimeout(resolve, CLOSE_AFTER_CUT_MS);
    }, graceMs);
    function closed(this: Closing): void {
      if (!pending.delete(this) || pending.size > 0) return;
      clearTimeout(cut);
      clearTimeout(settle);
      resolve();
    }
    for (const res of pending) res.on('close', closed);
  });
}
