// An event stream that other code writes, once guard() recognised it: the writes are watched (not
// changed) so that the stream can be flushed through a compressor that engaged anyway, cut when its
// client stops reading, given heartbeats only between events, and ended by shutdown().
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { compressorQueue, heldIn, type CompressorQueue } from '../core/compressor.js';
import { goneBefore, http2StreamOf, queuedBehind } from '../core/queued.js';
import { urlOf } from '../core/url.js';
import { active, beat, startHeartbeat, stopHeartbeat, type Beating } from '../stream/heartbeat.js';
import { counters, drainStream, open, registry, type Closing, type Registered } from '../stream/registry.js';
import { serializeComment } from '../stream/serialize.js';
import type { SseLogger } from '../core/types.js';

export interface GuardedSettings {
  heartbeat: number | false;
  maxBufferedBytes: number;
  logger: SseLogger | undefined;
}

type WriteCallback = (error?: Error | null) => void;
type Write = (chunk: unknown, encoding?: BufferEncoding, callback?: WriteCallback) => boolean;
type End = (...args: unknown[]) => ServerResponse;
type Response = ServerResponse & { flush?: () => void };

const LF = 0x0a;
const CR = 0x0d;

/** The character (or byte) at `i` of a text or byte chunk. */
const codeAt = (chunk: string | Uint8Array, i: number): number => (typeof chunk === 'string' ? chunk.charCodeAt(i) : chunk[i]!);

const heartbeatFrame = serializeComment();
// Listens to the compressor only to find it: the guard reads its queues, and waits on no drain.
const ignore = (): void => {};

// What a producer's write or end callback is told once the guard ended its response, or after its own end().
const endedByGuard = (): Error => new Error('sse-guard: the event stream was ended by shutdown() or as a slow consumer.');
const writeAfterEnd = (): Error => new Error('sse-guard: write after end(); nothing was sent.');

/** Closed before all it was given reached the client: its socket destroyed before it finished, or its HTTP/2 stream reset (which reports itself finished all the same). */
function cutShort(res: ServerResponse): boolean {
  const stream = http2StreamOf(res);
  if (stream !== undefined) return stream.destroyed && stream.rstCode !== undefined && stream.rstCode !== 0;
  return res.destroyed && !res.writableFinished;
}

function byteLength(chunk: unknown, encoding: BufferEncoding | undefined): number {
  return typeof chunk === 'string' ? Buffer.byteLength(chunk, encoding) : chunk instanceof Uint8Array ? chunk.length : 0;
}

function length(chunk: unknown): number {
  return typeof chunk === 'string' || chunk instanceof Uint8Array ? chunk.length : 0;
}

// U+FEFF as the first character of a string, or its UTF-8 bytes opening a buffer.
function withoutBom(chunk: unknown): unknown {
  if (typeof chunk === 'string') return chunk.charCodeAt(0) === 0xfeff ? chunk.slice(1) : chunk;
  if (chunk instanceof Uint8Array && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) return chunk.subarray(3);
  return chunk;
}

export class GuardedStream implements Registered, Beating {
  /** Set on every write; the heartbeat scheduler clears it (see stream/heartbeat.ts). */
  [active] = true;
  readonly #req: IncomingMessage;
  readonly #res: Response;
  readonly #socket: Socket | null;
  readonly #settings: GuardedSettings;
  // The write() and end() below ours (the compressor's, or Node's), captured when the stream was recognised.
  readonly #write: Write;
  readonly #end: End;
  // Set once the head is out and a compressor turned out to have engaged: every write is flushed then.
  #compressed = false;
  // Bytes handed to the compressor, which the socket's counters cannot see: as for sse() (see
  // SseStream), `compression`'s queues read as they are, else what is written while the socket is
  // backed up, until it drains.
  #compressor: CompressorQueue | undefined;
  #inCompressor = 0;
  // The line terminators closing what was written so far (two or more: an event just ended, or
  // nothing was written; only there may a heartbeat go), and whether the last byte was a CR, whose
  // LF in the next write would make one CRLF.
  #lineEnds = 2;
  #lastCR = false;
  #closed = false;
  // Whether the write() below ours is not Node's own (and so may drop callbacks), and the callbacks
  // waiting for the socket to drain.
  readonly #wrapped: boolean;
  #waiting: Array<() => void> = [];
  // Set when shutdown() or the slow-consumer rule ended the response: later writes are refused.
  #endedByGuard = false;
  // Set once the producer called end(): a write after it is not sent, whatever the layer below says.
  #producerEnded = false;
  // Set during the producer's end() on HTTP/2, whose end() writes its chunk through res.write.
  #inHttp2End = false;
  // Whether the producer wrote a body byte yet; and, once the connect line went out before its first
  // one, that a byte order mark opening that first write must go (EventSource strips one only at the
  // very start of the stream; after the line it would join the first field's name).
  #wroteBody = false;
  #stripBom = false;
  #connect: NodeJS.Immediate | undefined;
  // Whether the guard's own comment lines (the connect line, heartbeats) may join this body: not
  // where they would break its framing or its encoding, or where its status allows no body.
  #comments = false;
  // Set when it is not known whether the compressor below engaged (see start()): the producer's
  // first body write shows it, and until then the guard writes nothing of its own.
  #probing = false;
  // Set when the response turned out not to be an event stream before its head: its writes go by as they are.
  #released = false;

