// Broadcast to many streams, with history for Last-Event-ID replay.
import { memoryAdapter, type ChannelAdapter, type StoredEvent } from './adapter.js';
import { SseGuardError } from '../core/errors.js';
import { MAX_TIMER_MS } from '../core/limits.js';
import { serializeBody, serializeEvent, serializeId } from '../stream/serialize.js';
import { checkBuffered, closeWith, sharedFrame, writeFrame, type SharedFrame, type SseStream } from '../stream/stream.js';
import { isThenable } from '../core/thenable.js';
import type { AnyEvents, EventMap, EventOf, SseEvent } from '../core/types.js';
import { describe } from '../core/describe.js';

export interface ChannelOptions {
  /** Events kept for Last-Event-ID replay. Default `0`. */
  history?: number;
  /** Where events are stored and how they reach other instances. Default: this process only. */
  adapter?: ChannelAdapter;
  /** Name of the event sent when a client's Last-Event-ID is not in the history; `false` sends none. Default `'resync'`. */
  resyncEvent?: string | false;
  /** ms a reconnecting client waits for the adapter's since(); past it the stream closes with `'error'`. Default `10000`. */
  joinTimeout?: number;
}

// Streams of any event map; the channel only writes frames it serialized itself.
type Subscriber = SseStream<EventMap>;

// A subscriber whose replay is still being fetched or written: live events wait here, in order,
// with the size of those not yet written.
interface Joining {
  events: StoredEvent[];
  bytes: number;
  // True while the adapter's since() has not answered: the queue then grows because of the adapter,
  // not the client, and is bounded by joinTimeout instead of the slow-consumer rule.
  fetching: boolean;
  // How many events were queued by the time since() answered: only those can be in its answer too.
  fetched: number;
}

const same = (a: StoredEvent, b: StoredEvent): boolean => a.id === b.id && a.body === b.body;

// How many queued events the replay already holds: a live feed and a read of the log overlap where
// the head of the queue repeats the tail of the replay. Matched by position and content, not by id
// alone: ids may repeat (publish() takes the caller's), and a later event with an id seen in the
// replay is new. The longest such overlap, found in one pass (Knuth-Morris-Pratt): a history of
// repeated events must not make a reconnect quadratic.
function overlap(replay: StoredEvent[], queued: StoredEvent[], fetched: number): number {
  const m = Math.min(fetched, replay.length);
  if (m === 0) return 0;
  // fallback[i]: the longest proper prefix of queued[0..i] that is also its suffix.
  const fallback = new Uint32Array(m);
  for (let i = 1, k = 0; i < m; i++) {
    while (k > 0 && !same(queued[i]!, queued[k]!)) k = fallback[k - 1]!;
    if (same(queued[i]!, queued[k]!)) k++;
    fallback[i] = k;
  }
  let k = 0;
  for (let i = replay.length - m; i < replay.length; i++) {
    while (k > 0 && (k === m || !same(replay[i]!, queued[k]!))) k = fallback[k - 1]!;
    if (same(replay[i]!, queued[k]!)) k++;
  }
  return k;
}

// Waits until the client took the buffered bytes: true, or false when it left meanwhile.
async function drained(s: Subscriber): Promise<boolean> {
  await s.ready();
  return !s.closed;
}

function forgetter(live: Set<Subscriber>, joining: Map<Subscriber, Joining>): (this: Subscriber) => void {
  return function forget(this: Subscriber): void {
    live.delete(this);
    joining.delete(this);
  };
}

function frameOf(event: StoredEvent): SharedFrame {
  return sharedFrame(`id: ${event.id}\n${event.body}`);
}

/**
 * Broadcasts events to every subscribed stream. Each event is serialized once and the same bytes
 * are written to every subscriber; a slow subscriber never holds up the others.
 */
export class Channel<M extends EventMap = AnyEvents> {
  readonly #adapter: ChannelAdapter;
  readonly #resyncEvent: string | false;
  readonly #joinTimeout: number;
  readonly #live = new Set<Subscriber>();
  readonly #joining = new Map<Subscriber, Joining>();
  readonly #attached: Promise<void>;
  #closed = false;
  // One close listener for every subscriber (a stream calls it with `this` set to itself), not a
  // closure per subscriber: ~100 bytes of heap each with thousands idle (bench/README.md, scenario C).
  readonly #forget = forgetter(this.#live, this.#joining);

  constructor(options: ChannelOptions = {}) {
    const history = options.history ?? 0;
    if (!Number.isSafeInteger(history) || history < 0) {
      throw new SseGuardError('ERR_SSE_INVALID_OPTION', `history must be a non-negative integer, got ${describe(history)}.`);
    }
    const resync = options.resyncEvent ?? 'resync';
    // Validated once here, so that a bad name fails at startup rather than on a reconnect.
    if (resync !== false) serializeBody({ event: resync, data: '' });
    this.#resyncEvent = resync;
    const joinTimeout = options.joinTimeout ?? 10000;
    if (!Number.isSafeInteger(joinTimeout) || joinTimeout < 1 || joinTimeout > MAX_TIMER_MS) {
      throw new SseGuardError('ERR_SSE_INVALID_OPTION', `joinTimeout must be an integer number of ms from 1 to ${MAX_TIMER_MS}, got ${describe(joinTimeout)}.`);
    }
    this.#joinTimeout = joinTimeout;
    this.#adapter = options.adapter ?? memoryAdapter();
    this.#attached = Promise.resolve(this.#adapter.attach(this.#deliver, history, this.#lost));
    // Surfaced by publish(); without this an adapter failing at start would be an unhandled rejection.
    this.#attached.catch(() => {});
  }

