// `sse-guard doctor`, the sampling half: connects like a browser's EventSource and records when
// the headers, every byte and every event arrived. Judging the record is diagnose.ts's job.
import zlib from 'node:zlib';
import { createParser } from 'eventsource-parser';
import { needsControl } from './diagnose.js';
import { isEventStreamType } from '../core/media-type.js';
import { parseProbe, PROBE_HEADER } from '../guards/probe.js';
import { Backlog } from '../stream/backlog.js';
import { chooseProxy, maskUrl, request, type TransportOptions } from './transport.js';

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
  /** The start of a body that is not an event stream (an error page, say), control characters removed. */
  bodyStart?: string;
  /** The protocol of the response: HTTP/1.1, HTTP/1.0 or HTTP/2. */
  protocol?: string;
  /** The proxy the request went through (password masked) and where it was configured. */
  proxy?: string;
  /** The error was a TLS failure (an unverifiable certificate, say). */
  tlsError?: boolean;
  /** The length of the line that made the doctor stop, when one grew past {@link MAX_LINE_CHARS}. */
  longLine?: number;
  /** The size of the event that made the doctor stop, when its fields grew past {@link MAX_EVENT_CHARS}. */
  longEvent?: number;
}

/** The browser-like sample, and a second one without compression when the first looked held. */
export interface DoctorResult {
  url: string;
  main: Sample;
  control?: Sample;
}

export interface DoctorOptions extends TransportOptions {
  durationMs: number;
  /** Extra request headers; they override the browser-like defaults. */
  headers?: Record<string, string>;
  /** Called every 250 ms and on each arrival, with the sample so far. */
  onProgress?: (phase: 'main' | 'control', sample: Readonly<Sample>) => void;
}

const BODY_START_CHARS = 300;
/** A line longer than this is not an event stream a browser would get through; EventSource has no bound, the doctor does. */
export const MAX_LINE_CHARS = 1 << 20;
/** Field lines of one event past this many characters (no blank line): EventSource buffers them all; the doctor stops. */
export const MAX_EVENT_CHARS = 16 << 20;
/** Events and comments recorded per sample: past this the stream plainly flows, and the record stops growing. */
export const MAX_ARRIVALS = 100_000;
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

/** Control characters (C0, DEL, C1) that a terminal would act on; a server's text is shown without them. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
export const printable = (text: string): string => text.replace(CONTROL, ' ');

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
    host: url.host,
  };
  // Credentials in the URL go as Basic authorization, as the URL parser of a browser or fetch would send them.
  if (url.username !== '') headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
  for (const [name, value] of Object.entries(options.headers ?? {})) headers[name.toLowerCase()] = value;
  if (phase === 'control') headers['accept-encoding'] = 'identity';
  const proxy = chooseProxy(url, options.proxy);
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
    ...(proxy === undefined ? {} : { proxy: `${maskUrl(proxy.url)} (${proxy.source})` }),
  };
  const progress = (): void => {
    s.elapsedMs = now();
    options.onProgress?.(phase, s);
  };

  return new Promise<Sample>((resolve) => {
    let decoder: ReturnType<typeof decoderFor>;
    let done = false;
    const finish = (error?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearInterval(ticker);
      if (error !== undefined) s.error = printable(error);
      if (!s.connected) s.error ??= `no connection within ${options.durationMs} ms`;
      s.elapsedMs = now();
      decoder?.destroy();
      close();
      resolve(s);
    };
    // A sample ends at the cap rather than leave a gap in the record that would read as silence.
    const record = (arrival: Arrival): void => {
      if (done) return;
      s.arrivals.push(arrival);
      if (s.arrivals.length >= MAX_ARRIVALS) finish();
    };
    const parser = createParser({
      onEvent: () => {
        const at = now();
        s.firstEventMs ??= at;
        record({ at, kind: 'event' });
        progress();
      },
      onComment: (text) => {
        const probe = parseProbe(text);
        if (probe === undefined) {
          record({ at: now(), kind: 'comment' });
        } else {
          record({ at: now(), kind: 'probe', delay: Date.now() - probe.t });
          s.heartbeat = probe.heartbeat;
        }
      },
    });

    const deadline = setTimeout(finish, options.durationMs);
    const ticker = setInterval(progress, 250);

    const close = request(url, headers, proxy, options, {
      onConnect(remoteAddress) {
        s.connected = true;
        s.connectMs = now();
        // Through a proxy, the probe's clock is the server's, not the proxy's: only loopback all the way is one clock.
        s.loopback = LOOPBACK.test(remoteAddress ?? '') && (proxy === undefined || LOOPBACK.test(url.hostname));
      },
      onProtocol(protocol) {
        s.protocol = protocol;
      },
      onError(message, tls) {
        if (tls) s.tlsError = true;
        finish(message);
      },
      onResponse(res) {
        s.headersMs = now();
        s.status = res.status;
        s.statusText = res.statusText === undefined ? undefined : printable(res.statusText);
        s.protocol = res.protocol;
        for (const [name, value] of Object.entries(res.headers)) s.headers[name] = printable(value);
        progress();
        const isStream = isEventStreamType(s.headers['content-type']);
        const encoding = (s.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
        decoder = decoderFor(encoding);
        if (decoder === undefined && encoding !== 'identity') return finish(`cannot decode Content-Encoding ${encoding}`);
        // Decodes UTF-8 across chunk boundaries and drops a leading BOM, as EventSource does.
        const text = new TextDecoder();
        const backlog = new Backlog();
        const onDecoded = (chunk: Buffer): void => {
          if (done) return;
          s.decodedBytes += chunk.length;
          const str = text.decode(chunk, { stream: true });
          if (!isStream) {
            if ((s.bodyStart ?? '').length < BODY_START_CHARS) s.bodyStart = printable((s.bodyStart ?? '') + str).slice(0, BODY_START_CHARS);
            return;
          }
          // The parser keeps an unfinished line and an undispatched event whole: bound both, or a
          // stream without line breaks or blank lines (a gzip bomb, say) grows without end.
          backlog.add(str);
          if (backlog.line > MAX_LINE_CHARS) {
            s.longLine = backlog.line;
            return finish(`a line grew past ${MAX_LINE_CHARS} characters without a line break`);
          }
          if (backlog.event > MAX_EVENT_CHARS) {
            s.longEvent = backlog.event;
            return finish(`an event grew past ${MAX_EVENT_CHARS} characters without a blank line`);
          }
          parser.feed(str);
        };
        const onEnd = (): void => {
          s.endMs = now();
          finish();
        };
        res.body.on('data', (chunk: Buffer) => {
          s.firstByteMs ??= now();
          s.rawBytes += chunk.length;
          if (decoder === undefined) onDecoded(chunk);
          else decoder.write(chunk);
        });
        if (decoder === undefined) {
          res.body.on('end', onEnd);
        } else {
          decoder.on('data', onDecoded);
          decoder.on('end', onEnd);
          decoder.on('error', (err) => finish(`cannot decode the ${encoding} body: ${err.message}`));
          res.body.on('end', () => decoder?.end());
        }
        res.body.on('error', () => {
          s.endMs ??= now();
          finish('the connection was cut before the response ended');
        });
      },
    });
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
  return { url: maskUrl(target), main, control };
}
