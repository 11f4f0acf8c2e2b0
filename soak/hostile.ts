// Part 5, hostile input: a seeded fuzz of events (CR, LF, NUL, BOM, lone surrogate halves, huge
// lines, bad ids and retries) and of Last-Event-ID headers. Every valid event must round-trip exactly
// through a spec parser, every invalid one must be rejected with ERR_SSE_INVALID_FIELD with nothing
// written, and no Last-Event-ID may crash the server or replay what it should not.
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import express from 'express';
import { Channel, serializeEvent, SseGuardError, sse, type SseEvent, type SseStream } from '../src/index';
import { checkUnhandled, inBatches, KB, Random, readEvents, scale, spawnServer, type ClientEvent, type Mode, type Part, type Serve } from './harness';

// ---------------------------------------------------------------------------------------------
// The fuzz: what is generated, and what the spec says should come out of it

const PIECES = ['a', 'Z', '0', ' ', '  ', ':', ': ', 'data:', 'id: 9', '\t', '\r', '\n', '\r\n', '\n\n', '\0', '\uFEFF', 'é', '€', '\u2028', '😀', '\uD800', '\uDFFF', '\uDBFF\uDBFF', '{"x":1}'];
// Events are rarely hostile in every field at once; the plain pieces keep most of them valid.
const PLAIN = ['a', 'b', 'c', 'Z', '0', '9', ' ', '-', '.'];

function text(random: Random): string {
  const roll = random.next();
  // One in a thousand is a huge single line, one in fifty a long one.
  const length = roll < 0.001 ? 256 * KB + random.int(768 * KB) : roll < 0.02 ? 1 * KB + random.int(16 * KB) : random.int(24);
  if (length > 64) return random.pick(PLAIN).repeat(length);
  let out = '';
  const hostile = random.chance(0.3);
  for (let i = 0; i < length; i++) out += hostile && random.chance(0.3) ? random.pick(PIECES) : random.pick(PLAIN);
  return out;
}

/** A value the JSON serializer turns into text: lone surrogates come out escaped, so they are valid here. */
function jsonValue(random: Random): unknown {
  switch (random.int(6)) {
    case 0:
      return null;
    case 1:
      return random.pick([0, -1, 1.5, 1e21]);
    case 2:
      return { text: text(random), n: random.int(100) };
    case 3:
      return [text(random), text(random)];
    case 4:
      return random.chance(0.5);
    default:
      return text(random);
  }
}

/** One argument for send(): mostly events, some plain strings; about a third invalid. */
export function fuzzEvent(random: Random): SseEvent | string {
  if (random.chance(0.05)) return text(random);
  const roll = random.next();
  const data = roll < 0.8 ? text(random) : roll < 0.96 ? jsonValue(random) : roll < 0.98 ? undefined : () => 'no JSON for a function';
  const ev: SseEvent = { data };
  if (random.chance(0.5)) ev.event = text(random);
  if (random.chance(0.4)) ev.id = random.chance(0.2) ? random.pick([0, 7, -3, 2.5, Number.NaN, Infinity]) : text(random);
  if (random.chance(0.05)) ev.retry = random.pick([0, 1500, -1, 2.5, Number.NaN, 2 ** 53, '100' as unknown as number]);
  return ev;
}

interface Expected {
  event: string | undefined;
  data: string;
  id: string | undefined;
  retry: number | undefined;
}

const noBreak = (value: string): boolean => !/[\r\n]/.test(value);

/**
 * What a client must see for `arg`, or undefined when it must be rejected. Written from the spec, not
 * from the serializer: data is split on CRLF, CR and LF and rejoined with LF; an empty event name is
 * the default type; an id with NUL would be ignored by the client, and text that is not well-formed
 * UTF-16 cannot be sent as UTF-8 unchanged, so both are rejected.
 */
