// The logger is the user's code: whatever it does (throw, reject) must not change what the guard
// does, nor crash the process from a timer or a socket callback.
import { isThenable } from './thenable.js';
import type { SseLogger } from './types.js';
import { describe } from './describe.js';

// Each failing logger is reported once: a logger that throws on every call would otherwise print a
// warning per event.
const reported = new WeakSet<SseLogger>();

function report(logger: SseLogger, reason: string, error: unknown): void {
  if (reported.has(logger)) return;
  reported.add(logger);
  process.emitWarning(
    `sse-guard: the logger failed while reporting '${reason}' (${describe(error)}); the guard went on as if it had returned, and ignores further failures of this logger. Catch inside your logger.`,
    { code: 'SSE_GUARD_LOGGER_FAILED' },
  );
}

/** The user's logger, made safe to call anywhere: a throw or a rejection becomes one process warning. */
export function isolateLogger(logger: SseLogger | undefined): SseLogger | undefined {
  if (logger === undefined) return undefined;
  return (reason, details) => {
    try {
      const result: unknown = logger(reason, details);
      if (isThenable(result)) Promise.resolve(result).catch((error: unknown) => report(logger, reason, error));
    } catch (error) {
      report(logger, reason, error);
    }
  };
}
