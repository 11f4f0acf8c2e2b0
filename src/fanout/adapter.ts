// The seam between a Channel and where its events live: in this process, or shared by many (Redis).
import { randomInt } from 'node:crypto';
import { SseGuardError } from '../core/errors.js';

/** One stored event: its id and its serialized body (every field but `id:`, ending in the blank line). */
export interface StoredEvent {
  id: string;
  body: string;
}

/**
 * Stores a channel's events and delivers them, in one global order, to every instance's channel.
 * Write one to run a Channel on a shared log (see `sse-guard/redis`).
 */
export interface ChannelAdapter {
  /**
   * Binds the adapter to its channel. `deliver` must then be called once for every event appended
   * by any instance, in the order of the log, and never for an event twice.
   * `history` is how many events the channel asked to keep for replay.
   * `lost` (always given by a Channel) is for an adapter that finds events it can no longer deliver (a shared log trimmed past
   * what this instance had read): call it, with the id of the last event delivered, before
   * delivering the next one. The channel sends its resync event to every subscriber then (or, with
   * `resyncEvent: false` and for subscribers still catching up, closes them so that they reconnect).
   */
  attach(deliver: (event: StoredEvent) => void, history: number, lost?: (after: string) => void): void | Promise<void>;
  /** Stores an event and resolves to its id (the adapter assigns one when `id` is undefined). Rejects when it cannot store it. */
  append(body: string, id: string | undefined): Promise<string>;
  /**
   * The events after `lastEventId`, oldest first: `[]` when it is the newest, `undefined` when it is
   * not (or no longer) in the retained history.
   */
  since(lastEventId: string): StoredEvent[] | undefined | PromiseLike<StoredEvent[] | undefined>;
  /** Stops delivering and releases connections. */
  close(): void | Promise<void>;
}

// The start time of the newest memoryAdapter() in this process.
let lastStart = 0;

function idPrefix(): string {
  // Adapters created in the same millisecond take the next ones: no two in a process share a prefix.
  lastStart = Math.max(Date.now(), lastStart + 1);
  // Processes started in the same millisecond (the workers of one deploy) differ in the random part.
  return lastStart.toString(36) + randomInt(36 ** 4).toString(36).padStart(4, '0');
}

interface HistoryRing {
  push(event: StoredEvent): void;
  /** The events after the newest one with this id, oldest first; undefined when none has it. */
  after(id: string): StoredEvent[] | undefined;
}

// The last `capacity` events, overwritten in place once full: a publish costs the same at any
// history size (an array's shift() would copy the whole history on every publish).
function historyRing(capacity: number): HistoryRing {
  const slots: StoredEvent[] = [];
  // Index of the oldest event once the ring is full; the next write goes there.
  let start = 0;
  const at = (i: number): StoredEvent => slots[(start + i) % slots.length]!;
  return {
    push(event) {
      if (capacity === 0) return;
      if (slots.length < capacity) {
        slots.push(event);
        return;
      }
      slots[start] = event;
      start = (start + 1) % capacity;
    },
    after(id) {
      // Newest first: a reconnecting client usually missed only the last few events.
      for (let i = slots.length - 1; i >= 0; i--) {
        if (at(i).id !== id) continue;
        const events: StoredEvent[] = [];
        for (let j = i + 1; j < slots.length; j++) events.push(at(j));
        return events;
      }
      return undefined;
    },
  };
}

/**
 * The default adapter: this process only, the last `history` events kept for replay. Assigned ids
 * are `<prefix>-1`, `<prefix>-2`…, the prefix being this adapter's own: its start time in base 36
 * and four random characters (`mi5c8t0gk3x9-1`).
 */
export function memoryAdapter(): ChannelAdapter {
  let deliver: (event: StoredEvent) => void = () => {};
  // Counting restarts with the process: without the prefix, a client reconnecting after a restart
  // with `Last-Event-ID: 57` would be replayed what followed the new 57th event, not sent a resync.
  const prefix = idPrefix();
  let seq = 0;
  let kept = historyRing(0);
  // The newest id is known even with no history, so a client that missed nothing gets no resync.
  let newest: string | undefined;
  let attached = false;
  return {
    attach(fn, size) {
      // A second Channel would silently take the deliveries from the first.
      if (attached) throw new SseGuardError('ERR_SSE_INVALID_OPTION', 'a memoryAdapter() serves one Channel; create one per channel.');
      attached = true;
      deliver = fn;
      // One more than `history`: a client that missed `history` events reconnects with the id of
      // the event before them, and since() must still find it to replay them.
      kept = historyRing(size === 0 ? 0 : size + 1);
    },
    append(body, id) {
      const event = { id: id ?? `${prefix}-${++seq}`, body };
      newest = event.id;
      kept.push(event);
      deliver(event);
      return Promise.resolve(event.id);
    },
    since(lastEventId) {
      if (lastEventId === newest) return [];
      return kept.after(lastEventId);
    },
    close() {
      deliver = () => {};
    },
  };
}