export function expectedOf(arg: SseEvent | string): Expected | undefined {
  const ev: SseEvent = typeof arg === 'string' ? { data: arg } : arg;
  const data = typeof ev.data === 'string' ? ev.data : JSON.stringify(ev.data);
  if (typeof data !== 'string' || !data.isWellFormed()) return undefined;
  const { event, id, retry } = ev;
  if (event !== undefined && !(typeof event === 'string' && noBreak(event) && event.isWellFormed())) return undefined;
  if (typeof id === 'number' && !Number.isFinite(id)) return undefined;
  // An id must come back unchanged in Last-Event-ID: no control characters, no space at either end.
  if (typeof id === 'string' && !(!/[\x00-\x1f\x7f]|^[ \t]|[ \t]$/.test(id) && id.isWellFormed())) return undefined;
  if (retry !== undefined && !(typeof retry === 'number' && Number.isSafeInteger(retry) && retry >= 0 && retry <= 2147483647)) return undefined;
  return { event: event === '' ? undefined : event, data: data.replace(/\r\n?/g, '\n'), id: id === undefined ? undefined : String(id), retry };
}

/** Compares what the parser gave with what was expected; `anyId` for events whose id the channel assigned. */
function mismatch(got: ClientEvent | undefined, want: Expected, anyId = false): string | undefined {
  if (got === undefined) return 'no event';
  if (got.event !== want.event) return `event ${JSON.stringify(got.event)} != ${JSON.stringify(want.event)}`;
  if (got.data !== want.data) return `data differs (${got.data.length} vs ${want.data.length} chars)`;
  if (anyId ? !/^[0-9a-z]+-\d+$/.test(got.id ?? '') : got.id !== want.id) return `id ${JSON.stringify(got.id)} != ${JSON.stringify(want.id)}`;
  return undefined;
}

/** Which hostile traits a generated argument has, for the record of what the fuzz covered. */
function traitsOf(arg: SseEvent | string): string[] {
  const ev: SseEvent = typeof arg === 'string' ? { data: arg } : arg;
  const texts = [ev.data, ev.event, ev.id].filter((value): value is string => typeof value === 'string');
  const traits: string[] = [];
  if (texts.some((t) => /[\r\n]/.test(t))) traits.push('CR/LF');
  if (texts.some((t) => t.includes('\0'))) traits.push('NUL');
  if (texts.some((t) => !t.isWellFormed())) traits.push('lone surrogate');
  if (texts.some((t) => t.length > 256 * KB)) traits.push('line > 256 KB');
  if (typeof ev.data !== 'string') traits.push('non-string data');
  if (ev.retry !== undefined) traits.push('retry');
  return traits;
}

const isInvalidField = (error: unknown): boolean => error instanceof SseGuardError && error.code === 'ERR_SSE_INVALID_FIELD';

// ---------------------------------------------------------------------------------------------
// The server side

const HISTORY = 100;
const PUBLISHED = 200;

export const serve: Serve = async ({ server }) => {
  const app = express();

  // The fuzz through a real stream: even events with send(), odd ones through a channel.
  app.get('/fuzz', sse({ heartbeat: false, highWaterMark: 256 * KB, maxBufferedBytes: 8 * 1024 * KB }), (req, res) => {
    const stream: SseStream = res.sse;
    const random = new Random(Number(req.query.seed));
    const count = Number(req.query.count);
    const channel = new Channel();
    channel.subscribe(stream);
    const rejected: number[] = [];
    const otherErrors: string[] = [];
    void (async () => {
      for (let i = 0; i < count && !stream.closed; i++) {
        const arg = fuzzEvent(random);
        try {
          if (i % 2 === 0) stream.send(arg);
          else await channel.publish(typeof arg === 'string' ? { data: arg } : arg);
        } catch (error) {
          if (isInvalidField(error)) rejected.push(i);
          else otherErrors.push(String(error));
        }
        if (stream.bufferedBytes > 256 * KB) await stream.ready();
      }
      stream.send({ event: 'done', data: { rejected, otherErrors } });
      stream.close();
      await channel.close();
    })();
  });

  // Last-Event-ID: the replay (or the resync event), then an 'end' event, then the end. The memory
  // adapter replays within subscribe() while the replay stays under highWaterMark, as these few KB do.
  const channel = new Channel({ history: HISTORY });
  const ids: string[] = [];
  for (let i = 1; i <= PUBLISHED; i++) ids.push(await channel.publish({ data: `event ${i}` }));
  app.get('/replay', sse({ heartbeat: false }), (_req, res) => {
    channel.subscribe(res.sse);
    res.sse.send({ event: 'end', data: '' });
    res.sse.close();
  });

  server.on('request', app);
  return { ids: () => ids };
};

