// `sse-guard doctor`, the judging half, pure: samples in; a verdict per header and timing, and a
// diagnosis that names each culprit and its fix, out.
import type { DoctorResult, Sample } from './doctor.js';
import { ADVICE, IDLE_LIMITS as LAYER_IDLE_LIMITS, layersOf, type Layer } from './layers.js';
import { isEventStreamType } from '../core/media-type.js';

export type Level = 'ok' | 'info' | 'warn' | 'fail';

/** One line of the report's table. */
export interface Check {
  name: string;
  level: Level;
  value: string;
  note?: string;
}

export type Culprit =
  | 'connection'
  | 'status'
  | 'timeout-middleware'
  | 'content-type'
  | 'content-length'
  | 'compression'
  | 'buffering'
  | 'no-response'
  | 'late-headers'
  | 'silence'
  | 'heartbeat'
  | 'idle-cut'
  | 'hard-cut'
  | 'long-line'
  | 'long-event';

/** One plain-language finding: what goes wrong, and what fixes it. */
export interface Finding {
  culprit: Culprit;
  level: 'warn' | 'fail';
  problem: string;
  fix: string;
}

export interface Diagnosis {
  /** `problems` when any check or finding fails; warnings alone leave the stream `healthy`. */
  verdict: 'healthy' | 'problems' | 'unreachable';
  checks: Check[];
  findings: Finding[];
}

/** How the stream's bytes reached the client, and the arrivals that show it. */
export interface Delivery {
  kind: 'prompt' | 'held' | 'bursty' | 'clumped' | 'silent' | 'no-headers';
  evidence: string;
}

// A hold this long is a buffer at work, not jitter; it is also well inside any test's or user's sample.
const HOLD_MS = 1000;
// Items this close together came out of one read: released at once, whenever they were written.
const BURST_MS = 20;
const BURST_SIZE = 3;
// A server that waited this long before its headers does not flush them at connect.
const LATE_HEADERS_MS = 1000;
// On one machine a probe comment takes a few ms; a median this high means a layer waits to fill packets.
const CLUMP_DELAY_MS = 50;
const IDLE_LIMITS = [
  { ms: 60_000, who: 'load balancers (60 s, e.g. AWS ALB)' },
  { ms: 100_000, who: 'CDNs (100 s, e.g. Cloudflare)' },
];

const BUFFER_FIX =
  'Send `X-Accel-Buffering: no` from the application (sse() does), which nginx obeys; or set the proxy\'s location to ' +
  '`proxy_http_version 1.1; proxy_buffering off; gzip off;` (the nginx snippet in the sse-guard README). ' +
  'Padding does not help: nginx holds padded streams too.';

