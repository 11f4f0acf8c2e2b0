// The mark guard() leaves on each request it sees, which the header watch (watch.ts) reads when a
// response turns out to be an event stream. It is kept on the request's headers object: the one
// object of a request that Express does not give a new prototype, so that marking it costs next to
// nothing (a property added to the request or the response costs a new hidden class, several µs),
// and one that lives exactly as long as the request, whatever the framework. Non-enumerable, so
// that copying the headers (a proxy does) does not copy it. Registered, so that every copy of the
// package reads the others' marks; the version moves with HeaderHooks.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeader, ServerResponse } from 'node:http';

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

const kMark = Symbol.for('sse-guard.mark.v3');

type Marked = IncomingHttpHeaders & { [kMark]?: GuardMark };
type MarkedResponse = ServerResponse & { [kMark]?: GuardMark };

/** Marks the request whose headers these are (or, failing that, its response `res`) as seen by `mark`; false, marking nothing, when a guard saw it already (guard() mounted twice). */
export function markRequest(headers: IncomingHttpHeaders, res: ServerResponse, mark: GuardMark): boolean {
  if ((headers as Marked)[kMark] !== undefined) return false;
  try {
    Object.defineProperty(headers, kMark, { value: mark, configurable: true });
  } catch {
    // Headers someone froze: the response carries the mark then, at the price of a property.
    if ((res as MarkedResponse)[kMark] !== undefined) return false;
    Object.defineProperty(res, kMark, { value: mark, configurable: true });
  }
  return true;
}

/** The guard that saw the request `res` answers, if any. */
export function markOf(res: ServerResponse): GuardMark | undefined {
  return (res.req?.headers as Marked | undefined)?.[kMark] ?? (res as MarkedResponse)[kMark];
}
