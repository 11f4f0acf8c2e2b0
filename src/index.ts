export { sse, type SseMiddleware } from './sse.js';
export { SseStream } from './stream.js';
export { Channel, type ChannelOptions } from './channel.js';
export { memoryAdapter, type ChannelAdapter, type StoredEvent } from './adapter.js';
export { SseGuardError, type SseGuardErrorCode } from './errors.js';
export { shutdown, stats, type ShutdownOptions, type Stats } from './registry.js';
export { serializeEvent, serializeComment } from './serialize.js';
export type {
  AnyEvents,
  CloseReason,
  EventMap,
  EventOf,
  GuardReason,
  SendArg,
  SseEvent,
  SseHandler,
  SseLogger,
  SseOptions,
} from './types.js';

import type { SseStream } from './stream.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Response {
      /** The event stream opened by sse() in middleware form. */
      sse: SseStream;
    }
  }
}
