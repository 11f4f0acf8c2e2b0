// Validates SseOptions once, when sse() is called, so that a bad option fails at startup, not per request.
import { SseGuardError } from '../core/errors.js';
import type { SseOptions } from '../core/types.js';

export type ResolvedOptions = Required<Omit<SseOptions, 'retry' | 'logger'>> & Pick<SseOptions, 'retry' | 'logger'>;

function fail(message: string): never {
  throw new SseGuardError('ERR_SSE_INVALID_OPTION', message);
}

function nonNegativeInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail(`${name} must be a non-negative integer, got ${String(value)}.`);
  return value;
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) fail(`${name} must be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${String(value)}.`);
  return value as T;
}

export function resolveOptions(options: SseOptions = {}): ResolvedOptions {
  if (options === null || typeof options !== 'object') fail('options must be an object.');
  const heartbeat = options.heartbeat ?? 15000;
  if (heartbeat !== false && nonNegativeInteger('heartbeat', heartbeat) < 1) fail('heartbeat must be a positive number of ms, or false to disable it.');
  // Node fires a timer past 2^31 - 1 ms after 1 ms instead: the heartbeat would spin.
  if (heartbeat !== false && heartbeat > 2147483647) fail(`heartbeat must be at most 2147483647 ms (Node's timer limit), got ${heartbeat}; use false to disable it.`);
  const padding = nonNegativeInteger('padding', options.padding ?? 0);
  if (padding === 1) fail('padding must be 0 or at least 2 bytes (":" and the line feed).');
  const highWaterMark = nonNegativeInteger('highWaterMark', options.highWaterMark ?? 65536);
  const maxBufferedBytes = nonNegativeInteger('maxBufferedBytes', options.maxBufferedBytes ?? 1048576);
  if (maxBufferedBytes < highWaterMark) fail(`maxBufferedBytes (${maxBufferedBytes}) must not be below highWaterMark (${highWaterMark}).`);
  const serialize = options.serialize ?? JSON.stringify;
  if (typeof serialize !== 'function') fail('serialize must be a function (data) => string.');
  if (options.logger !== undefined && typeof options.logger !== 'function') fail('logger must be a function (reason, details) => void.');
  const headers = options.headers ?? {};
  if (headers === null || typeof headers !== 'object') fail('headers must be an object of header names to values.');
  const probe = options.probe ?? false;
  if (typeof probe !== 'boolean') fail(`probe must be true or false, got ${String(probe)}.`);
  return {
    compression: oneOf('compression', options.compression ?? 'bypass', ['bypass', 'flush']),
    timeoutHandler: oneOf('timeoutHandler', options.timeoutHandler ?? 'refuse', ['refuse', 'disarm']),
    heartbeat,
    retry: options.retry === undefined ? undefined : nonNegativeInteger('retry', options.retry),
    padding,
    highWaterMark,
    maxBufferedBytes,
    headers,
    serialize,
    logger: options.logger,
    probe,
  };
}
