// Any source of items as one pull-and-cancel interface: what pipe() and relay() read from.
import { SseGuardError } from '../core/errors.js';
import { isThenable } from '../core/thenable.js';

/** What `pipe()` reads: any sync or async iterable (arrays, generators, object-mode `Readable`s, `ReadableStream`s, SDK streams). */
export type Source<T> = Iterable<T> | AsyncIterable<T>;

/** A source opened for reading. */
export interface Pull<T> {
  /** The next item; a plain result for a sync source, so that it costs no promise. */
  next(): IteratorResult<T> | PromiseLike<IteratorResult<T>>;
  /** Stops the source's work at once, even while a `next()` is pending. Never throws. */
  cancel(): void;
}

type Readerish<T> = { getReader(): { read(): Promise<IteratorResult<T>>; cancel(reason?: unknown): Promise<void> } };
type Destroyable = { destroy(error?: Error): unknown };

const ignore = (): void => {};

// A cancel that fails (a generator's finally that throws, a body already errored) has nobody
// left to tell: the client is gone, or the caller already has the error that stopped the pipe.
function quietly(run: () => unknown): void {
  try {
    const result = run();
    if (isThenable(result)) Promise.resolve(result).then(ignore, ignore);
  } catch {
    // see above
  }
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (isThenable(value)) return 'a promise (await it first)';
  return typeof value === 'string' ? 'a string (it would be sent one character per event; send() it, or pipe [text])' : typeof value;
}

const PIPE_TAKES = 'pipe() takes a sync or async iterable (an array, a generator, an object-mode Readable, a ReadableStream, an SDK stream)';

/** Opens `source`, or throws `ERR_SSE_INVALID_OPTION` (its message opening with `takes`) for anything that is not an iterable of items. */
export function openSource<T>(source: Source<T>, takes = PIPE_TAKES): Pull<T> {
  const candidate = source as unknown;
  if (candidate !== null && typeof candidate === 'object') {
    // A ReadableStream's own async iterator queues return() behind a pending read (WHATWG Streams
    // § 4.2.5); its reader's cancel() ends that read at once, so a silent upstream is freed too.
    if (typeof (candidate as Partial<Readerish<T>>).getReader === 'function') {
      if ((candidate as { locked?: boolean }).locked === true) {
        throw new SseGuardError('ERR_SSE_INVALID_OPTION', `${takes}, got a ReadableStream that is already being read (a Response body already used, or a stream with a reader): pass a fresh one.`);
      }
      const reader = (candidate as Readerish<T>).getReader();
      return { next: () => reader.read(), cancel: () => quietly(() => reader.cancel()) };
    }
    if (typeof (candidate as AsyncIterable<T>)[Symbol.asyncIterator] === 'function') {
      const iterator = (candidate as AsyncIterable<T>)[Symbol.asyncIterator]();
      // A Node Readable: destroy() ends a pending read at once, where the iterator's return()
      // would wait for it.
      if (typeof (candidate as Partial<Destroyable>).destroy === 'function') {
        return { next: () => iterator.next(), cancel: () => quietly(() => (candidate as Destroyable).destroy()) };
      }
      return { next: () => iterator.next(), cancel: () => quietly(() => iterator.return?.()) };
    }
    if (typeof (candidate as Iterable<T>)[Symbol.iterator] === 'function') {
      const iterator = (candidate as Iterable<T>)[Symbol.iterator]();
      return { next: () => iterator.next(), cancel: () => quietly(() => iterator.return?.()) };
    }
  }
  throw new SseGuardError('ERR_SSE_INVALID_OPTION', `${takes}, got ${kindOf(candidate)}.`);
}
