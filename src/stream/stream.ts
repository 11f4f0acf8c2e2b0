// One open event stream: writes, backpressure, heartbeat and close.
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { active, beat, startHeartbeat, stopHeartbeat, type Beating } from './heartbeat.js';
import { decodeLastEventId } from './last-event-id.js';
import { counters, drainStream, open, type Closing, type Registered } from './registry.js';
import { serializeComment, serializeData, serializeEvent, serializeId, serializeRetry } from './serialize.js';
import type { AnyEvents, CloseReason, EventMap, SendArg, SseEvent, SseLogger } from '../core/types.js';
import { pipe as pipeSource, type Mapped, type PipeItem, type PipeOptions } from './pipe.js';
import { relay as relayUpstream, sendIdOnly, type RelayOptions, type Upstream } from './relay.js';
import type { Source } from './source.js';
import { describe } from '../core/describe.js';
import { compressorQueue, heldIn, type CompressorQueue } from '../core/compressor.js';
import { goneBefore, http2StreamOf, queuedBehind } from '../core/queued.js';
import { urlOf } from '../core/url.js';

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
/** Internal: a `res.write` wrapper known to only pass writes to Node's own (compression in pass-through). */
export const passThroughWrite = Symbol('sse-guard.passThroughWrite');
/** Internal: the slow-consumer rule, also counting bytes held for the stream outside it (a Channel's queue). */
export const checkBuffered = Symbol('sse-guard.checkBuffered');

/** Internal: an event serialized once for many streams, and framed once as an HTTP/1.1 chunk. */
export interface SharedFrame {
  readonly body: Buffer;
  /** `body` as one chunk of a chunked response: size line, bytes, CRLF. */
  readonly chunk: Buffer;
}

export function sharedFrame(text: string): SharedFrame {
  const sizeLine = `${Buffer.byteLength(text).toString(16)}\r\n`;
  const chunk = Buffer.from(`${sizeLine}${text}\r\n`);
  return { chunk, body: chunk.subarray(sizeLine.length, chunk.length - 2) };
}

const nativeWrite = ServerResponse.prototype.write;
const uncork = (socket: Socket): void => socket.uncork();

// What res.write() puts on the socket of a chunked HTTP/1.1 response, as one write instead of
// four (size line, CRLF, bytes, CRLF) and without its per-call bookkeeping: half the CPU per
// event for a stream, a quarter less per subscriber for a broadcast (bench/README.md).
function writeChunk(socket: Socket, frame: string | SharedFrame): void {
  if (typeof frame !== 'string') {
    // Broadcasts write once per socket and tick: corking would only add a tick's bookkeeping.
    socket.write(frame.chunk);
    return;
  }
  // An empty chunk would be the response's terminating chunk.
  if (frame === '') return;
  // As res.write() does: hold this tick's writes in the socket, to leave in one syscall.
  if (!socket.writableCorked) {
    socket.cork();
    process.nextTick(uncork, socket);
  }
  socket.write(`${Buffer.byteLength(frame).toString(16)}\r\n${frame}\r\n`);
}

type Response = ServerResponse & { flush?: () => void };

// ms between two looks at the buffer while ready() waits without a 'drain' to come (see #watch).
const READY_POLL_MS = 5;

// A close listener is the app's code, called from wherever the stream closed: a Channel's publish
// loop, the heartbeat tick, a socket callback. One that throws must not cut that loop short (the
// other subscribers would miss the event) nor crash the process from a timer; it is reported as a
// process warning instead, as a failing logger is.
function callListener<S>(stream: S, listener: (this: S, reason: CloseReason) => void, reason: CloseReason): void {
  try {
    listener.call(stream, reason);
  } catch (error) {
    process.emitWarning(`sse-guard: a 'close' listener threw (${describe(error)}); the stream closed all the same. Catch inside your listener.`, {
      code: 'SSE_GUARD_LISTENER_FAILED',
    });
  }
}

/**
 * An open Server-Sent Events stream (`res.sse`, or the handler form's first argument).
 * Generic over an event map, so that `send({ event: 'tick', data })` is type-checked.
 */
