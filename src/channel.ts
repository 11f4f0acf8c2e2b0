// Broadcast to many streams, with history for Last-Event-ID replay.
import { memoryAdapter, type ChannelAdapter, type StoredEvent } from './adapter.js';
import { SseGuardError } from './errors.js';
import { serializeBody, serializeEvent, serializeId } from './serialize.js';
import { closeWith, writeFrame, type SseStream } from './stream.js';
import type { AnyEvents, EventMap, EventOf, SseEvent } from './types.js';

export interface ChannelOptions {
  /** Events kept for Last-Event-ID replay. Default `0`. */
  history?: number;
  /** Where events are stored and how they reach other instances. Default: this process only. */
  adapter?: ChannelAdapter;
  /** Name of the event sent when a client's Last-Event-ID is not in the history; `false` sends none. Default `'resync'`. */
  resyncEvent?: string | false;
}

// Streams of any event map; the channel only writes frames it serialized itself.
type Subscriber = SseStream<EventMap>;

// A subscriber whose replay is still being fetched: live events wait here, in order.
type Joining = StoredEvent[];

function frameOf(event: StoredEvent): Buffer {
  return Buffer.from(`id: ${event.id}\n${event.body}`);
}

/**
 * Broadcasts events to every subscribed stream. Each event is serialized once and the same bytes
 * are written to every subscriber; a slow subscriber never holds up the others.
 */
export class Channel<M extends EventMap = AnyEvents> {
  readonly #adapter: ChannelAdapter;
  readonly #resyncEvent: string | false;
  readonly #live = new Set<Subscriber>();
  readonly #joining = new Map<Subscriber, Joining>();
  readonly #attached: Promise<void>;
  #closed = false;

  constructor(options: ChannelOptions = {}) {
    const history = options.history ?? 0;
    if (!Number.isSafeInteger(history) || history < 0) {
      throw new SseGuardError('ERR_SSE_INVALID_OPTION', `history must be a non-negative integer, got ${String(history)}.`);
    }
    const resync = options.resyncEvent ?? 'resync';
    // Validated once here, so that a bad name fails at startup rather than on a reconnect.
    if (resync !== false) serializeBody({ event: resync, data: '' });
    this.#resyncEvent = resync;
    this.#adapter = options.adapter ?? memoryAdapter();
    this.#attached = Promise.resolve(this.#adapter.attach(this.#deliver, history));
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
    s.on('close', () => {
      this.#live.delete(s);
      this.#joining.delete(s);
    });
    const last = s.lastEventId;
    if (last === undefined) {
      this.#live.add(s);
      return;
    }
    const missed = this.#adapter.since(last);
    if (!(missed instanceof Promise)) {
      this.#catchUp(s, last, missed, []);
      return;
    }
    const waiting: Joining = [];
    this.#joining.set(s, waiting);
    missed.then(
      (events) => {
        if (this.#joining.delete(s)) this.#catchUp(s, last, events, waiting);
      },
      () => {
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
    for (const waiting of this.#joining.values()) waiting.push(event);
  };

  #catchUp(s: Subscriber, last: string, missed: StoredEvent[] | undefined, waiting: Joining): void {
    if (s.closed) return;
    const sent = new Set<string>();
    if (missed === undefined) {
      if (this.#resyncEvent !== false) s[writeFrame](serializeEvent({ event: this.#resyncEvent, data: { lastEventId: last } }), true);
    } else {
      for (const event of missed) {
        sent.add(event.id);
        s[writeFrame](frameOf(event), true);
      }
    }
    // Events delivered while the replay was fetched; the replay may already hold some of them.
    for (const event of waiting) if (!sent.has(event.id)) s[writeFrame](frameOf(event), true);
    if (!s.closed) this.#live.add(s);
  }
}