// ---------------------------------------------------------------------------------------------
// The client side

interface Fuzzed {
  valid: number;
  invalid: number;
  failures: string[];
}

/** Counts the traits of the events a seed generates. */
function coverage(seed: number, count: number): string {
  const random = new Random(seed);
  const counts: Record<string, number> = {};
  for (let i = 0; i < count; i++) for (const trait of traitsOf(fuzzEvent(random))) counts[trait] = (counts[trait] ?? 0) + 1;
  return Object.entries(counts).map(([trait, n]) => `${n} ${trait}`).join(', ');
}

/** The serializer alone: each event serialized, then parsed back. */
function fuzzSerializer(seed: number, count: number): Fuzzed {
  const random = new Random(seed);
  const result: Fuzzed = { valid: 0, invalid: 0, failures: [] };
  for (let i = 0; i < count && result.failures.length < 5; i++) {
    const arg = fuzzEvent(random);
    const want = expectedOf(arg);
    let wire: string;
    try {
      wire = serializeEvent(typeof arg === 'string' ? { data: arg } : arg);
    } catch (error) {
      if (want !== undefined || !isInvalidField(error)) result.failures.push(`#${i}: ${want === undefined ? 'wrong error' : 'rejected a valid event'}: ${String(error)}`);
      result.invalid++;
      continue;
    }
    if (want === undefined) {
      result.failures.push(`#${i}: accepted an invalid event: ${JSON.stringify(wire.slice(0, 80))}`);
      continue;
    }
    result.valid++;
    const events: EventSourceMessage[] = [];
    const retries: number[] = [];
    const parser = createParser({ onEvent: (event) => events.push(event), onRetry: (retry) => retries.push(retry) });
    parser.feed(wire);
    const wrong = events.length !== 1 ? `${events.length} events` : mismatch(events[0], want);
    const retryWrong = want.retry !== undefined && retries[0] !== want.retry ? `retry ${retries[0]} != ${want.retry}` : undefined;
    if (wrong !== undefined || retryWrong !== undefined) result.failures.push(`#${i}: ${wrong ?? retryWrong}`);
  }
  return result;
}

/** The same through a stream, a channel, a socket and Node's HTTP client. */
async function fuzzWire(url: string, seed: number, count: number): Promise<Fuzzed & { bytes: number }> {
  const random = new Random(seed);
  const expected = Array.from({ length: count }, () => expectedOf(fuzzEvent(random)));
  const { events, retries, complete } = await readEvents(`${url}/fuzz?seed=${seed}&count=${count}`);
  const done = events.pop();
  const result = { valid: 0, invalid: 0, failures: [] as string[], bytes: events.reduce((sum, event) => sum + event.data.length, 0) };
  if (!complete || done?.event !== 'done') return { ...result, failures: ['the stream did not end with its summary'] };
  const summary = JSON.parse(done.data) as { rejected: number[]; otherErrors: string[] };
  const rejected = new Set(summary.rejected);
  let next = 0;
  const wantRetries: number[] = [];
  for (let i = 0; i < count && result.failures.length < 5; i++) {
    const want = expected[i];
    if (want === undefined) {
      result.invalid++;
      if (!rejected.has(i)) result.failures.push(`#${i}: an invalid event was not rejected`);
      continue;
    }
    result.valid++;
    if (rejected.has(i)) result.failures.push(`#${i}: a valid event was rejected`);
    if (want.retry !== undefined) wantRetries.push(want.retry);
    // Odd events went through the channel, which assigns an id to those that had none.
    const wrong = mismatch(events[next++], want, i % 2 === 1 && want.id === undefined);
    if (wrong !== undefined) result.failures.push(`#${i}: ${wrong}`);
  }
  if (next !== events.length) result.failures.push(`${events.length - next} events on the wire that nothing accounts for`);
  if (summary.otherErrors.length > 0) result.failures.push(`errors other than ERR_SSE_INVALID_FIELD: ${summary.otherErrors.slice(0, 3).join('; ')}`);
  if (retries.join() !== wantRetries.join()) result.failures.push(`retry fields differ: ${retries.length} vs ${wantRetries.length}`);
  return result;
}