export class SseStream<M extends EventMap = AnyEvents> implements Registered, Beating {
  /** The `Last-Event-ID` request header, when the client sent a non-empty one. */
  readonly lastEventId: string | undefined;

  readonly #res: Response;
  readonly #socket: Socket | null;
  readonly #settings: StreamSettings;
  // Made on first use of `signal`: aborting one costs a DOMException with its stack trace, which
  // every close would otherwise pay (a third of shutdown() with thousands of streams open).
  #controller: AbortController | undefined;
  /** @internal Written since the heartbeat's last tick. */
  [active] = true;
  /** @internal Set by sse() behind compression that passed the stream through (guards/passthrough.ts). */
  [passThroughWrite]: unknown;
  // Behind an engaged compressor each event must be pushed through it (res.flush()), and the bytes
  // waiting in it count as buffered, where neither the response nor the socket counts them:
  // uncounted, send() would return true for ever, and a pipe() of a sync source would pull it whole
  // in one turn of the event loop. `compression`'s zlib stream, whose queues are read as they are
  // (see core/compressor.ts); `true` for another compressor, whose queue cannot be seen: what is
  // written while the socket is backed up counts instead, until it drains. One field (with
  // #inCompressor), as every open stream carries it.
  readonly #compressor: CompressorQueue | true | undefined;
  #inCompressor = 0;
  #closeReason: CloseReason | undefined;
  // Made on the first listener and copied on each change, at the exact length: push() into an empty
  // array reserves 17 slots, ~150 bytes for the one listener a Channel adds to each of its streams.
  #listeners: ReadonlyArray<(reason: CloseReason) => void> | undefined;
  #ready: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #poll: NodeJS.Timeout | undefined;

