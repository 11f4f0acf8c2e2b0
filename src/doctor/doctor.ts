// `sse-guard doctor`, the sampling half: connects like a browser's EventSource and records when
// the headers, every byte and every event arrived. Judging the record is diagnose.ts's job.
import http from 'node:http';
import https from 'node:https';
import zlib from 'node:zlib';
import { createParser } from 'eventsource-parser';
import { needsControl } from './diagnose.js';
import { parseProbe, PROBE_HEADER } from '../guards/probe.js';

/** What browsers offer; `compression` answers it with br, which holds even the headers. */
export const BROWSER_ENCODINGS = 'gzip, deflate, br';

/** One parsed item, at ms since the request started; a probe's `delay` is arrival minus its stamp. */
export interface Arrival {
  at: number;
  kind: 'event' | 'comment' | 'probe';
  delay?: number;
}

/** The record of one request. Times are ms since the request started. */
export interface Sample {
  acceptEncoding: string;
  durationMs: number;
  elapsedMs: number;
  /** Whether a TCP connection was made. */
  connected: boolean;
  /** The peer is this machine, so a probe's absolute delay is meaningful (one clock). */
  loopback: boolean;
  error?: string;
  status?: number;
  statusText?: string;
  /** Response headers, lower-cased, repeated ones joined with `, `. */
  headers: Record<string, string>;
  connectMs?: number;
  headersMs?: number;
  firstByteMs?: number;
  firstEventMs?: number;
  /** When the server ended the response; absent when the sample ran out first. */
  endMs?: number;
  rawBytes: number;
  decodedBytes: number;
  arrivals: Arrival[];
  /** The heartbeat setting an sse({ probe: true }) server announced. */
  heartbeat?: number | false;
  /** The start of a body that is not an event stream (an error page, say). */
  bodyStart?: string;
}

/** The browser-like sample, and a second one without compression when the first looked held. */
export interface DoctorResult {
  url: string;
  main: Sample;
  control?: Sample;
}

export interface DoctorOptions {
  durationMs: number;
  /** Extra request headers; they override the browser-like defaults. */
  headers?: Record<string, string>;
  /** Called every 250 ms and on each arrival, with the sample so far. */
  onProgress?: (phase: 'main' | 'control', sample: Readonly<Sample>) => void;
}

const BODY_START_CHARS = 300;
const LOOPBACK = /^(?:127\.|::1$|::ffff:127\.)/;

function decoderFor(encoding: string): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | undefined {
  // Sync/flush modes make each chunk's decodable bytes come out at once, as a browser would see them.
  switch (encoding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip({ flush: zlib.constants.Z_SYNC_FLUSH });
    case 'deflate':
      return zlib.createInflate({ flush: zlib.constants.Z_SYNC_FLUSH });
    case 'br':
      return zlib.createBrotliDecompress({ flush: zlib.constants.BROTLI_OPERATION_FLUSH });
    default:
      return undefined;
  }
}

