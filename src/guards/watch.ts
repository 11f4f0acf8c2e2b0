// Watches how a response's headers are set, so that an event stream is recognised whoever writes it,
// before its head goes out. Every path that sets a header ends in one of three methods of the
// response: setHeader (also behind setHeaders, Express's res.set/res.type/res.append, and the
// on-headers hook of compression and connect-timeout, which folds writeHead's headers in through
// it), appendHeader, and writeHead with headers given as an object or an array (which Node writes
// without calling setHeader when no header was set before). Watching those is what makes the mount
// order against compression() irrelevant: compression decides inside its writeHead hook, after the
// type and Cache-Control passed through setHeader.
//
// Cost. Express gives every response a prototype of its own app (Object.setPrototypeOf), after
// which V8 makes each property added to it cost a new hidden class: several µs, most of a small
// JSON route's budget, and so does each read of a property there that V8's caches miss. So a
// response that is not an event stream gets no property and no property read: the three methods
// are wrapped once, on the prototypes of Node's two response classes, the wrappers only look at the
// Content-Type going by, and what is known of a response is kept in WeakMaps. guard() marks the
// responses it saw (see mark.ts); the wrappers act on a response only once it is marked and its type
// is text/event-stream, and from then on its own wrappers (own properties, as compression installs
// its own) rewrite what the producer sets.
import http, { type OutgoingHttpHeader, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import { isClaimedBySse } from './claim.js';
import { isEventStreamType } from '../core/media-type.js';
import { markOf, openMarks, sharedWeakMap, type HeaderHooks } from './mark.js';

type HeaderValue = OutgoingHttpHeader;

const isContentType = (name: unknown): boolean => typeof name === 'string' && name.length === 12 && name.toLowerCase() === 'content-type';

/** The [name, value] pairs of writeHead's headers argument: an object, a 2D array, or a flat array. */
function headerPairs(headers: OutgoingHttpHeaders | readonly unknown[]): Array<[string, HeaderValue]> {
  if (!Array.isArray(headers)) return Object.entries(headers as OutgoingHttpHeaders) as Array<[string, HeaderValue]>;
  if (headers.length > 0 && Array.isArray(headers[0])) return (headers as Array<[string, HeaderValue]>).map(([k, v]) => [k, v]);
  const pairs: Array<[string, HeaderValue]> = [];
  for (let i = 0; i + 1 < headers.length; i += 2) pairs.push([String(headers[i]), headers[i + 1] as HeaderValue]);
  return pairs;
}

/**
 * Whether Node's HTTP/1 writeHead takes this call, checked as it checks it: the status, the reason
 * phrase, a flat array's length, then each header name and value (each of an array's). HTTP/2's
 * compat writeHead takes any status and sets its headers before checking anything: always folded.
 */
function takenByNode(res: ServerResponse, args: unknown[], headers: OutgoingHttpHeaders | readonly unknown[], pairs: ReadonlyArray<[string, HeaderValue]>): boolean {
  if (!(res instanceof http.ServerResponse)) return true;
  const status = (args[0] as number) | 0;
  if (status < 100 || status > 999) return false;
  if (Array.isArray(headers) && !Array.isArray(headers[0]) && headers.length % 2 !== 0) return false;
  try {
    if (typeof args[1] === 'string') http.validateHeaderValue('reason phrase', args[1]);
    for (const [name, value] of pairs) {
      http.validateHeaderName(name);
      for (const one of Array.isArray(value) ? value : [value]) http.validateHeaderValue(name, one as string);
    }
    return true;
  } catch {
    return false;
  }
}

/** Whether writeHead's headers argument declares an event stream; allocates nothing, as it runs on every response given headers. */
function declaresEventStream(headers: OutgoingHttpHeaders | readonly unknown[]): boolean {
  if (!Array.isArray(headers)) {
    for (const name in headers) if (isContentType(name) && isEventStreamType((headers as OutgoingHttpHeaders)[name])) return true;
    return false;
  }
  if (headers.length > 0 && Array.isArray(headers[0])) return headers.some((pair: unknown[]) => isContentType(String(pair[0])) && isEventStreamType(pair[1]));
  for (let i = 0; i + 1 < headers.length; i += 2) if (isContentType(String(headers[i])) && isEventStreamType(headers[i + 1])) return true;
  return false;
}

// Registered, as the wrappers are shared by every copy of the package in the process: whichever
// copy installed them serves the responses the others marked. The version moves with HeaderHooks.
const kInstalled = Symbol.for('sse-guard.watch-installed.v5');

/** An event stream's watch: the methods its own wrappers call on to, and the guard's hooks. */
interface Watch {
  readonly hooks: HeaderHooks;
  readonly setHeader: ServerResponse['setHeader'];
  readonly appendHeader: ServerResponse['appendHeader'] | undefined;
  readonly writeHead: (...args: unknown[]) => unknown;
}

// The event streams being watched, and their watches; opened by installWatch(), before any wrapper reads it.
let watches: WeakMap<ServerResponse, Watch>;

/** Makes `res` an event stream of the guard that marked it, if one did: its own wrappers from now on, then the guard's hook. */
function noticeEventStream(res: ServerResponse): void {
  if (watches.has(res) || isClaimedBySse(res)) return;
  const mark = markOf(res);
  if (mark === undefined) return;
  const hooks = mark.hooksFor(res.req, res);
  const appendHeader = typeof res.appendHeader === 'function' ? res.appendHeader : undefined;
  watches.set(res, { hooks, setHeader: res.setHeader, appendHeader, writeHead: res.writeHead as Watch['writeHead'] });
  res.setHeader = streamSetHeader as ServerResponse['setHeader'];
  if (appendHeader !== undefined) res.appendHeader = streamAppendHeader as ServerResponse['appendHeader'];
  res.writeHead = streamWriteHead as ServerResponse['writeHead'];
  hooks.onEventStream();
}

// An event stream's own methods, in front of every layer mounted before the type was set: every
// header value goes through the guard's rewrite (which may merge or drop it), and the guard hears
// when the producer starts its head, before any layer's writeHead hook (a compressor's) runs.
function streamSetHeader(this: ServerResponse, name: string, value: HeaderValue): ServerResponse {
  const watch = watches.get(this)!;
  // An undefined value goes to Node as it is, which refuses it.
  if (typeof name === 'string' && value !== undefined) {
    const rewritten = watch.hooks.rewrite(name.toLowerCase(), value);
    if (rewritten === undefined) return this;
    value = rewritten;
  }
  watch.setHeader.call(this, name, value);
  return this;
}

function streamAppendHeader(this: ServerResponse, name: string, value: string | readonly string[]): ServerResponse {
  const watch = watches.get(this)!;
  watch.appendHeader!.call(this, name, value);
  if (typeof name !== 'string') return this;
  // Re-applied to the appended whole, through the rewrite.
  const whole = this.getHeader(name);
  if (whole === undefined) return this;
  const rewritten = watch.hooks.rewrite(name.toLowerCase(), whole);
  if (rewritten === undefined) this.removeHeader(name);
  else if (rewritten !== whole) watch.setHeader.call(this, name, rewritten);
  return this;
}

function streamWriteHead(this: ServerResponse, ...args: unknown[]): unknown {
  const watch = watches.get(this)!;
  if (!this.headersSent) {
    foldHeadersArgument(this, args);
    watch.hooks.headStarts();
  }
  const result = watch.writeHead.apply(this, args);
  // Also here: a layer below may have written the head with a writeHead of Node's it saved before
  // the prototype's was wrapped.
  if (this.headersSent) watch.hooks.afterHead();
  return result;
}

/** Where writeHead's headers argument is, as Node reads it: after a string reason phrase, or in its place. */
const headersAt = (args: unknown[]): number => (typeof args[1] === 'string' || args[2] != null ? 2 : 1);

/**
 * Folds writeHead's headers in through setHeader (as on-headers does), so that they are merged and
 * filtered like any other; the head is then written with the status alone. A name repeated in the
 * array form (Set-Cookie) keeps all its values. Content-Type first: once it is known, every header
 * after it is rewritten (a hop-by-hop one dropped on HTTP/2), whatever order the producer gave them in.
 */
function foldHeadersArgument(res: ServerResponse, args: unknown[]): void {
  const at = headersAt(args);
  const headers = args[at] as OutgoingHttpHeaders | unknown[] | undefined;
  if (headers === null || typeof headers !== 'object') return;
  // Only for an event stream, or a response of a guard() that this argument makes one.
  if (!watches.has(res) && !(declaresEventStream(headers) && markOf(res) !== undefined && !isClaimedBySse(res))) return;
  const pairs = headerPairs(headers);
  // A head Node refuses is left to Node, which throws as it would without the guard: folded, its
  // headers would stay set for the response the producer sends instead (an error page, say).
  if (!takenByNode(res, args, headers, pairs)) return;
  // One setHeader per name, a repeated one's values gathered (appendHeader is missing on HTTP/2
  // before Node 20.12): as Node does, they replace an earlier value of that name.
  const byName = new Map<string, [string, HeaderValue[]]>();
  for (const [name, value] of pairs) {
    const lower = name.toLowerCase();
    const entry = byName.get(lower);
    if (entry === undefined) byName.set(lower, [name, [value]]);
    else entry[1].push(value);
  }
  const entries = [...byName.values()].sort(([a], [b]) => Number(isContentType(b)) - Number(isContentType(a)));
  for (const [name, values] of entries) res.setHeader(name, values.length === 1 ? values[0]! : (values.flat() as string[]));
  // The status, and a reason phrase if there is one: what Node would otherwise read as headers goes.
  args.length = typeof args[1] === 'string' ? 2 : 1;
}

type Method = (this: ServerResponse, ...args: unknown[]) => unknown;
type Prototype = Record<string, Method | undefined> & { [kInstalled]?: true };

/** Wraps the three methods of one response class (those it has), once per process. */
function install(proto: Prototype): void {
  if (Object.prototype.hasOwnProperty.call(proto, kInstalled)) return;
  Object.defineProperty(proto, kInstalled, { value: true });
  // Node's methods: the prototype's own, or else (setHeader and appendHeader of HTTP/1 live on
  // OutgoingMessage) looked up on the parent at each call, so that a later patch there still runs.
  const parent = Object.getPrototypeOf(proto) as Prototype;
  const own = (name: string): Method | undefined => (Object.prototype.hasOwnProperty.call(proto, name) ? proto[name] : undefined);

  const ownSetHeader = own('setHeader');
  proto.setHeader = function setHeader(this: ServerResponse, name: string, value: HeaderValue) {
    const result = (ownSetHeader ?? parent.setHeader!).call(this, name, value);
    if (isEventStreamType(value) && isContentType(name)) noticeEventStream(this);
    return result;
  } as Method;
  // Http2ServerResponse has it from Node 20.12 only.
  if (typeof proto.appendHeader === 'function') {
    const ownAppendHeader = own('appendHeader');
    proto.appendHeader = function appendHeader(this: ServerResponse, name: string, value: string | readonly string[]) {
      const result = (ownAppendHeader ?? parent.appendHeader!).call(this, name, value);
      if (isContentType(name) && isEventStreamType(this.getHeader('content-type'))) noticeEventStream(this);
      return result;
    } as Method;
  }
  // The innermost writeHead, whatever wraps it (compression's hook, connect-timeout's): what goes
  // out is final here, and a compressor has decided by now. Both classes have their own.
  const nodeWriteHead = own('writeHead')!;
  proto.writeHead = function writeHead(this: ServerResponse, statusCode: unknown) {
    // Not a stream, and only the status given (Node's implicit head): what nearly every response takes.
    if (arguments.length === 1 && !watches.has(this)) return nodeWriteHead.call(this, statusCode);
    const args = Array.prototype.slice.call(arguments) as unknown[];
    if (!this.headersSent) foldHeadersArgument(this, args);
    const result = nodeWriteHead.apply(this, args);
    // Read again: Node's writeHead sets a headers argument through setHeader once any header was
    // set before, so the type may have been seen inside it.
    watches.get(this)?.hooks.afterHead();
    return result;
  };
}

/** Wraps setHeader, appendHeader and writeHead of Node's HTTP/1 and HTTP/2 responses (once; idempotent). */
export function installWatch(): void {
  openMarks();
  watches ??= sharedWeakMap(Symbol.for('sse-guard.watches.v5'));
  install(http.ServerResponse.prototype as unknown as Prototype);
  install(http2.Http2ServerResponse.prototype as unknown as Prototype);
}
