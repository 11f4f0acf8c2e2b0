/**
 * A promise of any make: user handlers and custom adapters may return their library's own promise
 * type rather than a native Promise. Adopt one with `Promise.resolve()`, so that a `then()` that
 * throws becomes a rejection.
 */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}