type Outcome = { status: number; replayed: string[]; resync: string | undefined; failure?: string };

/** What a Last-Event-ID header value must produce: the replay after a kept id, else the resync event. */
async function resume(url: string, header: string | string[]): Promise<Outcome> {
  const { status, events, complete } = await readEvents(`${url}/replay`, { 'last-event-id': header });
  const outcome: Outcome = { status, replayed: [], resync: undefined };
  if (status !== 200) return outcome;
  const end = events.pop();
  if (!complete || end?.event !== 'end') return { ...outcome, failure: 'no end event' };
  for (const event of events) {
    if (event.event === 'resync') outcome.resync = (JSON.parse(event.data) as { lastEventId: string }).lastEventId;
    else outcome.replayed.push(event.id ?? '?');
  }
  return outcome;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Node drops the whitespace around a header value and joins repeated headers with ', '; the stream
 * then reads the value's bytes as UTF-8 when they are valid UTF-8 (the header goes out as Latin-1 bytes).
 */
function seenByServer(header: string | string[]): string {
  const value = (Array.isArray(header) ? header.map((h) => h.trim()).join(', ') : header).replace(/^[ \t]+|[ \t]+$/g, '');
  try {
    return utf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value;
  }
}

/** `ids` are those of the published events, in order. */
function judge(header: string | string[], outcome: Outcome, ids: string[]): string | undefined {
  if (outcome.failure !== undefined) return outcome.failure;
  const value = seenByServer(header);
  const kept = ids.indexOf(value);
  // Resumable when the events it missed are all still kept.
  const inHistory = kept >= 0 && ids.length - 1 - kept <= HISTORY;
  if (value === '') return outcome.replayed.length === 0 && outcome.resync === undefined ? undefined : 'an empty id replayed or resynced';
  if (inHistory) {
    const want = ids.slice(kept + 1).join();
    return outcome.resync === undefined && outcome.replayed.join() === want ? undefined : `replayed ${outcome.replayed.length} events after ${value}`;
  }
  if (outcome.replayed.length > 0) return `replayed ${outcome.replayed.length} events for an id not in the history`;
  return outcome.resync === value ? undefined : `resync carried ${JSON.stringify(outcome.resync?.slice(0, 40))}`;
}

/** Printable ASCII and Latin-1 (all a header value may hold), with spaces inside, at the ends too. */
function headerValue(random: Random, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    const roll = random.next();
    out += roll < 0.05 ? ' ' : roll < 0.07 ? '\t' : roll < 0.8 ? String.fromCharCode(0x21 + random.int(0x5e)) : String.fromCharCode(0x80 + random.int(0x80));
  }
  return out;
}