export function ms(value: number): string {
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`;
}

export const count = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
const gaps = (times: number[]): number[] => times.slice(1).map((t, i) => t - times[i]!);

function isEventStream(s: Sample): boolean {
  return isEventStreamType(s.headers['content-type']);
}

function encodingOf(s: Sample): string | undefined {
  const value = s.headers['content-encoding']?.trim().toLowerCase();
  return value === undefined || value === '' || value === 'identity' ? undefined : value;
}

/** The nginx layer's header value, for the messages written for nginx before other layers were known. */
function nginxIn(layers: Layer[]): string | undefined {
  return layers.find((l) => l.product === 'nginx')?.evidence.replace(/^[^:]*: /, '');
}

/** The advice of every recognised layer for one kind of trouble, as sentences. */
function adviceFor(layers: Layer[], kind: keyof (typeof ADVICE)[keyof typeof ADVICE]): string[] {
  return layers.flatMap((l) => (ADVICE[l.product][kind] === undefined ? [] : [ADVICE[l.product][kind]!]));
}

/** The largest delay a probe comment saw: absolute on one machine, relative to the quickest probe across two clocks. */
function probeLag(s: Sample): { worst: number; median?: number; text: string } | undefined {
  const delays = s.arrivals.flatMap((a) => (a.delay === undefined ? [] : [a.delay]));
  if (delays.length === 0) return undefined;
  const min = Math.min(...delays);
  const max = Math.max(...delays);
  if (s.loopback) return { worst: max, median: median(delays), text: `max ${ms(max)}, median ${ms(median(delays))} over ${delays.length} probes (same machine)` };
  return { worst: max - min, text: `spread ${ms(max - min)} over ${delays.length} probes (two clocks, so only the spread counts)` };
}

interface Burst {
  count: number;
  spanMs: number;
  silenceMs: number;
}

/** Runs of items that arrived within {@link BURST_MS} of each other after a silence of {@link HOLD_MS}. */
function bursts(s: Sample): Burst[] {
  const items = s.arrivals;
  const found: Burst[] = [];
  let previous = s.connectMs ?? 0;
  for (let i = 0; i < items.length; ) {
    let j = i + 1;
    while (j < items.length && items[j]!.at - items[j - 1]!.at <= BURST_MS) j++;
    const silenceMs = items[i]!.at - previous;
    if (silenceMs >= HOLD_MS && j - i >= BURST_SIZE) found.push({ count: j - i, spanMs: items[j - 1]!.at - items[i]!.at, silenceMs });
    previous = items[j - 1]!.at;
    i = j;
  }
  return found;
}

/**
 * Events that come out in twos and threes, at a multiple of their spacing: a layer that waits for more
 * data before sending a small packet on (HAProxy without option http-no-delay).
 */
function clumping(s: Sample): string | undefined {
  const events = s.arrivals.filter((a) => a.kind === 'event').map((a) => a.at);
  const spacing = gaps(events);
  if (spacing.length < 5) return undefined;
  const together = spacing.filter((g) => g <= BURST_MS).length;
  const apart = spacing.filter((g) => g > BURST_MS);
  // Events written a second or more apart that come in pairs are the server's batches, not a proxy's.
  if (together * 3 < spacing.length || median(apart) < 100 || median(apart) >= HOLD_MS) return undefined;
  return `${together} of ${spacing.length} events arrived within ${BURST_MS} ms of the one before, the others ${ms(median(apart))} apart`;
}

/** How the sample's stream was delivered, from the strongest evidence it holds. */
export function deliveryOf(s: Sample): Delivery {
  if (s.headersMs === undefined) return { kind: 'no-headers', evidence: `no response headers within ${ms(s.elapsedMs)}` };
  const probe = probeLag(s);
  if (probe !== undefined) {
    if (probe.worst >= HOLD_MS) return { kind: 'held', evidence: `probe comments arrived up to ${ms(probe.worst)} after the server wrote them` };
    if ((probe.median ?? 0) >= CLUMP_DELAY_MS) {
      return { kind: 'clumped', evidence: `probe comments arrived a median ${ms(probe.median!)} after being written, on one machine: something waits to fill packets` };
    }
    return { kind: 'prompt', evidence: `every probe comment arrived within ${ms(probe.worst)} of being written` };
  }
  const items = s.arrivals;
  const first = items[0];
  if (s.endMs !== undefined && first !== undefined && items.length >= 2 && first.at - (s.connectMs ?? 0) >= HOLD_MS && s.endMs - first.at <= 50) {
    return {
      kind: 'held',
      evidence: `all ${items.length} events and comments arrived at once when the response ended, ${ms(s.endMs)} after the request`,
    };
  }
  const found = bursts(s);
  if (found.length > 0) {
    const { count, spanMs, silenceMs } = found[0]!;
    const more = found.length > 1 ? ` (${found.length} such bursts)` : '';
    return { kind: 'bursty', evidence: `${count} events and comments arrived within ${ms(spanMs)} after ${ms(silenceMs)} of silence${more}` };
  }
  const clumped = clumping(s);
  if (clumped !== undefined) return { kind: 'clumped', evidence: clumped };
  if (first === undefined) {
    const undecoded = s.rawBytes > 0 && s.decodedBytes === 0 ? `; the ${s.rawBytes} compressed bytes that came decode to nothing` : '';
    return { kind: 'silent', evidence: `no event or comment in ${ms(s.elapsedMs - s.headersMs)} after the headers${undecoded}` };
  }
  return { kind: 'prompt', evidence: `${count(items.length, 'event or comment', 'events and comments')}, none held` };
}

/** Whether a second sample without compression would tell compression apart from other buffers. */
export function needsControl(s: Sample): boolean {
  if (s.status === undefined) return s.connected && s.error === undefined;
  return s.status === 200 && isEventStream(s) && encodingOf(s) !== undefined && deliveryOf(s).kind !== 'prompt';
}

function statusFinding(s: Sample, wait: number): Finding {
  const status = s.status!;
  // An error page's text, without its markup, usually names the middleware that answered.
  const text = s.bodyStart?.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim() ?? '';
  const body = text === '' ? '' : ` It said: "${text.length > 100 ? `${text.slice(0, 100)}…` : text}".`;
  const answered = `The server answered ${status} ${s.statusText ?? ''}`.trimEnd() + ` after ${ms(wait)} instead of an event stream.${body}`;
  if ((status === 503 || status === 504 || status === 408) && s.headers['retry-after'] === undefined) {
    return {
      culprit: 'timeout-middleware',
      level: 'fail',
      problem: `${answered} A ${status} that comes after a fixed delay is the mark of request-timeout middleware (connect-timeout, express-timeout-handler) or a proxy timeout, which fires when the route writes nothing before its deadline.`,
      fix: "Don't mount the timeout on stream routes, or send the headers at once. sse() refuses a route behind such middleware (ERR_SSE_TIMEOUT_HANDLER) or disarms it with { timeoutHandler: 'disarm' }.",
    };
  }
  const fixes: Record<number, string> = {
    204: '204 tells EventSource to stop reconnecting: the server turned this client away on purpose.',
    401: "Pass the credentials a browser would send: --header 'Authorization: …' or --header 'Cookie: …'.",
    403: "Pass the credentials a browser would send: --header 'Authorization: …' or --header 'Cookie: …'.",
    503: `The server asks to come back later (Retry-After: ${s.headers['retry-after'] ?? '?'}): it is shutting down or overloaded.`,
  };
  const location = s.headers.location;
  const fix = location !== undefined && status >= 300 && status < 400 ? `EventSource follows the redirect; the doctor does not: run it on ${location}.` : fixes[status];
  return { culprit: 'status', level: 'fail', problem: answered, fix: fix ?? 'Check the URL and the route: an event stream answers 200.' };
}

function headerChecks(s: Sample, delivery: Delivery, compressionHolds: boolean, nginx: string | undefined, findings: Finding[]): Check[] {
  const h = s.headers;
  // nginx's gzip is also released by X-Accel-Buffering: no; an application's compression is not.
  const buffered = (!compressionHolds || nginx !== undefined) && delivery.kind !== 'prompt' && delivery.kind !== 'silent';
  const checks: Check[] = [];

  const contentType = h['content-type'];
  if (isEventStream(s)) checks.push({ name: 'Content-Type', level: 'ok', value: contentType! });
  else {
    checks.push({ name: 'Content-Type', level: 'fail', value: contentType ?? '(none)' });
    findings.push({
      culprit: 'content-type',
      level: 'fail',
      problem: `Content-Type is ${contentType ?? 'missing'}: EventSource fails the connection unless it is text/event-stream.`,
      fix: 'Set Content-Type: text/event-stream before the first byte (sse() does).',
    });
  }

  const encoding = encodingOf(s);
  if (encoding === undefined) checks.push({ name: 'Content-Encoding', level: 'ok', value: '(none)' });
  else if (compressionHolds) checks.push({ name: 'Content-Encoding', level: 'fail', value: encoding, note: 'the compressor holds the events' });
  else {
    checks.push({
      name: 'Content-Encoding',
      level: 'warn',
      value: encoding,
      note: 'compressed: works only while every layer flushes each event; Cache-Control: no-transform makes compression skip the stream',
    });
  }

  const cacheControl = h['cache-control'] ?? '';
  if (!/no-cache|no-store/i.test(cacheControl)) {
    checks.push({ name: 'Cache-Control', level: 'warn', value: cacheControl || '(none)', note: 'without no-cache, a cache or CDN may hold or replay the stream' });
  } else if (!/no-transform/i.test(cacheControl)) {
    checks.push({ name: 'Cache-Control', level: 'info', value: cacheControl, note: 'no-transform would also keep compression and CDNs from rewriting the stream' });
  } else checks.push({ name: 'Cache-Control', level: 'ok', value: cacheControl });

  const accel = h['x-accel-buffering'];
  if (accel?.trim().toLowerCase() === 'no') checks.push({ name: 'X-Accel-Buffering', level: 'ok', value: accel });
  else if (accel !== undefined) checks.push({ name: 'X-Accel-Buffering', level: 'warn', value: accel, note: 'asks nginx to buffer the stream' });
  else if (buffered) checks.push({ name: 'X-Accel-Buffering', level: 'warn', value: '(none)', note: 'nginx holds a proxied stream unless the upstream sends X-Accel-Buffering: no' });
  else checks.push({ name: 'X-Accel-Buffering', level: 'info', value: '(none)', note: 'not sent, or removed by an nginx that obeyed it' });

  const connection = h.connection;
  checks.push(
    connection?.toLowerCase() === 'close'
      ? { name: 'Connection', level: 'info', value: connection, note: 'fine for a stream, which ends with its connection anyway' }
      : { name: 'Connection', level: 'ok', value: connection ?? '(none)' },
  );

  const length = h['content-length'];
  if (length !== undefined) {
    checks.push({ name: 'Transfer-Encoding', level: 'fail', value: h['transfer-encoding'] ?? '(none)', note: `Content-Length: ${length}` });
    findings.push({
      culprit: 'content-length',
      level: 'fail',
      problem: `Content-Length: ${length} makes this a finite response: the stream ends after ${length} bytes.`,
      fix: 'Do not set Content-Length on an event stream; Node then sends it chunked.',
    });
  } else if (h['transfer-encoding'] === undefined) {
    checks.push({ name: 'Transfer-Encoding', level: 'info', value: '(none)', note: 'the body ends when the connection closes (HTTP/1.0 style), which proxies tend to buffer' });
  } else checks.push({ name: 'Transfer-Encoding', level: 'ok', value: h['transfer-encoding'] });
  return checks;
}

function idleCheck(period: number, source: string): Check {
  const over = IDLE_LIMITS.filter((limit) => period >= limit.ms);
  return over.length > 0
    ? { name: 'heartbeat', level: 'warn', value: `every ${ms(period)} (${source})`, note: `a quiet stream is dropped by ${over.map((l) => l.who).join(' and ')}` }
    : { name: 'heartbeat', level: 'ok', value: `every ${ms(period)} (${source})`, note: 'inside the idle limits of load balancers (60 s) and CDNs (100 s)' };
}

function heartbeatCheck(s: Sample): Check {
  if (s.heartbeat === false) {
    return { name: 'heartbeat', level: 'warn', value: 'off (server says)', note: `a stream quiet for 60 s is dropped by ${IDLE_LIMITS.map((l) => l.who).join(' and ')}` };
  }
  if (s.heartbeat !== undefined) return idleCheck(s.heartbeat, 'server says');
  const times = [s.connectMs ?? 0, ...s.arrivals.map((a) => a.at), s.endMs ?? s.elapsedMs];
  const silence = Math.max(...gaps(times));
  if (silence >= IDLE_LIMITS[0]!.ms) return idleCheck(silence, 'longest silence seen');
  const comments = s.arrivals.filter((a) => a.kind === 'comment').map((a) => a.at);
  if (comments.length >= 2) return idleCheck(median(gaps(comments)), 'comments seen');
  return {
    name: 'heartbeat',
    level: 'info',
    value: 'none seen',
    note: `longest silence ${ms(silence)} in ${ms(s.elapsedMs)}; sample with --duration 70s to see whether a quiet stream stays inside the 60 s idle limit of load balancers`,
  };
}

function timingChecks(s: Sample, delivery: Delivery): Check[] {
  const connect = s.connectMs ?? 0;
  const events = s.arrivals.filter((a) => a.kind === 'event').map((a) => a.at);
  const spacing = gaps(events);
  const deliveryLevel: Record<Delivery['kind'], Level> = { prompt: 'ok', held: 'fail', bursty: 'warn', clumped: 'warn', silent: 'warn', 'no-headers': 'fail' };
  const headersLate = s.headersMs !== undefined && s.headersMs - connect > LATE_HEADERS_MS;
  const checks: Check[] = [
    s.headersMs === undefined
      ? { name: 'time to headers', level: 'fail', value: `none in ${ms(s.elapsedMs)}` }
      : {
          name: 'time to headers',
          level: !headersLate ? 'ok' : delivery.kind === 'held' ? 'warn' : 'fail',
          value: ms(s.headersMs),
          note: `connected after ${ms(connect)}${headersLate && delivery.kind === 'held' ? '; held with the body' : ''}`,
        },
    { name: 'first byte', level: 'info', value: s.firstByteMs === undefined ? 'none' : ms(s.firstByteMs) },
    { name: 'first event', level: 'info', value: s.firstEventMs === undefined ? `none in ${ms(s.elapsedMs)}` : ms(s.firstEventMs) },
    {
      name: 'delivery',
      level: deliveryLevel[delivery.kind],
      value:
        count(events.length, 'event') +
        (spacing.length === 0 ? '' : `, gaps ${ms(Math.min(...spacing))}–${ms(Math.max(...spacing))} (median ${ms(median(spacing))})`),
      note: delivery.evidence,
    },
  ];
  const probe = probeLag(s);
  if (probe !== undefined) checks.push({ name: 'hop delay', level: probe.worst >= HOLD_MS ? 'fail' : delivery.kind === 'clumped' ? 'warn' : 'ok', value: probe.text });
  checks.push(heartbeatCheck(s));
  return checks;
}

function compressionFinding(main: Sample, delivery: Delivery, layers: Layer[]): Finding {
  const how = main.headersMs === undefined ? 'not even the headers arrived' : delivery.evidence;
  const inApp =
    'In the application, set `Cache-Control: no-transform` before the first byte, so that compression skips the stream, ' +
    'or flush the compressor after every event (res.flush()); sse() does either by itself.';
  const nginx = nginxIn(layers);
  const named = adviceFor(layers, 'compression');
  return {
    culprit: 'compression',
    level: 'fail',
    problem:
      `Compression holds the stream: asked for "${main.acceptEncoding}" as a browser does, ${how}; asked for no compression, the events came promptly.` +
      (layers.length === 0
        ? " No proxy shows in the responses, so it is likely the application's compression (such as the compression middleware)."
        : nginx !== undefined
          ? ` The responses come from ${nginx}: check its gzip settings (gzip_types text/event-stream) first, then the application's compression.`
          : ` The responses come through ${layers.map((l) => l.product).join(', ')}: check its compression first, then the application's.`),
    fix: [...named, inApp].join(' '),
  };
}

