// relay(): re-send an upstream event stream, parsed per spec and serialized again by this stream.
import { SseGuardError } from '../core/errors.js';
import { Backlog } from './backlog.js';
import { isEventStreamType } from '../core/media-type.js';
import type { EventMap, SendArg } from '../core/types.js';
import { pipe, type Sink } from './pipe.js';
import { openSource, type Pull, type Source } from './source.js';

/** One event of the upstream, as parsed (WHATWG HTML § 9.2.6): comments and `retry` are not events. */
export interface UpstreamEvent {
  data: string;
  /** The upstream's `event:` field, when the event had one. */
  event?: string;
  /** The upstream's `id:` field, when the event had one. */
  id?: string;
}

/** A fetch `Response` (checked: 2xx and `text/event-stream`), or a body of bytes or text taken as is. */
export type Upstream = UpstreamResponse | Source<Uint8Array | string>;

/** The part of a fetch `Response` relay() reads. */
export interface UpstreamResponse {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  readonly body: ReadableStream<Uint8Array> | null;
}

/** Options of `stream.relay()`. */
export interface RelayOptions<M extends EventMap> {
  /** Rewrites an upstream event into the event to send; `undefined` drops it. Default: sent as parsed. */
  map?: (event: UpstreamEvent) => SendArg<M> | undefined;
}

type Parser = typeof import('eventsource-parser');
type Retry = { retry: number };
type Item = UpstreamEvent | Retry;

// An upstream that never ends its event (one endless line) must not grow this process without bound.
const MAX_EVENT_CHARS = 8 * 1024 * 1024;
const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

// Loaded on first use, so that sse-guard itself runs without its optional peer.
function loadParser(): Parser {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('eventsource-parser') as Parser;
  } catch (cause) {
    throw new SseGuardError(
      'ERR_SSE_MISSING_PEER',
      `relay() parses the upstream with eventsource-parser, an optional peer dependency that is not installed: npm install eventsource-parser`,
      { cause },
    );
  }
}

function isResponse(upstream: Upstream): upstream is UpstreamResponse {
  const candidate = upstream as Partial<UpstreamResponse>;
  return typeof candidate.status === 'number' && typeof candidate.headers?.get === 'function';
}

function isRetry(item: Item): item is Retry {
  return (item as Partial<UpstreamEvent>).data === undefined;
}

function refusal(response: UpstreamResponse): string | undefined {
  const type = response.headers.get('content-type');
  if (response.status >= 200 && response.status <= 299 && isEventStreamType(type)) return undefined;
  const shown = type === null ? 'no Content-Type' : `Content-Type ${JSON.stringify(type.slice(0, 100))}`;
  return `relay() needs a 2xx text/event-stream upstream, got status ${response.status} with ${shown}; check the upstream URL and that the request asks for a stream (Accept: text/event-stream, stream: true).`;
}

/** The upstream's bytes as parsed events and retry fields, in order; return() cancels the body at once. */
class UpstreamEvents implements AsyncIterableIterator<Item> {
  readonly #chunks: Pull<Uint8Array | string>;
  readonly #decoder = new TextDecoder();
  readonly #parser: ReturnType<Parser['createParser']>;
  #queue: Item[] = [];
  #head = 0;
  // What the parser holds: bounded before each chunk is fed.
  readonly #backlog = new Backlog();
  #done = false;

  constructor(chunks: Pull<Uint8Array | string>, parser: Parser) {
    this.#chunks = chunks;
    this.#parser = parser.createParser({
      onEvent: ({ data, event, id }) => {
        const parsed: UpstreamEvent = { data };
        if (event !== undefined) parsed.event = event;
        if (id !== undefined) parsed.id = id;
        this.#queue.push(parsed);
      },
      onRetry: (retry) => {
        this.#queue.push({ retry });
      },
      // Comments are dropped: this stream's own heartbeats apply.
    });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Item>> {
    while (this.#head === this.#queue.length) {
      // An event without its closing blank line when the body ends is discarded, as a client does.
      if (this.#done) return DONE;
      this.#queue = [];
      this.#head = 0;
      const step = await this.#chunks.next();
      if (step.done === true) {
        this.#done = true;
        continue;
      }
      const text = typeof step.value === 'string' ? step.value : this.#decoder.decode(step.value, { stream: true });
      // The parser holds an unfinished line (a comment's too) and the undispatched event's fields.
      this.#backlog.add(text);
      if (this.#backlog.line > MAX_EVENT_CHARS || this.#backlog.event > MAX_EVENT_CHARS) {
        throw new SseGuardError('ERR_SSE_UPSTREAM', `the upstream sent more than ${MAX_EVENT_CHARS} characters without ending an event; it is not an event stream, or one event is too large to relay.`);
      }
      this.#parser.feed(text);
    }
    return { done: false, value: this.#queue[this.#head++] as Item };
  }

  return(): Promise<IteratorResult<Item>> {
    this.#done = true;
    this.#chunks.cancel();
    return Promise.resolve(DONE);
  }
}

/** Re-sends the events of `upstream` to `sink`; resolves to the number of events sent. See `SseStream.relay`. */
export function relay<M extends EventMap>(
  sink: Sink<M> & { retry(ms: number): boolean },
  upstream: Upstream,
  options: RelayOptions<M> = {},
): Promise<number> {
  const { map } = options;
  let body: Source<Uint8Array | string> | null = null;
  try {
    if (isResponse(upstream)) {
      body = upstream.body;
      const refused = refusal(upstream);
      if (refused !== undefined) throw new SseGuardError('ERR_SSE_UPSTREAM', refused);
    } else {
      body = upstream;
    }
    if (map !== undefined && typeof map !== 'function') {
      throw new SseGuardError('ERR_SSE_INVALID_OPTION', `relay()'s map must be a function from upstream event to event, got ${typeof map}.`);
    }
    const parser = loadParser();
    const chunks = openSource(body ?? []);
    body = null;
    const toEvent = (item: Item): SendArg<M> | undefined => {
      // A retry field is forwarded as it comes, between the events it came between.
      if (isRetry(item)) {
        sink.retry(item.retry);
        return undefined;
      }
      return map === undefined ? (item as SendArg<M>) : map(item);
    };
    return pipe(sink, new UpstreamEvents(chunks, parser), { map: toEvent });
  } catch (error) {
    // Refused before reading: release the upstream connection rather than leave it open.
    if (body !== null) {
      try {
        openSource(body).cancel();
      } catch {
        // not a source: the error above says so
      }
    }
    return Promise.reject(error);
  }
}
