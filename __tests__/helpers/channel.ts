// A real server whose /events route subscribes every request to one Channel, and the ids and
// adapters channel tests compare against.
import express from 'express';
import type { Socket } from 'node:net';
import { memoryAdapter, sse, type Channel, type ChannelAdapter, type CloseReason, type SseOptions, type SseStream } from '../../src/index';
import { listen, type TestServer } from './server';

export interface ChannelServer extends TestServer {
  /** Every stream the route opened, in the order the requests came in. */
  streams: SseStream[];
  /** The socket of each of those streams, at the same index: to cut a connection from the server side. */
  sockets: Socket[];
  /** Each stream's close reason, once it closed. */
  reasons: Map<SseStream, CloseReason>;
}

/** Serves `channel` on `/events`; heartbeats are off unless asked for, so that only events flow. */
export async function serveChannel(channel: Channel, options: SseOptions = {}): Promise<ChannelServer> {
  const streams: SseStream[] = [];
  const sockets: Socket[] = [];
  const reasons = new Map<SseStream, CloseReason>();
  const app = express();
  app.get('/events', sse({ heartbeat: false, ...options }), (req, res) => {
    const stream = res.sse;
    streams.push(stream);
    sockets.push(req.socket);
    stream.on('close', (reason) => reasons.set(stream, reason));
    channel.subscribe(stream);
  });
  const srv = await listen(app);
  return { ...srv, streams, sockets, reasons };
}

/** The ids of events as received, for comparing with an expected range. */
export const idsOf = (events: ReadonlyArray<{ id: string | undefined }>): Array<string | undefined> => events.map((e) => e.id);

/** The ids a memory adapter assigns (`<prefix>-<n>`): `idOf(n)` and `range(from, to)`, with the prefix of `sample`, any one of them. */
export function autoIds(sample: string): { idOf: (n: number) => string; range: (from: number, to: number) => string[] } {
  const prefix = /^([0-9a-z]+-)\d+$/.exec(sample)?.[1];
  if (prefix === undefined) throw new Error(`${JSON.stringify(sample)} is not an id a memory adapter assigns`);
  const idOf = (n: number): string => `${prefix}${n}`;
  return { idOf, range: (from, to) => Array.from({ length: to - from + 1 }, (_, i) => idOf(from + i)) };
}

/**
 * A memoryAdapter whose since() is async: it awaits `pause()` before answering, which opens the window
 * in which live events race a reconnecting client's replay. The history is read before or after the wait.
 */
export function slowReplayAdapter(pause: () => Promise<void>, readHistory: 'before the wait' | 'after the wait'): ChannelAdapter {
  const inner = memoryAdapter();
  return {
    attach: (deliver, history) => inner.attach(deliver, history),
    append: (body, id) => inner.append(body, id),
    close: () => inner.close(),
    async since(lastEventId) {
      const early = readHistory === 'before the wait' ? inner.since(lastEventId) : undefined;
      await pause();
      return readHistory === 'before the wait' ? early : inner.since(lastEventId);
    },
  };
}