function deliveryFindings(main: Sample, delivery: Delivery, control: Sample | undefined, layers: Layer[]): Finding[] {
  const controlDelivery = control === undefined ? undefined : deliveryOf(control);
  const named = adviceFor(layers, 'buffering');
  const holder =
    layers.length === 0
      ? " A reverse proxy or CDN in front, or the server's own framework, holds it."
      : ` The response comes through ${layers.map((l) => `${l.product} (${l.evidence})`).join(', ')}.${named.length === 0 ? '' : ` ${named.join(' ')}`}`;
  switch (delivery.kind) {
    case 'held':
      return [{ culprit: 'buffering', level: 'fail', problem: `Something buffers the stream: ${delivery.evidence}.${holder}`, fix: BUFFER_FIX }];
    case 'bursty':
      return [
        {
          culprit: 'buffering',
          level: 'warn',
          problem: `Events arrive in bursts: ${delivery.evidence}, the mark of a buffer that fills and empties (unless the server sends them in batches).${holder}`,
          fix: BUFFER_FIX,
        },
      ];
    case 'clumped':
      return [
        {
          culprit: 'buffering',
          level: 'warn',
          problem: `Events arrive clumped: ${delivery.evidence}. A layer waits for more data before it sends a small packet on.`,
          // HAProxy leaves no header of its own: it is named whenever no other layer explains the clumping.
          fix: named.length > 0 ? named.join(' ') : `${ADVICE.HAProxy.buffering!} Other proxies: turn off their output buffering for the stream.`,
        },
      ];
    case 'no-headers': {
      // Only a second sample that got no headers either rules compression out.
      const both = control !== undefined && control.headersMs === undefined;
      // Without headers there is no fingerprint; over HTTP/2, nginx is the usual holder.
      const held = [
        ...(main.protocol === 'HTTP/2' && !layers.some((l) => l.product === 'nginx') ? [ADVICE.nginx.headHeld!] : []),
        ...(main.protocol === 'HTTP/2' || layers.some((l) => l.product === 'Caddy') ? adviceFor(layers, 'headHeld') : []),
      ];
      return [
        {
          culprit: 'no-response',
          level: 'fail',
          problem:
            `No response headers within ${ms(main.elapsedMs)}${both ? ', with or without compression' : ''}: either the server writes nothing until its first event, ` +
            'or a layer holds the whole response, headers included (nginx does with its default proxy_http_version 1.0, or with gzip on; ' +
            'nginx over HTTP/2 and Caddy with `encode` hold the head until the first body byte).',
          fix:
            (held.length > 0 ? `${held.join(' ')} ` : '') +
            'Flush the headers and write a comment line (":") as soon as the stream opens (sse() does), and send `X-Accel-Buffering: no` for nginx. ' +
            'Run the doctor against the application itself, without the proxy, to tell the two apart.',
        },
      ];
    }
    case 'silent':
      return [
        {
          culprit: 'silence',
          level: 'warn',
          problem: `Nothing but headers: ${delivery.evidence}${controlDelivery?.kind === 'silent' ? ', with or without compression' : ''}. Either the server had nothing to send, or a buffer holds it.`,
          fix: 'Enable sse({ probe: true }) on the route: the doctor then gets a timestamped comment every 250 ms and tells the two apart. Or sample for longer.',
        },
      ];
    case 'prompt':
      return [];
  }
}