  /** Current subscribers. */
  get size(): number {
    return this.#live.size + this.#joining.size;
  }

  /**
   * Adds a stream. With a `lastEventId` found in the history it first replays every later event in
   * order; with one not (or no longer) found it first sends the resync event. Removed on close.
   */
  subscribe(stream: SseStream<M> | SseStream): void {
    const s = stream as unknown as Subscriber;
    if (s.closed) return;
    if (this.#closed) {
      s.close();
      return;
    }
    s.on('close', this.#forget);
    const last = s.lastEventId;
    if (last === undefined) {
      this.#live.add(s);
      return;
    }
    let missed: ReturnType<ChannelAdapter['since']>;
    try {
      missed = this.#adapter.since(last);
    } catch {
      // As a rejection does: the adapter could not say what the client missed.
      s[closeWith]('error');
      return;
    }
    if (!isThenable(missed)) {
      void this.#catchUp(s, last, missed, { events: [], bytes: 0, fetching: false, fetched: 0 });
      return;
    }
    const waiting: Joining = { events: [], bytes: 0, fetching: true, fetched: 0 };
    this.#joining.set(s, waiting);
    // An adapter that never answers must not hold the client (and the live events queued for it) for ever.
    const timer = setTimeout(() => {
      if (waiting.fetching && this.#joining.delete(s)) s[closeWith]('error');
    }, this.#joinTimeout);
    s.on('close', () => clearTimeout(timer));
    // Holds a foreign thenable to the promise rules: one outcome, and a throw in its then() rejects.
    Promise.resolve(missed).then(
      (events) => {
        clearTimeout(timer);
        waiting.fetching = false;
        waiting.fetched = waiting.events.length;
        if (this.#joining.has(s)) void this.#catchUp(s, last, events, waiting);
      },
      () => {
        clearTimeout(timer);
        if (this.#joining.delete(s)) s[closeWith]('error');
      },
    );
  }

  /**
   * Sends an event to every subscriber and resolves to its id once the adapter accepted it (at once
   * in memory). Assigns the next id when none is given. An invalid field rejects with ERR_SSE_INVALID_FIELD.
   */
  async publish(event: EventOf<M>): Promise<string> {
    if (this.#closed) throw new SseGuardError('ERR_SSE_CHANNEL_CLOSED', 'publish() after close(); create a new Channel.');
    const ev = event as SseEvent;
    const body = serializeBody(ev);
    if (ev.id !== undefined) serializeId(ev.id);
    await this.#attached;
    return this.#adapter.append(body, ev.id === undefined ? undefined : String(ev.id));
  }

  /** Closes every subscriber (reason `'server'`) and detaches the adapter. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [...this.#live, ...this.#joining.keys()]) s.close();
    await this.#adapter.close();
  }

  readonly #deliver = (event: StoredEvent): void => {
    if (this.#live.size > 0) {
      const frame = frameOf(event);
      for (const s of this.#live) s[writeFrame](frame, true);
    }
    for (const [s, waiting] of this.#joining) {
      waiting.events.push(event);
      waiting.bytes += Buffer.byteLength(event.body);
      // A client that stops reading while it catches up would otherwise hold every live event here.
      if (!waiting.fetching) s[checkBuffered](waiting.bytes);
    }
  };

  // The adapter could not deliver some events after `after`: no subscriber may go on as if it had them.
  readonly #lost = (after: string): void => {
    const resync = this.#resyncEvent === false ? undefined : sharedFrame(serializeEvent({ event: this.#resyncEvent, data: { lastEventId: after } }));
    for (const s of this.#live) {
      if (resync === undefined) s.close();
      else s[writeFrame](resync, true);
    }
    // Their replay ends before the gap and their queue resumes after it: reconnecting sorts that out.
    for (const s of [...this.#joining.keys()]) s.close();
  };

  // A replay can be far larger than maxBufferedBytes: written at once it would get the reconnecting
  // client dropped as a slow consumer, again on every reconnect. So above highWaterMark it waits for
  // the client to take the bytes, while live events queue in `waiting`.
  async #catchUp(s: Subscriber, last: string, missed: StoredEvent[] | undefined, waiting: Joining): Promise<void> {
    if (s.closed) return;
    this.#joining.set(s, waiting);
    const replay = missed ?? [];
    if (missed === undefined && this.#resyncEvent !== false) {
      s[writeFrame](serializeEvent({ event: this.#resyncEvent, data: { lastEventId: last } }), true);
    }
    for (const event of replay) {
      if (!s[writeFrame](frameOf(event), true) && !(await drained(s))) return;
    }
    // Then the live events delivered while the replay was fetched or written, minus those it already
    // held. The queue grows meanwhile; taken from the front, so that what was written is let go.
    let replayed = overlap(replay, waiting.events, waiting.fetched);
    while (waiting.events.length > 0) {
      const event = waiting.events.shift()!;
      waiting.bytes -= Buffer.byteLength(event.body);
      if (replayed-- > 0) continue;
      if (!s[writeFrame](frameOf(event), true) && !(await drained(s))) return;
    }
    this.#joining.delete(s);
    if (!s.closed) this.#live.add(s);
  }
}
