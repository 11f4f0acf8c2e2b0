// Timestamped comments for `sse-guard doctor`: it subtracts each stamp from the comment's arrival
// time, which shows how long the hops in between held the stream.
import type { IncomingMessage } from 'node:http';

/** The request header with which `sse-guard doctor` asks for probe comments. */
export const PROBE_HEADER = 'SSE-Guard-Probe';

/** ms between two probe comments: short enough that a buffer holding them shows within a second. */
export const PROBE_INTERVAL = 250;

/** What one probe comment tells: the server's clock when written, and its heartbeat setting. */
export interface ProbeStamp {
  t: number;
  heartbeat: number | false;
}

/** What the probe uses of an SseStream: its public `comment()` and `on('close')`. */
export interface Probed {
  comment(text: string): unknown;
  on(event: 'close', listener: () => void): unknown;
}

const PROBE_COMMENT = /^probe t=(\d+) heartbeat=(\d+|off)$/;

export function probeComment({ t, heartbeat }: ProbeStamp): string {
  return `probe t=${t} heartbeat=${heartbeat === false ? 'off' : heartbeat}`;
}

/** The stamp in a comment's text (without the leading `:`), or undefined for any other comment. */
export function parseProbe(comment: string): ProbeStamp | undefined {
  const match = PROBE_COMMENT.exec(comment.trim());
  if (match === null) return undefined;
  return { t: Number(match[1]), heartbeat: match[2] === 'off' ? false : Number(match[2]) };
}

/**
 * Writes a probe comment now and every {@link PROBE_INTERVAL} ms while the stream is open, when the
 * request asked for it. The heartbeat setting rides along because a sample of a few seconds
 * cannot observe a 15 s heartbeat.
 */
export function startProbe(stream: Probed, req: IncomingMessage, heartbeat: number | false): void {
  if (req.headers[PROBE_HEADER.toLowerCase()] === undefined) return;
  const stamp = (): void => {
    stream.comment(probeComment({ t: Date.now(), heartbeat }));
  };
  stamp();
  const timer = setInterval(stamp, PROBE_INTERVAL);
  // Already closed streams call this listener on the next microtask, so the timer never outlives one.
  stream.on('close', () => clearInterval(timer));
}