/**
 * A stream that broke after its headers: an idle cut when it had been quiet for a while (a timeout
 * longer than the heartbeat), a hard cut when events were still flowing (a bound on the whole response).
 */
function cutFinding(main: Sample, layers: Layer[]): Finding {
  const at = main.endMs ?? main.elapsedMs;
  const times = [main.headersMs!, ...main.arrivals.map((a) => a.at)].filter((t) => t <= at);
  const last = Math.max(...times);
  const quiet = at - last;
  const spacing = gaps(times);
  const idle = quiet >= HOLD_MS && (spacing.length < 2 || quiet > 3 * median(spacing));
  const named = adviceFor(layers, 'cut');
  if (idle) {
    const limit = layers.flatMap((l) => (LAYER_IDLE_LIMITS[l.product] === undefined ? [] : [`${l.product}'s ${LAYER_IDLE_LIMITS[l.product]!.what}`]));
    const heartbeat =
      main.heartbeat === undefined
        ? `No heartbeat came in those ${ms(quiet)}: the stream's heartbeat, if any, is slower than this idle limit.`
        : main.heartbeat === false
          ? 'The server says its heartbeat is off.'
          : `The server's heartbeat is every ${ms(main.heartbeat)}, ${main.heartbeat >= quiet ? 'longer than this idle limit' : 'shorter than that, so a layer in between holds or drops the heartbeat comments'}.`;
    const suggestion = Math.max(1000, Math.floor(quiet / 2000) * 1000);
    return {
      culprit: 'idle-cut',
      level: 'fail',
      problem:
        `The stream was cut after being quiet for ${ms(quiet)} (${ms(at)} after the request): an idle cut, by a layer that drops connections quiet for about ${ms(quiet)}` +
        `${limit.length > 0 ? ` (${limit.join(', ')})` : ''}. ${heartbeat}`,
      fix: `Send a heartbeat well inside that limit, such as sse({ heartbeat: ${suggestion} }), or raise the layer's idle timeout.${named.length === 0 ? '' : ` ${named.join(' ')}`}`,
    };
  }
  return {
    culprit: 'hard-cut',
    level: 'fail',
    problem: `The stream was cut ${ms(at)} after the request (${main.error}) while it was not quiet: the last item came ${ms(quiet)} before. Not an idle timeout, but a bound on the whole response, or a crash.`,
    fix:
      named.length > 0
        ? named.join(' ')
        : "Look for a limit on the response's total time: Varnish's send_timeout, Envoy's route timeout (15 s by default), a load balancer's request timeout, request-timeout middleware; or the server's logs for a crash.",
  };
}

