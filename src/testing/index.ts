// sse-guard/testing: read an event stream in a test, parsed per spec, with arrival times.
import { createParser } from 'eventsource-parser';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';

/** One event as the client saw it. */
export interface ReceivedEvent {
  /** The event type: `'message'` when it had no `event:` field. */
  event: string;
  data: string;
  /** The `id:` field of this event, if it had one. */
  id: string | undefined;
  /** ms from the request to this event's arrival. */
  at: number;
  /** `performance.now()` at arrival: comparable with the server's clock when both run in one process. */
  time: number;
}

export interface Collected {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** ms from the request to the response headers. */
  headersAt: number;
  events: ReceivedEvent[];
  /** Comment lines (heartbeats, padding), without the leading `:` and space. */
  comments: string[];
  /** `retry:` values received. */
  retries: number[];
  /**
   * True when the stream stopped on the server's side before `count` events or the timeout: the
   * response ended, or the connection was cut mid-stream. False when collect() stopped reading.
   */
  ended: boolean;
}

export interface CollectOptions {
  /** Stop after this many events. Default: read until the timeout or the end of the response. */
  count?: number;
  /** Stop after this many ms from the request; reject when no response arrived by then. Default `2000`. */
  timeout?: number;
  /** Request headers, for a URL target (with supertest, use `.set()`). */
  headers?: Record<string, string>;
}

/** The part of a supertest (superagent) request that collect() drives. */
export interface SupertestRequest {
  buffer(value: boolean): this;
  // `any`: superagent types `res` as its own Response, though in Node it is the IncomingMessage.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  parse(parser: (res: any, done: (err: Error | null, body: unknown) => void) => void): this;
  end(callback: (err: unknown, res: unknown) => void): unknown;
  abort(): unknown;
}

/**
 * Reads events from a supertest request (`request(server).get('/events')`) or a URL until `count`
 * events arrived, the timeout passed, or the response ended; then closes the connection.
 * Parses with eventsource-parser; decodes gzip, deflate and br bodies as they arrive.
 */
export function collect(target: string | URL | SupertestRequest, options: CollectOptions = {}): Promise<Collected> {
  const start = performance.now();
  const timeout = options.timeout ?? 2000;
  return new Promise<Collected>((resolve, reject) => {
    let abort = (): void => {};
    // A server (or a layer in front of it) that never sends headers must fail the test, not hang it.
    const noResponse = setTimeout(() => {
      reject(new Error(`collect(): no response within ${timeout} ms`));
      abort();
    }, timeout);
    const fail = (err: unknown): void => {
      clearTimeout(noResponse);
      reject(err);
    };
    const onResponse = (res: http.IncomingMessage, body: Readable, done?: () => void): void => {
      clearTimeout(noResponse);
      readEvents(res, body, start, timeout, options, (result) => {
        done?.();
        resolve(result);
      });
    };
    if (typeof target === 'string' || target instanceof URL) {
      const headers = { accept: 'text/event-stream', ...options.headers };
      const req = http.get(target, { headers }, (res) => onResponse(res, decoded(res)));
      abort = () => req.destroy();
      req.on('error', fail);
      return;
    }
    let settled = false;
    abort = () => target.abort();
    target
      .buffer(false)
      // superagent has already put a decompressor in front of `res` when the body is encoded.
      .parse((res: http.IncomingMessage, done) => onResponse(res, res, () => ((settled = true), done(null, null))))
      .end((err, response) => {
        // superagent's Response re-emits the body's errors: a connection cut mid-stream (reported as
        // `ended`) would otherwise be an uncaught 'error'.
        (response as { on?: (event: 'error', listener: () => void) => unknown } | undefined)?.on?.('error', () => {});
        if (err !== null && err !== undefined && !settled) fail(err);
      });
  });
}

function decoded(res: http.IncomingMessage): Readable {
  // Flush modes that hand out every byte that can be decoded, as soon as it arrives.
  switch (res.headers['content-encoding']) {
    case 'gzip':
      return res.pipe(zlib.createGunzip({ flush: zlib.constants.Z_SYNC_FLUSH }));
    case 'deflate':
      return res.pipe(zlib.createInflate({ flush: zlib.constants.Z_SYNC_FLUSH }));
    case 'br':
      return res.pipe(zlib.createBrotliDecompress({ flush: zlib.constants.BROTLI_OPERATION_FLUSH }));
    default:
      return res;
  }
}

function readEvents(
  res: http.IncomingMessage,
  body: Readable,
  start: number,
  timeout: number,
  options: CollectOptions,
  finish: (result: Collected) => void,
): void {
  const result: Collected = {
    status: res.statusCode ?? 0,
    headers: res.headers,
    headersAt: performance.now() - start,
    events: [],
    comments: [],
    retries: [],
    ended: false,
  };
  let done = false;
  const stop = (ended: boolean): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    result.ended = ended;
    res.destroy();
    finish(result);
  };
  const timer = setTimeout(() => stop(false), Math.max(0, start + timeout - performance.now()));
  const parser = createParser({
    onEvent(message) {
      const time = performance.now();
      result.events.push({ event: message.event ?? 'message', data: message.data, id: message.id, at: time - start, time });
      if (options.count !== undefined && result.events.length >= options.count) stop(false);
    },
    onComment(comment) {
      result.comments.push(comment);
    },
    onRetry(retry) {
      result.retries.push(retry);
    },
  });
  const decoder = new TextDecoder();
  body.on('data', (chunk: Buffer | string) => {
    if (!done) parser.feed(typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
  });
  body.on('end', () => stop(true));
  body.on('error', () => stop(true));
  // A complete response still has bytes in the decompressor: wait for the body's 'end'.
  res.on('close', () => {
    if (!res.complete) stop(true);
  });
}
