// An HTTP/1.1 response queued behind another on its connection (pipelining) has no socket until its
// turn. If the connection closes before then, Node 20 emits 'close' on its request only: the
// response never closes and is never marked destroyed, so a stream on it listens to the connection.
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Whether `res` waits behind another response on `socket`, its connection (null on HTTP/2, where streams are not queued). */
export function queuedBehind(res: ServerResponse, socket: Socket | null): socket is Socket {
  return socket !== null && res.socket == null;
}

/** The HTTP/2 stream below a compat response, where its `destroyed`, reset code, backlog and 'drain' are. */
export type Http2Stream = NodeJS.EventEmitter & { readonly destroyed: boolean; readonly rstCode?: number; readonly writableNeedDrain: boolean };

/** The HTTP/2 stream of `res`; undefined on HTTP/1. */
export const http2StreamOf = (res: ServerResponse): Http2Stream | undefined => (res as { stream?: Http2Stream }).stream;

/**
 * Whether the client already left a response that a stream is about to take over: an earlier
 * (async) middleware ran while it went, and its 'close' has fired, or never will (queued).
 */
export function goneBefore(res: ServerResponse, socket: Socket | null): boolean {
  // An HTTP/2 compat response has no `destroyed` of its own: its stream has.
  return res.destroyed === true || http2StreamOf(res)?.destroyed === true || (queuedBehind(res, socket) && socket.destroyed);
}