function verdict(checks: Check[], findings: Finding[]): Diagnosis {
  const failed = checks.some((c) => c.level === 'fail') || findings.some((f) => f.level === 'fail');
  return { verdict: failed ? 'problems' : 'healthy', checks, findings };
}

/** Judges a doctor result: one check per header and timing, and the findings that explain them. */
/** Why the doctor got no response, and what to try. */
function unreachable(main: Sample): Diagnosis {
  const via = main.proxy === undefined ? '' : ` through the proxy ${main.proxy}`;
  const fix = main.tlsError
    ? 'The certificate could not be verified. For a self-signed or private-CA certificate, point NODE_EXTRA_CA_CERTS at the CA\'s PEM file ' +
      '(NODE_EXTRA_CA_CERTS=ca.pem npx sse-guard doctor …), or run with --insecure to sample the stream without checking it; browsers need the CA installed too.'
    : main.proxy === undefined
      ? 'Check the URL, that the server is running, and that this machine can reach it.'
      : 'Check the URL, that the proxy and the server are running, and that the proxy may reach the server; --proxy overrides the proxy, NO_PROXY exempts hosts.';
  return {
    verdict: 'unreachable',
    checks: [{ name: 'connection', level: 'fail', value: main.error ?? 'failed' }],
    findings: [
      {
        culprit: 'connection',
        level: 'fail',
        problem: main.tlsError
          ? `TLS failed${via}: ${main.error}.`
          : main.connected
            ? `The connection broke before any response${via}: ${main.error}.`
            : `Could not connect${via}: ${main.error}.`,
        fix,
      },
    ],
  };
}

