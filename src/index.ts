export { sse, type SseHandler, type SseMiddleware } from './guards/sse.js';
export { guard, type GuardOptions } from './guards/guard.js';
export { SseStream } from './stream/stream.js';
export { Channel, type ChannelOptions } from './fanout/channel.js';
export { memoryAdapter, type ChannelAdapter, type StoredEvent } from './fanout/adapter.js';
export { SseGuardError, type SseGuardErrorCode } from './core/errors.js';
export { shutdown, stats, type ShutdownOptions, type Stats } from './stream/registry.js';
export { serializeEvent, serializeComment } from './stream/serialize.js';
export type { Source } from './stream/source.js';
export type { PipeItem, PipeOptions } from './stream/pipe.js';
export type { RelayOptions, Upstream, UpstreamEvent, UpstreamResponse } from './stream/relay.js';
export type {
  AnyEvents,
  CloseReason,
  EventMap,
  EventOf,
  GuardReason,
  SendArg,
  SseEvent,
  SseLogger,
  SseOptions,
} from './core/types.js';

import type { SseStream } from './stream/stream.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Response {
      /** The event stream opened by sse() in middleware form. */
      sse: SseStream;
    }
  }
}
