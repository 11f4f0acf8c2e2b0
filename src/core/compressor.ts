// Where a compressor holds the bytes it was given. `compression` takes res.on('drain') and hands the
// listener to its zlib stream, returning that stream: its two queues (input not yet compressed, and
// output the socket has not taken) are then read as part of the response's backlog. Another
// compressor may keep its queue to itself, and is not found here.
import type { ServerResponse } from 'node:http';

/** A compressor's stream, as far as its backlog goes. */
export interface CompressorQueue {
  readonly writableLength: number;
  readonly readableLength: number;
  off(event: 'drain', listener: () => void): unknown;
}

function isQueue(value: unknown): value is CompressorQueue {
  const candidate = value as Partial<CompressorQueue> | null | undefined;
  return typeof candidate?.writableLength === 'number' && typeof candidate.readableLength === 'number' && typeof candidate.off === 'function';
}

/** The compressor's stream below `res`, with `onDrain` listening to it; undefined (and nothing listening) when none is found. */
export function compressorQueue(res: ServerResponse, onDrain: () => void): CompressorQueue | undefined {
  const taker: unknown = res.on('drain', onDrain);
  if (taker !== res && isQueue(taker)) return taker;
  res.off('drain', onDrain);
  return undefined;
}

/** Bytes waiting in the compressor's stream. */
export const heldIn = (queue: CompressorQueue): number => queue.writableLength + queue.readableLength;
