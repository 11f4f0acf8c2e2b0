// Behind compression() in pass-through (no-transform), every write would go through its res.write
// wrapper, which then only calls the res.write it found: for an event stream that is Node's own,
// unless a middleware upstream of compression wrapped it too (to log, count or meter). Writing
// around the wrapper is then byte for byte what writing through it does, at a quarter of the cost
// per event (bench/README.md); but only when nothing else sits in between, since a wrapper that does
// work must see every write. Known once per stream, by the call stack of its first write.
import { ServerResponse } from 'node:http';

const nativeSend = (ServerResponse.prototype as unknown as { _send: (...args: unknown[]) => unknown })._send;
// compression's wrapper, by its file: `.../compression/index.js` (any install path, any OS).
const COMPRESSION_FILE = /[\\/]compression[\\/]index\.js:\d+:\d+\)?$/;
const NODE_OUTGOING = /\(node:_http_outgoing:\d+:\d+\)$/;
// The probe, Node's write (two frames in Node 20), compression's, ours, and room for one more in Node's.
const FRAMES = 8;

/**
 * Runs `write` (a write through `res.write`) once, and answers `res.write` when that call went
 * through compression's wrapper straight into Node's own write, with no other function between;
 * otherwise (another wrapper, a stack too short to tell, any surprise) undefined.
 */
export function probePassThrough(res: ServerResponse, write: () => void): unknown {
  const wrapper = res.write;
  const target = res as unknown as { _send?: (...args: unknown[]) => unknown };
  // Someone's own _send on this response is theirs to keep: write through, as without the probe.
  if (Object.hasOwn(target, '_send')) {
    write();
    return undefined;
  }
  let stack: string | undefined;
  // An own property shadows Node's method for this one call; the first piece of the write records
  // the stack and puts Node's method back.
  target._send = function probe(this: unknown, ...args: unknown[]) {
    if (stack === undefined) {
      // Enough frames to see past compression's, whatever the app set (0 hides them, a large limit
      // costs a long string per stream).
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = FRAMES;
      stack = new Error().stack;
      Error.stackTraceLimit = limit;
    }
    delete target._send;
    return nativeSend.apply(this, args);
  };
  try {
    write();
  } finally {
    delete target._send;
  }
  if (stack === undefined || res.write !== wrapper) return undefined;
  // Frames under the probe: Node's write (one or more frames in _http_outgoing), then its callers.
  const frames = stack.split('\n').slice(2);
  let at = 0;
  while (at < frames.length && NODE_OUTGOING.test(frames[at]!)) at++;
  if (at === 0 || at + 1 >= frames.length) return undefined;
  // Exactly one frame between Node's write and ours (stream.js / stream.ts, which made the write).
  return COMPRESSION_FILE.test(frames[at]!) && /[\\/]stream\.[jt]s:\d+:\d+\)?$/.test(frames[at + 1]!) ? wrapper : undefined;
}
