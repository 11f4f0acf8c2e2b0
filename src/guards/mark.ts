// The mark guard() leaves on each response it sees, which the header watch (watch.ts) reads when a
// response turns out to be an event stream. Kept in a WeakMap, not as a property: Express gives every
// request and response a prototype of its own app, after which V8 misses its caches on each property
// read or added there, at a few thousand instructions apiece, which is most of what a middleware
// costs a small JSON route (measured: a mark on `req.rawHeaders` cost three such misses and a runtime
// call). A WeakMap touches nothing the app can see (a symbol on `req.headers` made Node 20's fetch
// throw on it) and lives exactly as long as the response. Shared, so that every copy of the package
// reads the others' marks; the version moves with GuardMark and HeaderHooks.
import http, { type IncomingMessage, type OutgoingHttpHeader, type ServerResponse } from 'node:http';

/** What the watch tells the guard of one response that turned out to be an event stream. */
export interface HeaderHooks {
  /** The Content-Type just became `text/event-stream`. Called at most once. */
  onEventStream(): void;
  /** Rewrites a header value being set, or returns undefined to drop it. */
  rewrite(lowerName: string, value: OutgoingHttpHeader): OutgoingHttpHeader | undefined;
  /** The producer starts writing the head, its own headers set (unless the type was set inside another layer's writeHead hook). */
  headStarts(): void;
  /** The head was written (a compressor has decided by then). Called at least once; only the first call counts. */
  afterHead(): void;
}

/** A guard(): makes the hooks for one of the responses it saw, once that response is an event stream. */
export interface GuardMark {
  hooksFor(req: IncomingMessage, res: ServerResponse): HeaderHooks;
}

/**
 * A WeakMap shared, under `key`, by every copy of the package in the process and by every realm
 * (each of Jest's test files has a global object of its own): kept on Node's own response
 * prototype, which all of them share, as they share the wrappers installed there.
 */
export function sharedWeakMap<K extends object, V>(key: symbol): WeakMap<K, V> {
  const holder = http.ServerResponse.prototype as unknown as { [key: symbol]: WeakMap<K, V> };
  if (!Object.prototype.hasOwnProperty.call(holder, key)) Object.defineProperty(holder, key, { value: new WeakMap<K, V>() });
  return holder[key];
}

// Opened by the first guard(), so that importing the package changes nothing of Node's.
let marks: WeakMap<ServerResponse, GuardMark>;

/** Opens the marks every copy of the package shares; before any response is marked or looked up. */
export function openMarks(): void {
  marks ??= sharedWeakMap(Symbol.for('sse-guard.marks.v5'));
}

/** Marks the response `res` as seen by `mark`; false, marking nothing, when a guard saw it already (guard() mounted twice). */
export function markResponse(res: ServerResponse, mark: GuardMark): boolean {
  if (marks.has(res)) return false;
  marks.set(res, mark);
  return true;
}

/** The guard that saw the response `res`, if any. */
export function markOf(res: ServerResponse): GuardMark | undefined {
  return marks.get(res);
}
