// pipe(): send every item of a source, at the pace of the client, and stop the source when it leaves.
import { SseGuardError } from '../core/errors.js';
import { isThenable } from '../core/thenable.js';
import type { CloseReason, EventMap, SendArg } from '../core/types.js';
import { openSource, type Pull, type Source } from './source.js';

/** What an item becomes without `map`: the data of an unnamed event, so only what the map allows there. */
export type PipeItem<M extends EventMap> = string extends keyof M ? unknown : M extends { message: infer D } ? D : never;

/** Options of `stream.pipe()`. */
export interface PipeOptions<T, M extends EventMap> {
  /** Turns an item into the event to send (or a promise of it: awaited); `undefined` skips the
   *  item. Default: a string is the data of an unnamed event, anything else `{ data: item }`. */
  map?: (item: T) => Mapped<M>;
  /** Close the stream when the source ends. Default `false`. */
  end?: boolean;
}

/** The part of a stream pipe() drives (an SseStream; kept structural so that this module does not import it). */
export interface Sink<M extends EventMap> {
  send(event: SendArg<M>): boolean;
  ready(): Promise<void>;
  close(): void;
  readonly closed: boolean;
  on(event: 'close', listener: (reason: CloseReason) => void): unknown;
  off(event: 'close', listener: (reason: CloseReason) => void): unknown;
}

/** What `map` may return: an event, `undefined` to skip the item, or a promise of either. */
export type Mapped<M extends EventMap> = SendArg<M> | undefined | PromiseLike<SendArg<M> | undefined>;

function defaultEvent(item: unknown): SendArg<EventMap> {
  return typeof item === 'string' ? item : { data: item };
}

/** Sends every item of `source` to `sink`; resolves to the number of events sent. See `SseStream.pipe`. */
export function pipe<T, M extends EventMap>(sink: Sink<M>, source: Source<T>, options?: PipeOptions<T, M> | null): Promise<number> {
  const map = options?.map;
  const end = options?.end ?? false;
  if (map !== undefined && typeof map !== 'function') {
    return Promise.reject(new SseGuardError('ERR_SSE_INVALID_OPTION', `pipe()'s map must be a function from item to event, got ${typeof map}.`));
  }
  const toEvent = (map ?? defaultEvent) as (item: T) => Mapped<M>;
  let pull: Pull<T>;
  try {
    pull = openSource(source);
  } catch (error) {
    return Promise.reject(error);
  }

  return new Promise<number>((resolve, reject) => {
    let sent = 0;
    let finished = false;
    const finish = (): void => {
      finished = true;
      sink.off('close', onClose);
    };
    // The client left or the stream was closed: stop the source now, even in the middle of a
    // pending next() (an LLM call between two tokens), and resolve with what was sent.
    const onClose = (): void => {
      if (finished) return;
      finish();
      pull.cancel();
      resolve(sent);
    };
    if (sink.closed) {
      finished = true;
      pull.cancel();
      resolve(0);
      return;
    }
    sink.on('close', onClose);

    const run = async (): Promise<void> => {
      for (;;) {
        const pending = pull.next();
        const step = (isThenable(pending) ? await pending : pending) as IteratorResult<T>;
        // Closed while the source was working: onClose has cancelled it and resolved.
        if (finished) return;
        if (step.done === true) break;
        // A promise is awaited, as `for await` awaits the items of a sync iterable (and a rejection
        // rejects pipe()): sent as it stands it would be `data: {}`, its rejection unhandled.
        const item = isThenable(step.value) ? ((await step.value) as T) : step.value;
        if (finished) return;
        const mapped = toEvent(item);
        const event = isThenable(mapped) ? await mapped : mapped;
        if (finished) return;
        if (event === undefined) continue;
        const below = sink.send(event);
        // A send refused because the stream just closed (slow consumer): not sent, and onClose ran.
        if (finished) return;
        sent++;
        // Backpressure: pull nothing more until the client has taken what is buffered.
        if (!below) {
          await sink.ready();
          if (finished) return;
        }
      }
      finish();
      if (end) sink.close();
      resolve(sent);
    };
    run().catch((error: unknown) => {
      // After a close, a source that fails because it was cancelled (an aborted request) is expected.
      if (finished) return;
      finish();
      pull.cancel();
      reject(error);
    });
  });
}
