// The mark guard() leaves on each request it sees, which the header watch (watch.ts) reads when a
// response turns out to be an event stream. It is kept on the request's raw headers array: an object
// of the request that Express does not give a new prototype, so that marking it costs next to
// nothing (a property added to the request or the response costs a new hidden class, several µs),
// and one that lives exactly as long as the request, whatever the framework. Not on `req.headers`:
// Node 20's fetch rejects a headers object with any symbol key, so `fetch(url, { headers:
// req.headers })` would throw on every request guard() saw. Non-enumerable, so that nothing that
// compares or prints the array sees it. Registered, so that every copy of the package reads the
// others' marks; the version moves with HeaderHooks and with where the mark is kept.
import type { IncomingMessage, OutgoingHttpHeader, ServerResponse } from 'node:http';

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

const kMark = Symbol.for('sse-guard.mark.v4');

type Marked = { [kMark]?: GuardMark };

/**
 * Marks the request `req` (or, failing that, its response `res`) as seen by `mark`; false, marking
 * nothing, when a guard saw it already (guard() mounted twice).
 */
export function markRequest(req: IncomingMessage, res: ServerResponse, mark: GuardMark): boolean {
  const raw = req.rawHeaders as string[] & Marked;
  if (raw?.[kMark] !== undefined) return false;
  try {
    Object.defineProperty(raw, kMark, { value: mark, configurable: true });
  } catch {
    // Raw headers someone froze (or a request made without them): the response carries the mark
    // then, at the price of a property.
    if ((res as ServerResponse & Marked)[kMark] !== undefined) return false;
    Object.defineProperty(res, kMark, { value: mark, configurable: true });
  }
  return true;
}

/** The guard that saw the request `res` answers, if any. */
export function markOf(res: ServerResponse): GuardMark | undefined {
  return (res.req?.rawHeaders as (string[] & Marked) | undefined)?.[kMark] ?? (res as ServerResponse & Marked)[kMark];
}