/** One request, sampled for `durationMs` or until the server ends it. Never rejects. */
export function sample(url: URL, options: DoctorOptions, phase: 'main' | 'control' = 'main'): Promise<Sample> {
  const headers: Record<string, string> = {
    accept: 'text/event-stream',
    'accept-encoding': BROWSER_ENCODINGS,
    'cache-control': 'no-cache',
    // Node would send "Connection: close" on a socket of its own; browsers keep connections alive.
    connection: 'keep-alive',
    'user-agent': 'sse-guard-doctor',
    [PROBE_HEADER.toLowerCase()]: '1',
  };
  for (const [name, value] of Object.entries(options.headers ?? {})) headers[name.toLowerCase()] = value;
  if (phase === 'control') headers['accept-encoding'] = 'identity';
  const start = performance.now();
  const now = (): number => Math.round((performance.now() - start) * 10) / 10;
  const s: Sample = {
    acceptEncoding: headers['accept-encoding'],
    durationMs: options.durationMs,
    elapsedMs: 0,
    connected: false,
    loopback: false,
    headers: {},
    rawBytes: 0,
    decodedBytes: 0,
    arrivals: [],
  };
  const progress = (): void => {
    s.elapsedMs = now();
    options.onProgress?.(phase, s);
  };

  const parser = createParser({
    onEvent: () => {
      const at = now();
      s.firstEventMs ??= at;
      s.arrivals.push({ at, kind: 'event' });
      progress();
    },
    onComment: (text) => {
      const probe = parseProbe(text);
      if (probe === undefined) {
        s.arrivals.push({ at: now(), kind: 'comment' });
      } else {
        s.arrivals.push({ at: now(), kind: 'probe', delay: Date.now() - probe.t });
        s.heartbeat = probe.heartbeat;
      }
    },
  });

  return new Promise<Sample>((resolve) => {
    const request = url.protocol === 'https:' ? https.request : http.request;
    const req = request(url, { headers, agent: false });
    let decoder: ReturnType<typeof decoderFor>;
    let done = false;
    const finish = (error?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearInterval(ticker);
      if (error !== undefined) s.error = error;
      if (!s.connected) s.error ??= `no connection within ${options.durationMs} ms`;
      s.elapsedMs = now();
      decoder?.destroy();
      req.destroy();
      resolve(s);
    };
    const deadline = setTimeout(finish, options.durationMs);
    const ticker = setInterval(progress, 250);

    req.on('socket', (socket) => {
      socket.once('connect', () => {
        s.connected = true;
        s.connectMs = now();
        s.loopback = LOOPBACK.test(socket.remoteAddress ?? '');
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => finish(err.code === undefined || err.message.includes(err.code) ? err.message : `${err.code}: ${err.message}`));
    req.on('response', (res) => {
      s.headersMs = now();
      s.status = res.statusCode;
      s.statusText = res.statusMessage;
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined) s.headers[name] = Array.isArray(value) ? value.join(', ') : value;
      }
      progress();
      const isStream = /^\s*text\/event-stream\s*(?:;|$)/i.test(s.headers['content-type'] ?? '');
      const encoding = (s.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
      decoder = decoderFor(encoding);
      if (decoder === undefined && encoding !== 'identity') return finish(`cannot decode Content-Encoding ${encoding}`);
      // Decodes UTF-8 across chunk boundaries and drops a leading BOM, as EventSource does.
      const text = new TextDecoder();
      const onDecoded = (chunk: Buffer): void => {
        s.decodedBytes += chunk.length;
        const str = text.decode(chunk, { stream: true });
        if (isStream) parser.feed(str);
        else if ((s.bodyStart ?? '').length < BODY_START_CHARS) s.bodyStart = ((s.bodyStart ?? '') + str).slice(0, BODY_START_CHARS);
      };
      const onEnd = (): void => {
        s.endMs = now();
        finish();
      };
      res.on('data', (chunk: Buffer) => {
        s.firstByteMs ??= now();
        s.rawBytes += chunk.length;
        if (decoder === undefined) onDecoded(chunk);
        else decoder.write(chunk);
      });
      if (decoder === undefined) {
        res.on('end', onEnd);
      } else {
        decoder.on('data', onDecoded);
        decoder.on('end', onEnd);
        decoder.on('error', (err) => finish(`cannot decode the ${encoding} body: ${err.message}`));
        res.on('end', () => decoder?.end());
      }
      res.on('error', () => finish('the connection was cut before the response ended'));
    });
    req.end();
  });
}

/**
 * Samples `url` as a browser would; when that sample looks held and compression may be the reason,
 * samples it again without compression, so the diagnosis can tell compression from other buffers.
 */
export async function doctor(url: string | URL, options: DoctorOptions): Promise<DoctorResult> {
  const target = new URL(url);
  const main = await sample(target, options);
  const control = needsControl(main) ? await sample(target, options, 'control') : undefined;
  return { url: target.href, main, control };
}