  /** @internal Created by sse(); not constructed by users. */
  constructor(req: IncomingMessage, res: ServerResponse, settings: StreamSettings, flushEach: boolean) {
    this.#res = res;
    this.#socket = req.httpVersionMajor === 1 ? req.socket : null;
    this.#settings = settings;
    const header = req.headers['last-event-id'];
    this.lastEventId = typeof header === 'string' && header !== '' ? decodeLastEventId(header) : undefined;

    res.on('close', this.#onResponseClose);
    const socket = this.#socket;
    if (queuedBehind(res, socket)) socket.once('close', this.#onResponseClose);
    this.#transport().on('drain', this.#onSocketDrain);
    // The compressor's drain wakes ready() as the transport's does (one listener: a closure per stream is ~70 bytes).
    this.#compressor = flushEach ? (compressorQueue(res, this.#onSocketDrain) ?? true) : undefined;
    open.add(this);
    if (settings.heartbeat !== false) startHeartbeat(settings.heartbeat, this);
    // The client may have left while earlier (async) middleware ran: its 'close' has already fired.
    if (goneBefore(res, socket)) this[closeWith]('client');
  }

  /** Aborted when the client goes away or the stream closes. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#closeReason !== undefined) this.#controller.abort();
    }
    return this.#controller.signal;
  }

  /** True once the stream closed, for whatever reason. */
  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Bytes written but not yet taken by the kernel (the socket's buffer, plus any held in a compressor). */
  get bufferedBytes(): number {
    if (this.#closeReason !== undefined) return 0;
    const compressor = this.#compressor;
    return this.#res.writableLength + (typeof compressor === 'object' ? heldIn(compressor) : this.#inCompressor);
  }

  /**
   * Writes one event and flushes it. A string is the `data` of an unnamed event.
   * Returns false when buffered bytes are above `highWaterMark` (wait with `ready()`), and after close.
   * Throws `ERR_SSE_INVALID_FIELD` for an event that could not be sent as given; nothing is written then.
   */
  send(event: SendArg<M>): boolean {
    if (this.#closeReason !== undefined) return false;
    const frame = typeof event === 'string' ? serializeData(event) : serializeEvent(event as SseEvent, this.#settings.serialize);
    return this[writeFrame](frame, true);
  }

  /** Writes a comment (`:` line per line of text); clients ignore it. */
  comment(text?: string): boolean {
    if (this.#closeReason !== undefined) return false;
    return this[writeFrame](serializeComment(text), false);
  }

  /** @internal An `id:` field alone (an upstream's id-only block, relayed): moves the client's Last-Event-ID, no event. */
  [sendIdOnly](id: string): boolean {
    const frame = `${serializeId(id)}\n`;
    if (this.#closeReason !== undefined) return false;
    return this[writeFrame](frame, false);
  }

  /** Writes a `retry:` field: the client's reconnection delay in ms (a non-negative integer, else throws). */
  retry(ms: number): boolean {
    const frame = serializeRetry(ms);
    if (this.#closeReason !== undefined) return false;
    return this[writeFrame](frame, false);
  }

  /** Resolves when buffered bytes fall below `highWaterMark` (or to 0), or the stream closes. */
  ready(): Promise<void> {
    if (this.#isReady()) return Promise.resolve();
    if (this.#ready === undefined) {
      this.#ready = new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#watch();
    }
    return this.#ready;
  }

  #isReady(): boolean {
    if (this.#closeReason !== undefined) return true;
    const buffered = this.bufferedBytes;
    return buffered === 0 || buffered < this.#settings.highWaterMark;
  }

  // 'drain' only comes when the transport's own buffer passed its own mark: an HTTP/2 stream's is
  // 16 KiB, a socket's is whatever the server was created with (it may exceed maxBufferedBytes).
  // Below that mark the bytes leave without any event, so ready() looks again after an I/O turn:
  // resolving at once instead would let a `while (!send()) await ready()` loop outrun the client.
  #watch(): void {
    if (this.#wake === undefined) return;
    if (this.#isReady()) {
      const wake = this.#wake;
      this.#ready = this.#wake = undefined;
      wake();
      return;
    }
    if (this.#poll !== undefined || this.#needsDrain()) return;
    this.#poll = setTimeout(() => {
      this.#poll = undefined;
      this.#watch();
    }, READY_POLL_MS);
  }

  // Where the transport's own 'drain' comes from: the socket, or the HTTP/2 stream (the response's
  // 'drain' may be the compressor's). Not kept in a field: every open stream would carry it.
  #transport(): NodeJS.EventEmitter {
    return this.#socket ?? http2StreamOf(this.#res) ?? this.#res;
  }

  #needsDrain(): boolean {
    return (this.#socket ?? http2StreamOf(this.#res))?.writableNeedDrain === true;
  }

  /** Ends the response (reason `'server'`). Idempotent. */
  close(): void {
    this[closeWith]('server');
  }

  /** Registers a listener for the one `'close'` event, told the reason; `this` is the stream, as with an EventEmitter. */
  on(event: 'close', listener: (reason: CloseReason) => void): this {
    if (event !== 'close') return this;
    const reason = this.#closeReason;
    if (reason === undefined) this.#listeners = this.#listeners === undefined ? [listener] : [...this.#listeners, listener];
    else queueMicrotask(() => callListener(this, listener, reason));
    return this;
  }

  /** Removes a `'close'` listener. */
  off(event: 'close', listener: (reason: CloseReason) => void): this {
    if (event === 'close' && this.#listeners !== undefined) {
      const left = this.#listeners.filter((fn) => fn !== listener);
      this.#listeners = left.length === 0 ? undefined : left;
    }
    return this;
  }

  /**
   * Sends every item of a sync or async iterable (array, generator, object-mode `Readable`,
   * `ReadableStream`, SDK stream), waiting on `ready()` whenever `send()` returns false. When the
   * client leaves or the stream closes it stops pulling, cancels the source and resolves. Rejects
   * with the error of a source or `map` that throws, or `ERR_SSE_INVALID_FIELD` for an item that
   * cannot be sent (nothing of it written). Resolves to the number of events sent.
   */
  // The overload with `map` comes first: TypeScript types a `map` arrow against the first overload
  // it tries and keeps that typing, which would widen `event: 'delta'` to string.
  pipe<T>(source: Source<T>, options: { map: (item: T) => Mapped<M>; end?: boolean }): Promise<number>;
  pipe<T extends PipeItem<M>>(source: Source<T>, options?: { map?: undefined; end?: boolean }): Promise<number>;
  pipe<T>(source: Source<T>, options?: PipeOptions<T, M>): Promise<number> {
    return pipeSource(this, source, options);
  }

  /**
   * Re-sends an upstream event stream (a fetch `Response`, or its body): each event parsed per spec
   * and serialized again (`event`, `data`, `id`, `retry` kept; comments dropped). Rejects with
   * `ERR_SSE_UPSTREAM` before writing anything when the response is not a 2xx `text/event-stream`.
   * Cancels the upstream when the client leaves. Needs the optional peer `eventsource-parser`.
   * A stream typed with an event map must give `map`.
   */
  relay(upstream: Upstream, ...options: string extends keyof M ? [options?: RelayOptions<M>] : [options: Required<RelayOptions<M>>]): Promise<number> {
    return relayUpstream(this, upstream, options[0]);
  }

  /** @internal */
  [writeFrame](frame: string | SharedFrame, isEvent: boolean): boolean {
    if (this.#closeReason !== undefined) return false;
    const res = this.#res;
    // User code may have ended the response itself; a write in that same tick would throw.
    if (res.writableEnded) {
      this[closeWith]('server');
      return false;
    }
    if (!this[checkBuffered](0)) return false;
    const { highWaterMark } = this.#settings;
    const socket = this.#socket;
    // Straight to the socket only where res.write() would do just that: a chunked response that
    // owns its socket (not one queued behind a pipelined response), with nothing wrapping write()
    // but a wrapper known to pass writes straight to it.
    const write = res.write;
    if (socket !== null && res.chunkedEncoding && res.socket === socket && (write === nativeWrite || write === this[passThroughWrite]) && socket.writable) {
      writeChunk(socket, frame);
    } else {
      const bytes = typeof frame === 'string' ? frame : frame.body;
      const compressor = this.#compressor;
      const backedUp = compressor === true && this.#needsDrain();
      res.write(bytes);
      if (compressor !== undefined) {
        res.flush?.();
        if (backedUp) this.#inCompressor += Buffer.byteLength(bytes);
      }
    }
    this[active] = true;
    if (isEvent) counters.eventsSent++;
    return this.bufferedBytes < highWaterMark;
  }

  /** @internal */
  [beat](): void {
    this.comment();
  }

  /** @internal Closes the stream as a slow consumer once its buffered bytes plus `held` pass maxBufferedBytes; false then. */
  [checkBuffered](held: number): boolean {
    if (this.#closeReason !== undefined) return false;
    const bufferedBytes = this.bufferedBytes + held;
    const { maxBufferedBytes } = this.#settings;
    if (bufferedBytes <= maxBufferedBytes) return true;
    counters.slowConsumerDrops++;
    // Closed before the logger hears of it: whatever the logger does, the client is dropped.
    this[closeWith]('slow-consumer');
    this.#settings.logger?.('slow-consumer', { url: urlOf(this.#res.req), bufferedBytes, maxBufferedBytes });
    return false;
  }

  /** @internal */
  [closeWith](reason: CloseReason): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    open.delete(this);
    if (this.#settings.heartbeat !== false) stopHeartbeat(this.#settings.heartbeat, this);
    this.#transport().off('drain', this.#onSocketDrain);
    if (typeof this.#compressor === 'object') this.#compressor.off('drain', this.#onSocketDrain);
    this.#socket?.off('close', this.#onResponseClose);
    const res = this.#res;
    if (reason === 'slow-consumer') res.destroy();
    else if (reason !== 'client' && !res.writableEnded) res.end();
    this.#controller?.abort();
    clearTimeout(this.#poll);
    this.#wake?.();
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners !== undefined) for (const listener of listeners) callListener(this, listener, reason);
  }

  /** @internal */
  [drainStream](farewell: string): Closing | undefined {
    const res = this.#res;
    if (res.closed) return undefined;
    if (farewell !== '') this[writeFrame](farewell, false);
    this.close();
    return res;
  }

  readonly #onResponseClose = (): void => {
    // Finished means our end() or the user's res.end(); anything else is the client leaving.
    this[closeWith](this.#res.writableFinished ? 'server' : 'client');
  };

  // The transport's drain, or the compressor's.
  readonly #onSocketDrain = (): void => {
    this.#inCompressor = 0;
    this.#watch();
  };
}
