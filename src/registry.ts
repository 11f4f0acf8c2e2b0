// Process-wide bookkeeping behind stats() and shutdown().
import { serializeEvent, serializeRetry } from './serialize.js';
import type { SseEvent } from './types.js';

/** Internal: a stream's part in shutdown(). */
export const drainStream = Symbol('sse-guard.drain');

/** What the registry needs of an open stream. */
export interface Registered {
  readonly bufferedBytes: number;
  /** Writes `farewell`, ends the response, and settles once it closed or was cut after `graceMs`. */
  [drainStream](farewell: string, graceMs: number): Promise<void>;
}

export const open = new Set<Registered>();
export const counters = { eventsSent: 0, slowConsumerDrops: 0, refusedTimeoutHandler: 0, refusedHeadersSent: 0 };

/** Seconds for `Retry-After` once shutdown() was called; undefined while serving. */
export let retryAfter: number | undefined;

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
export async function shutdown(options: ShutdownOptions = {}): Promise<void> {
  const { event, retry, graceMs = 5000 } = options;
  // Serialized once, and before anything is closed: an invalid event throws with every stream intact.
  const farewell = (retry === undefined ? '' : serializeRetry(retry)) + (event === undefined ? '' : serializeEvent(event));
  retryAfter = Math.max(1, Math.ceil((retry ?? 1000) / 1000));
  await Promise.all([...open].map((stream) => stream[drainStream](farewell, graceMs)));
}
