// relay(): re-send an upstream event stream, parsed per spec and serialized again by this stream.
import { SseGuardError } from '../core/errors.js';
import { Backlog } from './backlog.js';
import { isEventStreamType } from '../core/media-type.js';
import type { EventMap, SendArg } from '../core/types.js';
import { pipe, type Mapped, type Sink } from './pipe.js';
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
  /** Rewrites an upstream event into the event to send (or a promise of it: awaited); `undefined` drops it. Default: sent as parsed. */
  map?: (event: UpstreamEvent) => Mapped<M>;
}

type Parser = typeof import('eventsource-parser');
type Retry = { retry: number };
/** A block with an `id` and no data: the client's Last-Event-ID moves, no event is dispatched. */
type IdOnly = { lastEventId: string };
type Item = UpstreamEvent | Retry | IdOnly;

/** Internal: writes an `id:` field alone, as an upstream's id-only block (see IdOnly). */
export const sendIdOnly = Symbol('sse-guard.sendIdOnly');

/** What relay() drives: a pipe() sink that also writes `retry:` fields and id-only blocks. */
export type RelaySink<M extends EventMap> = Sink<M> & { retry(ms: number): boolean; [sendIdOnly](id: string): boolean };

const LF = 0x0a;
const CR = 0x0d;
const BOM = 0xfeff;
const COLON = 0x3a;
const SPACE = 0x20;
const LINE_END = /\r\n|\r|\n/;
const HAS_LINE_END = /[\r\n]/;

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

const RELAY_TAKES = 'relay() takes a fetch Response, or its body (a ReadableStream, or an iterable of bytes or text)';

function isResponse(upstream: Upstream): upstream is UpstreamResponse {
  const candidate = upstream as Partial<UpstreamResponse> | null | undefined;
  return typeof candidate?.status === 'number' && typeof candidate.headers?.get === 'function';
}

function refusal(response: UpstreamResponse): string | undefined {
  const type = response.headers.get('content-type');
  if (response.status >= 200 && response.status <= 299 && isEventStreamType(type)) return undefined;
  const shown = type === null ? 'no Content-Type' : `Content-Type ${JSON.stringify(type.slice(0, 100))}`;
  return `relay() needs a 2xx text/event-stream upstream, got status ${response.status} with ${shown}; check the upstream URL and that the request asks for a stream (Accept: text/event-stream, stream: true).`;
}

/**
 * The upstream's bytes as parsed events, retry fields and id-only blocks, in order; return()
 * cancels the body at once. Lines are split here and fed to the parser whole: a CR that ends a
 * chunk ends its line at once (the parser would hold it, and with it the event, until more bytes
 * came, and lose it at the end of the body), and a block with an id and no data, which the parser
 * drops, still moves the client's Last-Event-ID.
 */
class UpstreamEvents implements AsyncIterableIterator<Item> {
  readonly #chunks: Pull<Uint8Array | string>;
  // The BOM is stripped below, from text and bytes alike.
  readonly #decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  readonly #parser: ReturnType<Parser['createParser']>;
  #queue: Item[] = [];
  #head = 0;
  // What is held (the unfinished line here, the event's fields in the parser): bounded before each chunk.
  readonly #backlog = new Backlog();
  #done = false;
  #begun = false;
  // The last chunk ended in CR: an LF opening the next one is the same line end.
  #afterCr = false;
  #partial = '';
  // The id and whether a data line came, in the block not yet ended.
  #blockId: string | undefined;
  #blockData = false;

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
      this.#backlog.add(text);
      if (this.#backlog.line > MAX_EVENT_CHARS || this.#backlog.event > MAX_EVENT_CHARS) {
        throw new SseGuardError('ERR_SSE_UPSTREAM', `the upstream sent more than ${MAX_EVENT_CHARS} characters without ending an event; it is not an event stream, or one event is too large to relay.`);
      }
      this.#feed(text);
    }
    return { done: false, value: this.#queue[this.#head++] as Item };
  }

  #feed(text: string): void {
    if (text === '') return;
    // One U+FEFF opening the stream is not content (WHATWG HTML § 9.2.5).
    if (!this.#begun) {
      this.#begun = true;
      if (text.charCodeAt(0) === BOM) text = text.slice(1);
    }
    if (this.#afterCr && text.charCodeAt(0) === LF) text = text.slice(1);
    this.#afterCr = false;
    if (text === '') return;
    this.#afterCr = text.charCodeAt(text.length - 1) === CR;
    // Only the new text is searched: a long line arriving in small chunks is joined once, not per chunk.
    if (!HAS_LINE_END.test(text)) {
      this.#partial += text;
      return;
    }
    const lines = text.includes('\r') ? text.split(LINE_END) : text.split('\n');
    lines[0] = this.#partial + lines[0]!;
    this.#partial = lines.pop()!;
    // The complete lines go to the parser in one call, their ends made LF; it is called between
    // them only where an id-only block ends, so that the queue keeps the upstream's order.
    let batch = '';
    for (const line of lines) {
      if (line !== '') {
        this.#field(line);
        batch += `${line}\n`;
        continue;
      }
      batch += '\n';
      const idOnly = this.#blockData ? undefined : this.#blockId;
      this.#blockId = undefined;
      this.#blockData = false;
      if (idOnly === undefined) continue;
      this.#parser.feed(batch);
      batch = '';
      this.#queue.push({ lastEventId: idOnly });
    }
    if (batch !== '') this.#parser.feed(batch);
  }

  // Notes the fields the parser keeps to itself: whether the block has data, and its id.
  #field(line: string): void {
    if (line.startsWith('data') && (line.length === 4 || line.charCodeAt(4) === COLON)) this.#blockData = true;
    else if (line.startsWith('id') && (line.length === 2 || line.charCodeAt(2) === COLON)) {
      const value = line.slice(line.charCodeAt(3) === SPACE ? 4 : 3);
      // An id with NUL is ignored, as a client ignores it.
      if (!value.includes('\0')) this.#blockId = value;
    }
  }

  return(): Promise<IteratorResult<Item>> {
    this.#done = true;
    this.#chunks.cancel();
    return Promise.resolve(DONE);
  }
}

/** Re-sends the events of `upstream` to `sink`; resolves to the number of events sent. See `SseStream.relay`. */
export function relay<M extends EventMap>(sink: RelaySink<M>, upstream: Upstream, options?: RelayOptions<M> | null): Promise<number> {
  const map = options?.map;
  let body: Source<Uint8Array | string> | null = null;
  try {
    if (isResponse(upstream)) {
      body = upstream.body;
      const refused = refusal(upstream);
      if (refused !== undefined) throw new SseGuardError('ERR_SSE_UPSTREAM', refused);
    } else {
      body = upstream;
      if (body == null) throw new SseGuardError('ERR_SSE_INVALID_OPTION', `${RELAY_TAKES}, got ${body === null ? 'null' : 'undefined'}.`);
    }
    if (map !== undefined && typeof map !== 'function') {
      throw new SseGuardError('ERR_SSE_INVALID_OPTION', `relay()'s map must be a function from upstream event to event, got ${typeof map}.`);
    }
    const parser = loadParser();
    const chunks = openSource(body ?? [], RELAY_TAKES);
    body = null;
    // retry fields and id-only blocks go as they come, between the events they came between, and
    // wait for the client as events do.
    const paced = (below: boolean): undefined | Promise<undefined> => (below ? undefined : sink.ready().then(() => undefined));
    const toEvent = (item: Item): Mapped<M> => {
      if ('retry' in item) return paced(sink.retry(item.retry));
      if ('lastEventId' in item) return paced(sink[sendIdOnly](item.lastEventId));
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