export async function run(mode: Mode, part: Part): Promise<void> {
  const count = scale(mode, 100_000, 20_000);
  const seed = 0xfa57;
  let started = Date.now();
  const pure = fuzzSerializer(seed, count);
  part.figure('serializer', `${count} events (seed ${seed}) in ${((Date.now() - started) / 1000).toFixed(1)} s: ${pure.valid} valid, ${pure.invalid} invalid`);
  part.figure('events with', coverage(seed, count));
  part.check('serializer: valid events round-trip exactly, invalid ones throw ERR_SSE_INVALID_FIELD', pure.failures.length === 0, pure.failures[0] ?? 'no mismatch');

  const server = await spawnServer('hostile');
  try {
    started = Date.now();
    const wire = await fuzzWire(server.url, seed + 1, count);
    part.figure('through a stream and a socket', `${count} events (seed ${seed + 1}) in ${((Date.now() - started) / 1000).toFixed(1)} s: ${wire.valid} valid, ${wire.invalid} invalid, ${(wire.bytes / 1024 / 1024).toFixed(1)} MB of data`);
    part.check('wire: exactly the valid events arrive, in order, each as sent; the invalid ones are rejected and write nothing', wire.failures.length === 0, wire.failures.slice(0, 3).join('; ') || 'no mismatch');

    const random = new Random(seed + 2);
    const samples = scale(mode, 2000, 500);
    const ids = await server.call<string[]>('ids');
    // The n-th id the channel assigns (`<prefix>-<n>`), also past the newest.
    const idOf = (n: number | string): string => ids[0]!.replace(/\d+$/, String(n));
    // Each bare, as a client of the process before a restart sends it (a resync), and as one of this channel's ids.
    const numbers = ['1', '99', '100', '101', '150', ' 150\t', '199', '200', '201', '0', '-150', '0150', '150.0', '1e2', '150 151'];
    const headers: Array<string | string[]> = [
      ...numbers,
      ...numbers.map((n) => n.replace(/\S+/g, (word) => idOf(word))),
      '', ' ', '__proto__', 'constructor', 'toString', ['150', '160'], [idOf(150), idOf(160)], 'é', '\xff'.repeat(100),
      // Just under Node's 16 KB header limit, with the request line and other headers.
      'x'.repeat(16_000), 'x'.repeat(16_250),
    ];
    for (let i = 0; i < samples; i++) {
      if (random.chance(0.3)) headers.push(idOf(1 + random.int(PUBLISHED + 20)));
      else headers.push(headerValue(random, 1 + random.int(random.chance(0.1) ? 15_000 : 64)));
    }
    started = Date.now();
    const failures: string[] = [];
    let resynced = 0;
    let replays = 0;
    await inBatches(headers.length, 16, async (i) => {
      const header = headers[i]!;
      const outcome = await resume(server.url, header);
      if (outcome.resync !== undefined) resynced++;
      if (outcome.replayed.length > 0) replays++;
      const wrong = outcome.status === 200 ? judge(header, outcome, ids) : `status ${outcome.status}`;
      if (wrong !== undefined) failures.push(`${JSON.stringify(String(header).slice(0, 40))}: ${wrong}`);
    });
    part.figure('Last-Event-ID', `${headers.length} values (up to 15000 bytes, Latin-1, padded with whitespace) in ${((Date.now() - started) / 1000).toFixed(1)} s: ${replays} replays, ${resynced} resyncs`);
    part.check('each id in the history replays exactly what followed it, any other id gets the resync event', failures.length === 0, failures.slice(0, 3).join('; ') || `${headers.length} as expected`);

    // Past Node's header limit (16 KB by default) the server answers 431 before sse() ever runs, and
    // may close the socket while a very large header is still being sent.
    const refusals: string[] = [];
    for (const length of [16_384, 17_000, 64 * KB, 1024 * KB]) {
      refusals.push(await resume(server.url, 'x'.repeat(length)).then(({ status }) => String(status), (error: NodeJS.ErrnoException) => error.code ?? String(error)));
    }
    const served = await resume(server.url, idOf(150));
    part.check(
      'oversized Last-Event-ID headers are refused (431, or the socket closed), and the server serves on',
      refusals.every((refusal) => ['431', 'ECONNRESET', 'EPIPE'].includes(refusal)) && judge(idOf(150), served, ids) === undefined,
      refusals.join(', '),
    );

    const probe = await server.probe();
    part.check('stats().open back to 0', probe.open === 0, String(probe.open));
    checkUnhandled(part, probe);
  } finally {
    await server.stop();
  }
}
