// One open event stream: writes, backpressure, heartbeat and close.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { startHeartbeat, stopHeartbeat, type Beating } from './heartbeat.js';
import { counters, drainStream, open, type Registered } from './registry.js';
import { serializeComment, serializeEvent, serializeRetry } from './serialize.js';
import type { AnyEvents, CloseReason, EventMap, SendArg, SseEvent, SseLogger } from './types.js';

/** The per-request settings a stream runs with (resolved from SseOptions by sse()). */
export interface StreamSettings {
  highWaterMark: number;
  maxBufferedBytes: number;
  heartbeat: number | false;
  serialize: (data: unknown) => string;
  logger: SseLogger | undefined;
}

/** Internal: write a serialized frame (a Channel writes one shared frame to many streams). */
export const writeFrame = Symbol('sse-guard.writeFrame');
/** Internal: close with a given reason. */
export const closeWith = Symbol('sse-guard.closeWith');

type Response = ServerResponse & { flush?: () => void };

/**
 * An open Server-Sent Events stream (`res.sse`, or the handler form's first argument).
 * Generic over an event map, so that `send({ event: 'tick', data })` is type-checked.
 */
export class SseStream<M extends EventMap = AnyEvents> implements Registered {
  /** The `Last-Event-ID` request header, when the client sent a non-empty one. */
  readonly lastEventId: string | undefined;
  /** Aborted when the client goes away or the stream closes. */
  readonly signal: AbortSignal;

  readonly #res: Response;
  readonly #socket: Socket | null;
  readonly #settings: StreamSettings;
  readonly #controller = new AbortController();
  readonly #beat: Beating;
  // Behind an active compressor each event must be pushed through it (res.flush()).
  readonly #flushEach: boolean;
  // Bytes handed to a compressor while the socket was backed up: they sit in zlib, where the
  // socket's counters cannot see them.
  #inCompressor = 0;
  #closeReason: CloseReason | undefined;
  #listeners: Array<(reason: CloseReason) => void> = [];
  #ready: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  /** @internal Created by sse(); not constructed by users. */
  constructor(req: IncomingMessage, res: ServerResponse, settings: StreamSettings, flushEach: boolean) {
    this.#res = res;
    this.#socket = req.httpVersionMajor === 1 ? req.socket : null;
    this.#settings = settings;
    this.#flushEach = flushEach;
    this.signal = this.#controller.signal;
    const header = req.headers['last-event-id'];
    this.lastEventId = typeof header === 'string' && header !== '' ? header : undefined;
    this.#beat = { active: true, beat: () => this.comment() };

    res.on('close', this.#onResponseClose);
    this.#socket?.on('drain', this.#onSocketDrain);
    open.add(this);
    if (settings.heartbeat !== false) startHeartbeat(settings.heartbeat, this.#beat);
  }

  /** True once the stream closed, for whatever reason. */
  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Bytes written but not yet taken by the kernel (the socket's buffer, plus any held in a compressor). */
  get bufferedBytes(): number {
    if (this.#closeReason !== undefined) return 0;
    return this.#res.writableLength + this.#inCompressor;
  }

  /**
   * Writes one event and flushes it. A string is the `data` of an unnamed event.
   * Returns false when buffered bytes are above `highWaterMark` (wait with `ready()`), and after close.
   * Throws `ERR_SSE_INVALID_FIELD` for an event that could not be sent as given; nothing is written then.
   */
  send(event: SendArg<M>): boolean {
    if (this.#closeReason !== undefined) return false;
    const frame = typeof event === 'string' ? serializeEvent({ data: event }) : serializeEvent(event as SseEvent, this.#settings.serialize);
    return this[writeFrame](frame, true);
  }

  /** Writes a comment (`:` line per line of text); clients ignore it. */
  comment(text?: string): boolean {
    if (this.#closeReason !== undefined) return false;
    return this[writeFrame](serializeComment(text), false);
  }

  /** Writes a `retry:` field: the client's reconnection delay in ms (a non-negative integer, else throws). */
  retry(ms: number): boolean {
    const frame = serializeRetry(ms);
    if (this.#closeReason !== undefined) return false;
    return this[writeFrame](frame, false);
  }

  /** Resolves when buffered bytes fall below `highWaterMark`, or the stream closes. */
  ready(): Promise<void> {
    if (this.#closeReason !== undefined || this.bufferedBytes < this.#settings.highWaterMark) return Promise.resolve();
    // Only a socket that reported backpressure will emit 'drain'; without one there is nothing to wait for.
    if (this.#socket !== null && !this.#socket.writableNeedDrain) return Promise.resolve();
    this.#ready ??= new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
    return this.#ready;
  }

  /** Ends the response (reason `'server'`). Idempotent. */
  close(): void {
    this[closeWith]('server');
  }

  /** Registers a listener for the one `'close'` event, told the reason. */
  on(event: 'close', listener: (reason: CloseReason) => void): this {
    if (event !== 'close') return this;
    const reason = this.#closeReason;
    if (reason === undefined) this.#listeners.push(listener);
    else queueMicrotask(() => listener(reason));
    return this;
  }

  /** Removes a `'close'` listener. */
  off(event: 'close', listener: (reason: CloseReason) => void): this {
    if (event === 'close') this.#listeners = this.#listeners.filter((fn) => fn !== listener);
    return this;
  }

  /** @internal */
  [writeFrame](frame: string | Buffer, isEvent: boolean): boolean {
    if (this.#closeReason !== undefined) return false;
    const res = this.#res;
    // User code may have ended the response itself; a write in that same tick would throw.
    if (res.writableEnded) {
      this[closeWith]('server');
      return false;
    }
    const { maxBufferedBytes, highWaterMark } = this.#settings;
    if (this.bufferedBytes > maxBufferedBytes) {
      counters.slowConsumerDrops++;
      this.#settings.logger?.('slow-consumer', { bufferedBytes: this.bufferedBytes, maxBufferedBytes });
      this[closeWith]('slow-consumer');
      return false;
    }
    if (this.#flushEach) {
      if (res.writableNeedDrain) this.#inCompressor += frame.length;
      res.write(frame);
      res.flush?.();
    } else {
      res.write(frame);
    }
    this.#beat.active = true;
    if (isEvent) counters.eventsSent++;
    return this.bufferedBytes < highWaterMark;
  }

  /** @internal */
  [closeWith](reason: CloseReason): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    open.delete(this);
    if (this.#settings.heartbeat !== false) stopHeartbeat(this.#settings.heartbeat, this.#beat);
    this.#socket?.off('drain', this.#onSocketDrain);
    const res = this.#res;
    if (reason === 'slow-consumer') res.destroy();
    else if (reason !== 'client' && !res.writableEnded) res.end();
    this.#controller.abort();
    this.#wake?.();
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const listener of listeners) listener(reason);
  }

  /** @internal */
  [drainStream](farewell: string, graceMs: number): Promise<void> {
    const res = this.#res;
    return new Promise<void>((resolve) => {
      if (res.closed) return resolve();
      const timer = setTimeout(() => res.destroy(), graceMs);
      res.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      if (farewell !== '') this[writeFrame](farewell, false);
      this.close();
    });
  }

  readonly #onResponseClose = (): void => {
    // Finished means our end() or the user's res.end(); anything else is the client leaving.
    this[closeWith](this.#res.writableFinished ? 'server' : 'client');
  };

  readonly #onSocketDrain = (): void => {
    this.#inCompressor = 0;
    if (this.#wake !== undefined && this.bufferedBytes < this.#settings.highWaterMark) {
      const wake = this.#wake;
      this.#ready = this.#wake = undefined;
      wake();
    }
  };
}
