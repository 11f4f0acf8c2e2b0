// The mark sse() leaves on a response it writes itself, so that guard() leaves it alone: one set of
// headers, one heartbeat, one entry in stats(). A registered symbol, so that the ESM and CommonJS
// copies of the package agree on it.
import type { ServerResponse } from 'node:http';

const claimed = Symbol.for('sse-guard.claimed-by-sse');

/** Marks `res` as written by sse(). */
export function claimForSse(res: ServerResponse): void {
  (res as ServerResponse & { [claimed]?: true })[claimed] = true;
}

/** True when sse() writes this response. */
export function isClaimedBySse(res: object): boolean {
  return (res as { [claimed]?: true })[claimed] === true;
}