  constructor(req: IncomingMessage, res: ServerResponse, settings: GuardedSettings) {
    this.#req = req;
    this.#res = res;
    this.#socket = req.httpVersionMajor === 1 ? req.socket : null;
    this.#settings = settings;
    this.#write = res.write as Write;
    this.#end = res.end as End;
    this.#wrapped = this.#write !== (Object.getPrototypeOf(res) as { write?: unknown }).write;
    res.write = this.#watchedWrite as ServerResponse['write'];
    res.end = this.#watchedEnd as ServerResponse['end'];
  }

  /**
   * Called once the head is out: joins stats(), shutdown() and the heartbeat, and learns whether a
   * compressor engaged below the guard's writes, or the body is encoded where the guard cannot write
   * into it (the producer's own gzip, say, or a compressor mounted on the route after the type was set).
   * `unsure`: the Content-Encoding may be the producer's own rather than a compressor's (both came
   * inside another layer's writeHead); its first write then shows which, on HTTP/1.
   */
  start(compressed: boolean, encodedElsewhere: boolean, unsure: boolean): void {
    this.#compressed = compressed;
    const res = this.#res;
    const status = res.statusCode;
    // A Content-Length counts the producer's bytes only (one more would cut its last event and
    // garble the next response on the socket); 204 and 205 allow no body (Node drops 204's itself).
    this.#comments = !encodedElsewhere && !res.hasHeader('content-length') && status >= 200 && status <= 299 && status !== 204 && status !== 205;
    if (unsure) {
      this.#probing = this.#comments && this.#socket !== null;
      this.#comments = false;
    }
    // Gone before its head: its 'close' came already (a queued response's never comes: see queuedBehind).
    const socket = this.#socket;
    if (goneBefore(res, socket)) {
      this.#onClose();
      return;
    }
    // From here on, a write callback waiting for the socket to drain is settled when the response closes, whatever comes next.
    res.on('close', this.#onClose);
    if (queuedBehind(res, socket)) socket.once('close', this.#onClose);
    this.#socket?.on('drain', this.#onDrain);
    if (compressed) this.#compressor = compressorQueue(res, ignore);
    // Begun after shutdown(): ended at once (the head is out, so no 503 as sse() answers), or it
    // would hold server.close() with nobody left to end it. On the next tick: the head may be going
    // out inside the producer's first write, which Node finishes after this returns, and what the
    // producer writes in this tick (a whole short answer, say) still goes out.
    if (registry.shutdown !== undefined) {
      process.nextTick(() => {
        if (res.writableEnded) return;
        this.#endedByGuard = true;
        this.#end.call(res);
      });
      return;
    }
    open.add(this);
    if (!this.#comments) return;
    if (this.#settings.heartbeat !== false) startHeartbeat(this.#settings.heartbeat, this);
    // Some proxies hold the head until the first body byte (nginx over HTTP/2, Caddy with encode):
    // a producer that sends its head and then waits (for a model's first token, say) would have the
    // client's open held that long. Once this tick's I/O is done, a stream with no body byte yet gets
    // one comment line, as sse() writes at connect; any later write starts on a fresh line.
    this.#connect = setImmediate(this.#writeConnectLine);
  }

  /** The response is not an event stream after all (its type changed before the head): from now on its writes and end pass untouched. */
  release(): void {
    this.#released = true;
  }

  get bufferedBytes(): number {
    if (this.#closed) return 0;
    const compressor = this.#compressor;
    return this.#res.writableLength + (compressor === undefined ? this.#inCompressor : heldIn(compressor));
  }

  /** The heartbeat: a comment, written only where an event just ended, never inside one the producer wrote in pieces. */
  [beat](): void {
    const res = this.#res;
    if (this.#closed || this.#endedByGuard || res.writableEnded || !this.#atBoundary()) return;
    this.#write.call(res, heartbeatFrame);
    if (this.#compressed) res.flush?.();
    // As any write: the scheduler then waits a whole period before the next beat.
    this[active] = true;
  }

  /** shutdown(): ends the response, writing nothing in the producer's format. */
  [drainStream](): Closing | undefined {
    const res = this.#res;
    if (res.closed || this.#closed) return undefined;
    this.#endedByGuard = true;
    if (!res.writableEnded) this.#end.call(res);
    return res;
  }

  #atBoundary(): boolean {
    return this.#lineEnds >= 2;
  }

  // The producer's end(), which may carry its first body (a BOM there goes as in a write). After
  // shutdown() or the slow-consumer rule ended the response, Node would emit 'error' (write after
  // end) on a response nobody listens to for errors, crashing the process: refused here instead.
  readonly #watchedEnd = (...args: unknown[]): ServerResponse => {
    const res = this.#res;
    if (this.#released) return this.#end.apply(res, args);
    if (!this.#endedByGuard) {
      if (this.#stripBom && length(args[0]) > 0) {
        this.#stripBom = false;
        args[0] = withoutBom(args[0]);
      }
      // Node's HTTP/2 end() writes its chunk through res.write, the guard's: that write (and any in
      // the call) goes through; on HTTP/1, where end() writes its chunk itself, none does (a
      // 'prefinish' listener's would reach Node after end, which emits 'error' for it).
      this.#producerEnded = true;
      this.#inHttp2End = this.#socket === null;
      try {
        return this.#end.apply(res, args);
      } catch (error) {
        this.#producerEnded = false;
        throw error;
      } finally {
        this.#inHttp2End = false;
      }
    }
    const callback = args.find((arg): arg is WriteCallback => typeof arg === 'function');
    if (callback !== undefined) process.nextTick(callback, endedByGuard());
    return res;
  };

  readonly #watchedWrite = (chunk: unknown, encodingOrCallback?: BufferEncoding | WriteCallback, maybeCallback?: WriteCallback): boolean => {
    const res = this.#res;
    if (this.#released) return (this.#write as (...args: unknown[]) => boolean).call(res, chunk, encodingOrCallback, maybeCallback);
    const callback = typeof encodingOrCallback === 'function' ? encodingOrCallback : maybeCallback;
    const encoding = typeof encodingOrCallback === 'function' ? undefined : encodingOrCallback;
    if (this.#endedByGuard || (this.#producerEnded && !this.#inHttp2End)) {
      // The response is ending: the producer hears it through the callback (as from a destroyed
      // response) and through res's 'close', never through an 'error' event nobody listens to. A
      // late write of its own (a timer not cleared) is dropped so too, as compression drops it:
      // guard() must not make it crash the process where it did not without.
      if (callback !== undefined) process.nextTick(callback, this.#endedByGuard ? endedByGuard() : writeAfterEnd());
      return false;
    }
    // What piled up before this write decides, as for sse(): one event larger than the limit still
    // goes to a client that reads (Node holds each write in the corked socket until the next tick).
    if (!this.#checkBuffered()) return this.#watchedWrite(chunk, encoding, callback);
    this[active] = true;
    if (length(chunk) > 0) {
      this.#wroteBody = true;
      if (this.#stripBom) {
        this.#stripBom = false;
        chunk = withoutBom(chunk);
      }
    }
    this.#track(chunk);
    // The probe (see #probed), not while the response waits behind another on its connection
    // (HTTP/1.1 pipelining): Node holds its writes until then, compressed or not.
    const probing = this.#probing && length(chunk) > 0 && res.socket != null;
    const sentBefore = probing ? this.#socket!.bytesWritten : 0;
    // A write() wrapped by another layer may drop the callback: compression 1.8 does whenever it is
    // given in third place, and always once it compresses. Such a callback is called here once the
    // chunk was handed over (and flushed) and the socket is not backed up; at most once, whichever
    // of the two comes first. The arguments keep their shape: compression hands a second-place
    // callback on to Node as it is.
    const counting = this.#compressed && this.#compressor === undefined && res.writableNeedDrain;
    const queuedBefore = counting ? res.writableLength : 0;
    let result: boolean;
    let once: WriteCallback | undefined;
    if (callback === undefined) result = encoding === undefined ? this.#write.call(res, chunk) : this.#write.call(res, chunk, encoding);
    else {
      let called = false;
      once = (error) => {
        if (called) return;
        called = true;
        callback(error);
      };
      result =
        encoding === undefined
          ? (this.#write as unknown as (chunk: unknown, callback: WriteCallback) => boolean).call(res, chunk, once)
          : this.#write.call(res, chunk, encoding, once);
    }
    if (probing) this.#probed(this.#socket!.bytesWritten - sentBefore >= byteLength(chunk, encoding));
    if (counting && this.#socket !== null) {
      // Counted only when the chunk did not reach Node's own queue at once (where writableLength
      // sees it): it sits in the compressor. A producer's own Content-Encoding taken for one must
      // not count every byte twice.
      const bytes = byteLength(chunk, encoding);
      if (res.writableLength - queuedBefore < bytes) this.#inCompressor += bytes;
    }
    if (this.#compressed) res.flush?.();
    if (once !== undefined && this.#wrapped) {
      // A response that finished was sent whole (Node marks it destroyed once closed, all the same).
      const closedBefore = this.#closed;
      const settle = (): void => once(closedBefore || cutShort(res) ? new Error('sse-guard: the response was closed before the chunk was sent.') : null);
      if (!this.#closed && this.#socket?.writableNeedDrain === true) this.#waiting.push(settle);
      else setImmediate(settle);
    }
    return result;
  };

  /**
   * The producer's first body write went through the layer below: a compressor that engaged holds it
   * (zlib works off the thread), while one that stood aside handed it on to the socket at once,
   * the encoding being the producer's own. Only the former may carry the guard's comment lines.
   */
  #probed(passedThrough: boolean): void {
    this.#probing = false;
    if (passedThrough) {
      this.#compressed = false;
      this.#compressor?.off('drain', ignore);
      this.#compressor = undefined;
      return;
    }
    this.#comments = true;
    if (this.#settings.heartbeat !== false && !this.#closed && !this.#endedByGuard && open.has(this)) startHeartbeat(this.#settings.heartbeat, this);
  }

  // Runs on every write: it allocates nothing.
  #track(chunk: unknown): void {
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) return;
    const n = chunk.length;
    if (n === 0) return;
    // The line terminators (CRLF, LF or CR, each counted once) that close the chunk.
    let i = n - 1;
    let ends = 0;
    for (; i >= 0; ends++) {
      const c = codeAt(chunk, i);
      if (c === LF) i -= i > 0 && codeAt(chunk, i - 1) === CR ? 2 : 1;
      else if (c === CR) i -= 1;
      else break;
    }
    // A chunk of line ends only adds to those before it, less the LF that completes a CRLF split across writes.
    this.#lineEnds = i < 0 ? this.#lineEnds + ends - (this.#lastCR && codeAt(chunk, 0) === LF ? 1 : 0) : ends;
    this.#lastCR = codeAt(chunk, n - 1) === CR;
  }

  /** False once the client was cut for letting more than maxBufferedBytes pile up. */
  #checkBuffered(): boolean {
    const bufferedBytes = this.bufferedBytes;
    const { maxBufferedBytes, logger } = this.#settings;
    if (bufferedBytes <= maxBufferedBytes) return true;
    counters.slowConsumerDrops++;
    logger?.('slow-consumer', { url: urlOf(this.#req), bufferedBytes, maxBufferedBytes });
    this.#endedByGuard = true;
    this.#res.destroy();
    return false;
  }

  readonly #writeConnectLine = (): void => {
    this.#connect = undefined;
    const res = this.#res;
    if (this.#wroteBody || this.#closed || this.#endedByGuard || res.writableEnded) return;
    this.#wroteBody = true;
    this.#stripBom = true;
    this.#write.call(res, heartbeatFrame);
    if (this.#compressed) res.flush?.();
  };

  readonly #onDrain = (): void => {
    this.#inCompressor = 0;
    this.#settleWaiting();
  };

  #settleWaiting(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const settle of waiting) settle();
  }

  readonly #onClose = (): void => {
    if (this.#closed) return;
    this.#closed = true;
    clearImmediate(this.#connect);
    open.delete(this);
    if (this.#settings.heartbeat !== false) stopHeartbeat(this.#settings.heartbeat, this);
    this.#socket?.off('drain', this.#onDrain);
    this.#compressor?.off('drain', ignore);
    this.#socket?.off('close', this.#onClose);
    this.#settleWaiting();
  };
}
