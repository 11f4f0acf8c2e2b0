// Watches how a response's headers are set, so that an event stream is recognised whoever writes it,
// before its head goes out. Every path that sets a header ends in one of three methods of the
// response: setHeader (also behind setHeaders, Express's res.set/res.type/res.append, and the
// on-headers hook of compression and connect-timeout, which folds writeHead's headers in through
// it), appendHeader, and writeHead with headers given as an object or an array (which Node writes
// without calling setHeader when no header was set before). Wrapping those three on the response
// itself is what makes the mount order against compression() irrelevant: compression decides
// inside its writeHead hook, after the type and Cache-Control passed through our setHeader.
import type { OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { isClaimedBySse } from './claim.js';

type HeaderValue = OutgoingHttpHeader;

/** What the watcher tells its owner. */
export interface HeaderHooks {
  /** The Content-Type just became `text/event-stream`. Called at most once. */
  onEventStream(): void;
  /** For an event stream: rewrites a header value being set, or returns undefined to drop it. */
  rewrite(lowerName: string, value: HeaderValue): HeaderValue | undefined;
  /** For an event stream, just before the head is written. */
  beforeHead(): void;
  /** For an event stream, just after the head was written (the compressor has decided by then). */
  afterHead(): void;
}

/** True for a `Content-Type` value whose media type is `text/event-stream` (case and parameters ignored). */
export function isEventStreamType(value: unknown): boolean {
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string') return false;
  const semicolon = text.indexOf(';');
  return (semicolon === -1 ? text : text.slice(0, semicolon)).trim().toLowerCase() === 'text/event-stream';
}

/** The [name, value] pairs of writeHead's headers argument: an object, a 2D array, or a flat array. */
function headerPairs(headers: OutgoingHttpHeaders | readonly unknown[]): Array<[string, HeaderValue]> {
  if (!Array.isArray(headers)) return Object.entries(headers as OutgoingHttpHeaders).filter((e): e is [string, HeaderValue] => e[1] !== undefined);
  if (headers.length > 0 && Array.isArray(headers[0])) return (headers as Array<[string, HeaderValue]>).map(([k, v]) => [k, v]);
  const pairs: Array<[string, HeaderValue]> = [];
  for (let i = 0; i + 1 < headers.length; i += 2) pairs.push([String(headers[i]), headers[i + 1] as HeaderValue]);
  return pairs;
}

/** Whether writeHead's headers argument declares an event stream; allocates nothing, as it runs on every response. */
function declaresEventStream(headers: OutgoingHttpHeaders | readonly unknown[]): boolean {
  if (!Array.isArray(headers)) {
    for (const name in headers) if (name.length === 12 && name.toLowerCase() === 'content-type' && isEventStreamType((headers as OutgoingHttpHeaders)[name])) return true;
    return false;
  }
  if (headers.length > 0 && Array.isArray(headers[0])) return headers.some((pair: unknown[]) => String(pair[0]).toLowerCase() === 'content-type' && isEventStreamType(pair[1]));
  for (let i = 0; i + 1 < headers.length; i += 2) if (String(headers[i]).toLowerCase() === 'content-type' && isEventStreamType(headers[i + 1])) return true;
  return false;
}

const kWatch = Symbol('sse-guard.watch');

/** One response's watch: the methods it wrapped, and whether it is an event stream yet. */
class Watch {
  eventStream = false;
  constructor(
    readonly hooks: HeaderHooks,
    readonly setHeader: ServerResponse['setHeader'],
    readonly appendHeader: ServerResponse['appendHeader'] | undefined,
    readonly writeHead: (...args: unknown[]) => ServerResponse,
  ) {}

  seeType(res: ServerResponse): void {
    if (this.eventStream || isClaimedBySse(res) || !isEventStreamType(res.getHeader('content-type'))) return;
    this.eventStream = true;
    this.hooks.onEventStream();
  }
}

type Watched = ServerResponse & { [kWatch]: Watch };

// The wrappers are made once, not per response: a response only gets its Watch and three own
// properties pointing here, which is what keeps guard() within noise on routes that are not streams.
function watchedSetHeader(this: Watched, name: string, value: HeaderValue): Watched {
  const watch = this[kWatch];
  // Cheap test first: most responses set a handful of headers and are not event streams.
  if (watch.eventStream && typeof name === 'string') {
    const rewritten = watch.hooks.rewrite(name.toLowerCase(), value);
    if (rewritten === undefined) return this;
    value = rewritten;
  }
  watch.setHeader.call(this, name, value);
  if (!watch.eventStream && typeof name === 'string' && name.length === 12 && name.toLowerCase() === 'content-type') watch.seeType(this);
  return this;
}

function watchedAppendHeader(this: Watched, name: string, value: string | readonly string[]): Watched {
  const watch = this[kWatch];
  watch.appendHeader!.call(this, name, value);
  if (typeof name !== 'string') return this;
  const lower = name.toLowerCase();
  if (!watch.eventStream) {
    if (lower === 'content-type') watch.seeType(this);
    return this;
  }
  // Re-applied to the appended whole, through the rewrite (which may merge or drop it).
  const whole = this.getHeader(name);
  if (whole === undefined) return this;
  const rewritten = watch.hooks.rewrite(lower, whole);
  if (rewritten === undefined) this.removeHeader(name);
  else if (rewritten !== whole) watch.setHeader.call(this, name, rewritten);
  return this;
}

function watchedWriteHead(this: Watched, ...args: unknown[]): Watched {
  const watch = this[kWatch];
  if (!this.headersSent && !isClaimedBySse(this)) {
    const at = typeof args[1] === 'string' ? 2 : 1;
    const headers = args[at] as OutgoingHttpHeaders | unknown[] | undefined;
    if (headers !== null && typeof headers === 'object' && (watch.eventStream || declaresEventStream(headers))) {
      // An event stream: fold the headers in through the watched setHeader (as on-headers does), so
      // that they are merged and filtered like any other, and write the head with the status alone.
      // A name repeated in the array form (Set-Cookie) adds a value rather than replacing it.
      // Content-Type first: once it is known, every header after it is rewritten (a hop-by-hop one
      // dropped on HTTP/2), whatever order the producer gave them in.
      const seen = new Set<string>();
      const pairs = headerPairs(headers).sort(([a], [b]) => Number(b.toLowerCase() === 'content-type') - Number(a.toLowerCase() === 'content-type'));
      for (const [name, value] of pairs) {
        const lower = name.toLowerCase();
        if (seen.has(lower)) this.appendHeader(name, value as string | string[]);
        else this.setHeader(name, value);
        seen.add(lower);
      }
      args.length = at;
    }
    if (watch.eventStream) watch.hooks.beforeHead();
  }
  const result = watch.writeHead.apply(this, args);
  if (watch.eventStream) watch.hooks.afterHead();
  return result as Watched;
}

/**
 * Installs the watcher on `res` (own properties, as compression does); a response sse() writes is
 * passed through. Returns false, installing nothing, when `res` is watched already (guard() mounted twice).
 */
export function watchHeaders(res: ServerResponse, hooks: HeaderHooks): boolean {
  if ((res as Partial<Watched>)[kWatch] !== undefined) return false;
  const appendHeader = typeof res.appendHeader === 'function' ? res.appendHeader : undefined;
  (res as Watched)[kWatch] = new Watch(hooks, res.setHeader, appendHeader, res.writeHead as (...args: unknown[]) => ServerResponse);
  res.setHeader = watchedSetHeader as ServerResponse['setHeader'];
  if (appendHeader !== undefined) res.appendHeader = watchedAppendHeader as ServerResponse['appendHeader'];
  res.writeHead = watchedWriteHead as ServerResponse['writeHead'];
  return true;
}
