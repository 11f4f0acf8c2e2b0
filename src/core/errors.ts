/** Stable codes carried by every {@link SseGuardError}. */
export type SseGuardErrorCode =
  | 'ERR_SSE_HEADERS_SENT'
  | 'ERR_SSE_TIMEOUT_HANDLER'
  | 'ERR_SSE_INVALID_FIELD'
  | 'ERR_SSE_INVALID_OPTION'
  | 'ERR_SSE_CHANNEL_CLOSED'
  | 'ERR_SSE_ADAPTER'
  | 'ERR_SSE_UPSTREAM'
  | 'ERR_SSE_MISSING_PEER';

/** The one error class of sse-guard: a stable `code`, and a message that names the fix. */
export class SseGuardError extends Error {
  override readonly name = 'SseGuardError';
  readonly code: SseGuardErrorCode;
  /** HTTP status for the refusals that reach `next(err)`. */
  readonly status: number;

  constructor(code: SseGuardErrorCode, message: string, options?: { status?: number; cause?: unknown }) {
    super(`sse-guard: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options?.status ?? 500;
  }
}
