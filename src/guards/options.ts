// Validates SseOptions once, when sse() is called, so that a bad option fails at startup, not per request.
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { SseGuardError } from '../core/errors.js';
import { MAX_TIMER_MS } from '../core/limits.js';
import { isolateLogger } from '../core/logger.js';
import type { SseOptions } from '../core/types.js';
import { describe } from '../core/describe.js';

export type ResolvedOptions = Required<Omit<SseOptions, 'retry' | 'logger'>> & Pick<SseOptions, 'retry' | 'logger'>;

function fail(message: string): never {
  throw new SseGuardError('ERR_SSE_INVALID_OPTION', message);
}

function nonNegativeInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail(`${name} must be a non-negative integer, got ${describe(value)}.`);
  return value;
}

// Node fires a timer above 2^31 - 1 ms after 1 ms instead, and a client does the same with such a retry.
function delay(name: string, value: unknown): number {
  const ms = nonNegativeInteger(name, value);
  if (ms > MAX_TIMER_MS) fail(`${name} must be at most ${MAX_TIMER_MS} ms (about 24.8 days), got ${ms}; above it Node's timers fire at once.`);
  return ms;
}

// Checked here as Node would check them in setHeader(), which would otherwise throw on every request.
function checkHeaders(headers: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(headers)) {
    try {
      validateHeaderName(name);
      for (const item of Array.isArray(value) ? value : [value]) {
        if (typeof item !== 'string' && typeof item !== 'number') throw new TypeError(`a header value must be a string, a number or an array of strings, got ${typeof item}`);
        validateHeaderValue(name, String(item));
      }
    } catch (cause) {
      throw new SseGuardError('ERR_SSE_INVALID_OPTION', `headers[${JSON.stringify(name)}] cannot be sent (${(cause as Error).message}); give a valid header name and a value without CR, LF or other control characters.`, { cause });
    }
  }
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) fail(`${name} must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${describe(value)}.`);
  return value as T;
}

export function resolveOptions(options: SseOptions = {}): ResolvedOptions {
  if (options === null || typeof options !== 'object') fail('options must be an object.');
  const heartbeat = options.heartbeat ?? 15000;
  if (heartbeat !== false && delay('heartbeat', heartbeat) < 1) fail('heartbeat must be a positive number of ms, or false to disable it.');
  const padding = nonNegativeInteger('padding', options.padding ?? 0);
  if (padding === 1) fail('padding must be 0 or at least 2 bytes (":" and the line feed).');
  const highWaterMark = nonNegativeInteger('highWaterMark', options.highWaterMark ?? 65536);
  const maxBufferedBytes = nonNegativeInteger('maxBufferedBytes', options.maxBufferedBytes ?? 1048576);
  if (maxBufferedBytes < highWaterMark) fail(`maxBufferedBytes (${maxBufferedBytes}) must not be below highWaterMark (${highWaterMark}).`);
  // The padding is written first: above maxBufferedBytes, a client that has not read it yet would be dropped at the first event.
  if (padding > maxBufferedBytes) fail(`padding (${padding}) must not be above maxBufferedBytes (${maxBufferedBytes}).`);
  const serialize = options.serialize ?? JSON.stringify;
  if (typeof serialize !== 'function') fail('serialize must be a function (data) => string.');
  if (options.logger !== undefined && typeof options.logger !== 'function') fail('logger must be a function (reason, details) => void.');
  const headers = options.headers ?? {};
  if (headers === null || typeof headers !== 'object') fail('headers must be an object of header names to values.');
  checkHeaders(headers);
  const probe = options.probe ?? false;
  if (typeof probe !== 'boolean') fail(`probe must be true or false, got ${describe(probe)}.`);
  return {
    compression: oneOf('compression', options.compression ?? 'bypass', ['bypass', 'flush']),
    timeoutHandler: oneOf('timeoutHandler', options.timeoutHandler ?? 'refuse', ['refuse', 'disarm']),
    heartbeat,
    retry: options.retry === undefined ? undefined : delay('retry', options.retry),
    padding,
    highWaterMark,
    maxBufferedBytes,
    headers,
    serialize,
    logger: isolateLogger(options.logger),
    probe,
  };
}