/** Judges a doctor result: one check per header and timing, and the findings that explain them. */
export function diagnose({ main, control }: DoctorResult): Diagnosis {
  if (main.status === undefined && (!main.connected || main.error !== undefined)) return unreachable(main);
  const checks: Check[] = [];
  const findings: Finding[] = [];
  const delivery = deliveryOf(main);
  const controlDelivery = control === undefined ? undefined : deliveryOf(control);
  const compressionHolds = delivery.kind !== 'prompt' && controlDelivery?.kind === 'prompt';
  const layers = layersOf(main, control);

  checks.push({
    name: 'layers',
    level: 'info',
    value: layers.length === 0 ? 'none recognised' : layers.map((l) => `${l.product} (${l.evidence})`).join(', '),
  });

  // When the browser-like request got no headers at all, the uncompressed one shows what the server sends.
  const shown = main.headersMs !== undefined ? main : control?.headersMs !== undefined ? control : undefined;
  if (shown !== undefined) {
    checks.push({
      name: 'status',
      level: shown.status === 200 ? 'ok' : 'fail',
      value: `${shown.status} ${shown.statusText ?? ''}`.trimEnd(),
      note: shown === control ? 'headers from the uncompressed sample; the browser-like one got none' : undefined,
    });
    if (shown.status !== 200) {
      findings.push(statusFinding(shown, shown.headersMs! - (shown.connectMs ?? 0)));
      return verdict(checks, findings);
    }
    checks.push(...headerChecks(shown, delivery, compressionHolds, nginxIn(layers), findings));
  }
  const timings = timingChecks(main, delivery);
  checks.push(...timings);
  if (main.longLine !== undefined) {
    findings.push({
      culprit: 'long-line',
      level: 'fail',
      problem: `A line grew past ${count(main.longLine, 'character')} without a line break; the doctor stopped reading there. EventSource would keep buffering it and dispatch nothing.`,
      fix: 'End every field with a newline and keep events small: send a large payload as several events (sse() writes each data line of a value with its own "data:").',
    });
  } else if (main.longEvent !== undefined) {
    findings.push({
      culprit: 'long-event',
      level: 'fail',
      problem: `An event grew past ${count(main.longEvent, 'character')} without the blank line that ends it; the doctor stopped reading there. EventSource would keep buffering it and dispatch nothing.`,
      fix: 'End every event with a blank line ("\\n\\n") and keep events small: send a large payload as several events.',
    });
  } else if (main.error?.startsWith('cannot decode')) {
    findings.push({
      culprit: 'connection',
      level: 'fail',
      problem: `The stream stopped ${ms(main.elapsedMs)} after the request: ${main.error}.`,
      fix: 'Send the stream uncompressed (Cache-Control: no-transform), or in an encoding the client offered.',
    });
  } else if (main.error !== undefined && main.headersMs !== undefined) {
    findings.push(cutFinding(main, layers));
  }

  const encoding = encodingOf(main);
  const named = adviceFor(layers, 'compression');
  // The application asked for no compression, and a layer known to ignore that compressed anyway.
  if (!compressionHolds && encoding !== undefined && named.length > 0 && /no-transform/i.test(main.headers['cache-control'] ?? '')) {
    findings.push({
      culprit: 'compression',
      level: 'warn',
      problem: `The stream arrives compressed (${encoding}) although it says Cache-Control: no-transform: ${layers.map((l) => l.product).join(' or ')} ignores it. It works while that layer flushes every event, and each open stream keeps a compressor.`,
      fix: named.join(' '),
    });
  }
  if (compressionHolds) findings.push(compressionFinding(main, delivery, layers));
  // A line that never ended explains the silence: no delivery finding on top.
  else if (main.longLine === undefined && main.longEvent === undefined) findings.push(...deliveryFindings(main, delivery, control, layers));
  const headers = timings.find((c) => c.name === 'time to headers');
  if (headers?.level === 'fail' && main.headersMs !== undefined && !compressionHolds) {
    findings.push({
      culprit: 'late-headers',
      level: 'fail',
      problem: `The headers came ${ms(main.headersMs - (main.connectMs ?? 0))} after the connection: the server writes nothing until it has an event, so the browser's open event waits, and request timeouts or proxies may give up first.`,
      fix: 'Flush the headers as soon as the stream opens (res.flushHeaders() once they are set; sse() does).',
    });
  }
  const heartbeat = timings.find((c) => c.name === 'heartbeat');
  if (heartbeat?.level === 'warn') {
    findings.push({
      culprit: 'heartbeat',
      level: 'warn',
      problem: `Heartbeat ${heartbeat.value}: ${heartbeat.note}.`,
      fix: 'Send a comment line (":") whenever the stream has been quiet for 30 s or less; sse() sends one after 15 s of quiet by default (the heartbeat option).',
    });
  }
  return verdict(checks, findings);
}
