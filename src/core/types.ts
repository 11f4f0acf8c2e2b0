/** One server-sent event. `0` and `''` are values, never "absent". */
export interface SseEvent<Data = unknown, Name extends string = string> {
  data: Data;
  /** Event type (`event:` field); the client dispatches it as a named event. Must not contain CR or LF. */
  event?: Name;
  /** Event id (`id:` field); becomes the client's Last-Event-ID. Must not contain CR, LF or NUL. */
  id?: string | number;
  /** Reconnection delay in ms (`retry:` field): a non-negative integer. */
  retry?: number;
}

/** Event name to payload type, e.g. `{ tick: { n: number } }`. The key `message` is the unnamed event. */
export type EventMap = Record<string, unknown>;

/** `Record<string, unknown>`: no event map given, any event accepted. */
export type AnyEvents = Record<string, unknown>;

/** The events a stream or channel of map `M` accepts. */
export type EventOf<M extends EventMap> = string extends keyof M
  ? SseEvent
  : {
      [K in keyof M & string]: K extends 'message'
        ? Omit<SseEvent<M[K]>, 'event'> & { event?: K }
        : SseEvent<M[K], K>;
    }[keyof M & string];

/** What `send()` takes: an event, or a string as the data of an unnamed event. */
export type SendArg<M extends EventMap> =
  | EventOf<M>
  | (string extends keyof M ? string : M extends { message: string } ? string : never);

/** Why a stream closed. */
export type CloseReason = 'client' | 'server' | 'slow-consumer' | 'error';

/** The named decisions reported to {@link SseOptions.logger}. */
export type GuardReason =
  | 'compression-bypassed'
  | 'compression-flushed'
  | 'timeout-refused'
  | 'timeout-disarmed'
  | 'socket-timeout-disarmed'
  | 'headers-sent'
  | 'slow-consumer'
  | 'handler-error';

export type SseLogger = (reason: GuardReason, details: Record<string, unknown>) => void;

export interface SseOptions {
  /** `'bypass'` (default): the compression layer passes the stream through uncompressed.
   *  `'flush'`: keep it compressed and flush the compressor after every event. */
  compression?: 'bypass' | 'flush';
  /** `'refuse'` (default): `next(err)` with `ERR_SSE_TIMEOUT_HANDLER` when request-timeout middleware
   *  is found. `'disarm'`: cancel its timers and stream on. */
  timeoutHandler?: 'refuse' | 'disarm';
  /** ms between comment heartbeats while the stream is idle; `false` disables. Default `15000`. */
  heartbeat?: number | false;
  /** Reconnection delay (ms) sent once at connect. Default: none. */
  retry?: number;
  /** Size in bytes of one comment line written first (`:` + spaces + LF); 0 = none. Default `0`. */
  padding?: number;
  /** Buffered bytes above which `send()` returns false. Default `65536`. */
  highWaterMark?: number;
  /** Buffered bytes above which a slow client is disconnected. Default `1048576`. */
  maxBufferedBytes?: number;
  /** Extra response headers, applied after the defaults. */
  headers?: Record<string, string | number | readonly string[]>;
  /** Turns non-string `data` into text. Default `JSON.stringify`. */
  serialize?: (data: unknown) => string;
  /** Told of every guard decision, with a named reason. Default: silent. */
  logger?: SseLogger;
  /** Answer `sse-guard doctor`: on requests carrying an `SSE-Guard-Probe` header, also write a
   *  timestamped comment (`: probe t=<ms> heartbeat=<ms|off>`) every 250 ms, from which the doctor
   *  measures how long each hop holds the stream. Other requests are unaffected. Default `false`. */
  probe?: boolean;
}
