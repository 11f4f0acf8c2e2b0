// The wire format, byte for byte, and what a spec-following client (eventsource-parser) makes of it.
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import express from 'express';
import http from 'node:http';
import { sse, SseGuardError, type SseStream } from '../src/index';
import { serializeBody, serializeComment, serializeEvent, serializeId, serializeRetry } from '../src/stream/serialize';
import type { SseEvent } from '../src/core/types';
import { listen, type TestServer } from './helpers/server';

interface Received {
  events: EventSourceMessage[];
  comments: string[];
  retries: number[];
  errors: string[];
}

/** Feeds `text` to a parser as a client gets it: UTF-8 bytes, cut at the given byte offsets. */
function receive(text: string, cuts: number[] = []): Received {
  const got: Received = { events: [], comments: [], retries: [], errors: [] };
  const parser = createParser({
    onEvent: (message) => got.events.push(message),
    onComment: (comment) => got.comments.push(comment),
    onRetry: (retry) => got.retries.push(retry),
    onError: (error) => got.errors.push(error.message),
  });
  const bytes = Buffer.from(text, 'utf8');
  const decoder = new TextDecoder();
  let from = 0;
  for (const to of [...cuts, bytes.length]) {
    parser.feed(decoder.decode(bytes.subarray(from, to), { stream: true }));
    from = to;
  }
  return got;
}

/** The one event the client receives for `ev`, checked to arrive cleanly. */
function roundTrip(ev: SseEvent, serialize?: (data: unknown) => string): EventSourceMessage {
  const got = receive(serializeEvent(ev, serialize));
  expect(got.errors).toEqual([]);
  expect(got.events).toHaveLength(1);
  return got.events[0];
}

/** The code of the SseGuardError `fn` throws (anything else is reported as a mismatch). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof SseGuardError ? err.code : `not an SseGuardError: ${String(err)}`;
  }
  return 'did not throw';
}

const INVALID = 'ERR_SSE_INVALID_FIELD';

describe('serializeEvent: framing', () => {
  it('writes id, event, retry, then data, and ends with one blank line', () => {
    const ev = { id: '7', event: 'update', retry: 250, data: 'x' };
    expect(serializeEvent(ev)).toBe('id: 7\nevent: update\nretry: 250\ndata: x\n\n');
    const got = receive(serializeEvent(ev));
    expect(got).toEqual({ events: [{ id: '7', event: 'update', data: 'x' }], comments: [], retries: [250], errors: [] });
  });

  it('writes an event with data only as one data line and a blank line', () => {
    expect(serializeEvent({ data: 'hello' })).toBe('data: hello\n\n');
    expect(roundTrip({ data: 'hello' })).toEqual({ data: 'hello' });
  });

  it('is the id line followed by the body, so a channel can prepend ids to a shared body', () => {
    const ev = { id: 3, event: 'e', data: 'a\nb' };
    expect(serializeId(ev.id) + serializeBody(ev)).toBe(serializeEvent(ev));
    expect(serializeId(undefined)).toBe('');
  });
});

describe('serializeEvent: line breaks in data', () => {
  it.each([
    ['\\n (LF)', 'a\nb'],
    ['\\r (CR)', 'a\rb'],
    ['\\r\\n (CRLF)', 'a\r\nb'],
  ])('handles %s line ending correctly', (_name, data) => {
    expect(serializeEvent({ data })).toBe('data: a\ndata: b\n\n');
    expect(roundTrip({ data })).toEqual({ data: 'a\nb' });
  });

  it('handles mixed line endings in one payload', () => {
    expect(serializeEvent({ data: 'a\r\nb\rc\nd' })).toBe('data: a\ndata: b\ndata: c\ndata: d\n\n');
    expect(roundTrip({ data: 'a\r\nb\rc\nd' })).toEqual({ data: 'a\nb\nc\nd' });
  });

  it('handles consecutive line breaks as empty data lines', () => {
    expect(serializeEvent({ data: 'a\n\n\nb' })).toBe('data: a\ndata: \ndata: \ndata: b\n\n');
    expect(roundTrip({ data: 'a\n\n\nb' })).toEqual({ data: 'a\n\n\nb' });
    expect(serializeEvent({ data: '\r\r' })).toBe('data: \ndata: \ndata: \n\n');
    expect(roundTrip({ data: '\r\r' })).toEqual({ data: '\n\n' });
  });

  it('handles \\n\\r as two line breaks, not one', () => {
    expect(serializeEvent({ data: 'a\n\rb' })).toBe('data: a\ndata: \ndata: b\n\n');
    expect(roundTrip({ data: 'a\n\rb' })).toEqual({ data: 'a\n\nb' });
  });

  it('handles leading and trailing line breaks', () => {
    expect(serializeEvent({ data: '\na\r\n' })).toBe('data: \ndata: a\ndata: \n\n');
    expect(roundTrip({ data: '\na\r\n' })).toEqual({ data: '\na\n' });
  });

  it('splits multi-line output of a custom serialize as well', () => {
    const serialize = (): string => 'one\r\ntwo';
    expect(serializeEvent({ data: { any: 1 } }, serialize)).toBe('data: one\ndata: two\n\n');
    expect(roundTrip({ data: { any: 1 } }, serialize)).toEqual({ data: 'one\ntwo' });
  });
});

describe('serializeEvent: falsy values are values', () => {
  it('sends empty string data as one empty data line, which the client dispatches', () => {
    expect(serializeEvent({ data: '' })).toBe('data: \n\n');
    expect(roundTrip({ data: '' })).toEqual({ data: '' });
  });

  it.each([
    [0, '0'],
    [false, 'false'],
    [null, 'null'],
  ])('sends %p data as %p', (data, text) => {
    expect(serializeEvent({ data })).toBe(`data: ${text}\n\n`);
    expect(roundTrip({ data })).toEqual({ data: text });
  });

  it('sends id 0 as "0"', () => {
    expect(serializeEvent({ id: 0, data: 'x' })).toBe('id: 0\ndata: x\n\n');
    expect(roundTrip({ id: 0, data: 'x' })).toEqual({ id: '0', data: 'x' });
  });

  it("sends id '' as an empty id field, which resets the client's last event id", () => {
    expect(serializeEvent({ id: '', data: 'x' })).toBe('id: \ndata: x\n\n');
    expect(roundTrip({ id: '', data: 'x' })).toEqual({ id: '', data: 'x' });
  });

  it('leaves out id and event when they are undefined', () => {
    expect(serializeEvent({ id: undefined, event: undefined, data: 'x' })).toBe('data: x\n\n');
  });

  it('rejects undefined data, and anything but an object as the event', () => {
    expect(codeOf(() => serializeEvent({ data: undefined }))).toBe(INVALID);
    expect(codeOf(() => serializeEvent(null as never))).toBe(INVALID);
    expect(codeOf(() => serializeEvent('x' as never))).toBe(INVALID);
  });
});

describe('serializeEvent: text', () => {
  it('keeps emoji, CJK and astral characters intact in data, event and id', () => {
    const ev = { id: '🆔-一', event: '通知', data: '😀 漢字 𝄞 👩‍👩‍👧 🇯🇵' };
    expect(serializeEvent(ev)).toBe('id: 🆔-一\nevent: 通知\ndata: 😀 漢字 𝄞 👩‍👩‍👧 🇯🇵\n\n');
    expect(roundTrip(ev)).toEqual(ev);
  });

  it('keeps leading spaces, because the field is always written as "name: " with one space', () => {
    const ev = { id: '1', event: '  e', data: '   three' };
    expect(serializeEvent(ev)).toBe('id: 1\nevent:   e\ndata:    three\n\n');
    expect(roundTrip(ev)).toEqual(ev);
    expect(roundTrip({ data: ' a\n  b' })).toEqual({ data: ' a\n  b' });
  });

  it('keeps colons, field-like text and NUL in data, and NUL in event', () => {
    const ev = { event: 'a\0b', data: 'data: x\nid: 9\n: no comment\0' };
    expect(serializeEvent(ev)).toBe('event: a\0b\ndata: data: x\ndata: id: 9\ndata: : no comment\0\n\n');
    expect(roundTrip(ev)).toEqual(ev);
  });

  it('writes numeric ids in their JavaScript string form', () => {
    expect(serializeEvent({ id: -1.5, data: 'x' })).toBe('id: -1.5\ndata: x\n\n');
    expect(serializeEvent({ id: -0, data: 'x' })).toBe('id: 0\ndata: x\n\n');
  });
});

describe('serializeEvent: data serializers', () => {
  it('serializes objects with JSON.stringify by default, on one line', () => {
    const data = { text: 'two\nlines\r', n: 1, nested: [null, true] };
    expect(serializeEvent({ data })).toBe('data: {"text":"two\\nlines\\r","n":1,"nested":[null,true]}\n\n');
    expect(JSON.parse(roundTrip({ data }).data)).toEqual(data);
  });

  it('sends a lone surrogate inside JSON data, since JSON.stringify escapes it', () => {
    expect(serializeEvent({ data: { s: '\uD800' } })).toBe('data: {"s":"\\ud800"}\n\n');
    expect(JSON.parse(roundTrip({ data: { s: '\uD800' } }).data)).toEqual({ s: '\uD800' });
  });

  it('uses a custom serialize for non-string data, and sends strings as they are', () => {
    const serialize = (data: unknown): string => `<${JSON.stringify(data)}>`;
    expect(serializeEvent({ data: [1] }, serialize)).toBe('data: <[1]>\n\n');
    expect(serializeEvent({ data: 0 }, serialize)).toBe('data: <0>\n\n');
    expect(serializeEvent({ data: 'raw' }, serialize)).toBe('data: raw\n\n');
  });

  it('rejects data the serializer turns into no string', () => {
    expect(codeOf(() => serializeEvent({ data: () => 1 }))).toBe(INVALID);
    expect(codeOf(() => serializeEvent({ data: Symbol('s') }))).toBe(INVALID);
    expect(codeOf(() => serializeEvent({ data: 1 }, () => 1 as unknown as string))).toBe(INVALID);
  });

  it('turns a serializer that throws (BigInt, circular data) into ERR_SSE_INVALID_FIELD with the cause', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    for (const data of [{ n: 1n }, circular]) {
      let caught: unknown;
      try {
        serializeEvent({ data });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(SseGuardError);
      expect((caught as SseGuardError).code).toBe(INVALID);
      expect((caught as SseGuardError).cause).toBeInstanceOf(TypeError);
    }
  });
});

describe('serializeEvent: injection', () => {
  it.each([
    ['CR', 'a\rb'],
    ['LF', 'a\nb'],
    ['CRLF', 'a\r\ndata: injected'],
    ['a trailing LF', 'a\n'],
  ])('rejects event with %s', (_name, event) => {
    expect(codeOf(() => serializeEvent({ event, data: 'x' }))).toBe(INVALID);
  });

  it.each([
    ['CR', 'a\rb'],
    ['LF', 'a\nb'],
    ['CRLF', '1\r\nevent: injected'],
    ['NUL', 'a\0b'],
  ])('rejects id with %s', (_name, id) => {
    expect(codeOf(() => serializeEvent({ id, data: 'x' }))).toBe(INVALID);
    expect(codeOf(() => serializeId(id))).toBe(INVALID);
  });

  it('rejects ids that are neither a finite number nor a string', () => {
    for (const id of [NaN, Infinity, -Infinity, {}, true]) {
      expect(codeOf(() => serializeEvent({ id: id as never, data: 'x' }))).toBe(INVALID);
    }
  });

  it('rejects an event name that is not a string', () => {
    expect(codeOf(() => serializeEvent({ event: 1 as never, data: 'x' }))).toBe(INVALID);
  });

  it('names the field and the fix in the message', () => {
    expect(() => serializeEvent({ id: 'a\nb', data: 'x' })).toThrow(/^sse-guard: id must not contain control characters/);
  });
});

describe('serializeEvent: lone surrogates (no UTF-8 encoding)', () => {
  const lone = [
    ['a lone high surrogate', 'x\uD83D'],
    ['a lone low surrogate', '\uDE00x'],
    ['a reversed pair', '\uDE00\uD83D'],
  ];
  it.each(lone)('rejects data with %s', (_name, text) => {
    expect(codeOf(() => serializeEvent({ data: text }))).toBe(INVALID);
  });
  it.each(lone)('rejects event with %s', (_name, text) => {
    expect(codeOf(() => serializeEvent({ event: text, data: 'x' }))).toBe(INVALID);
  });
  it.each(lone)('rejects id with %s', (_name, text) => {
    expect(codeOf(() => serializeEvent({ id: text, data: 'x' }))).toBe(INVALID);
  });
  it.each(lone)('rejects a comment with %s', (_name, text) => {
    expect(codeOf(() => serializeComment(text))).toBe(INVALID);
  });
});

describe('retry', () => {
  it.each([0, 1, 3000, 2147483647])('writes retry %p', (ms) => {
    expect(serializeRetry(ms)).toBe(`retry: ${ms}\n\n`);
    expect(receive(serializeRetry(ms))).toEqual({ events: [], comments: [], retries: [ms], errors: [] });
  });

  it('writes -0 as 0', () => {
    expect(serializeRetry(-0)).toBe('retry: 0\n\n');
  });

  it.each([1.5, -1, NaN, '5', Infinity, -Infinity, 1e21, null])('rejects retry %p', (ms) => {
    expect(codeOf(() => serializeRetry(ms as number))).toBe(INVALID);
    expect(codeOf(() => serializeEvent({ retry: ms as number, data: 'x' }))).toBe(INVALID);
  });
});

describe('serializeComment', () => {
  it('writes a bare colon line for no text', () => {
    expect(serializeComment()).toBe(':\n');
    expect(serializeComment('')).toBe(':\n');
  });

  it('writes one comment line', () => {
    expect(serializeComment('hello')).toBe(': hello\n');
    expect(receive(serializeComment('hello')).comments).toEqual(['hello']);
  });

  it('writes one ":" line per line of a multi-line comment, for every kind of line break', () => {
    const text = serializeComment('a\nb\r\nc\rd\n\ne');
    expect(text).toBe(': a\n: b\n: c\n: d\n:\n: e\n');
    expect(receive(text)).toEqual({ events: [], comments: ['a', 'b', 'c', 'd', '', 'e'], retries: [], errors: [] });
  });

  it('cannot end or start an event, so the events around it arrive intact', () => {
    const stream = serializeEvent({ data: 'one' }) + serializeComment('data: fake\n\nid: 9') + serializeEvent({ data: 'two' });
    expect(receive(stream).events).toEqual([{ data: 'one' }, { data: 'two' }]);
  });
});

describe('over a real socket', () => {
  let server: TestServer;
  // Set by each test before its request: what the route does with the stream, and what it threw.
  let attempt: (stream: SseStream) => void;
  let thrown: unknown;

  beforeAll(async () => {
    const app = express();
    app.get('/events', sse({ heartbeat: false }), (_req, res) => {
      res.sse.send({ id: '1', data: 'before' });
      try {
        attempt(res.sse);
      } catch (err) {
        thrown = err;
      }
      res.sse.send({ id: '2', data: 'after' });
      res.sse.close();
    });
    server = await listen(app);
  });

  afterAll(() => server.close());

  function body(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      http
        .get(`${server.url}/events`, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve(Buffer.concat(chunks)));
          res.on('error', reject);
        })
        .on('error', reject);
    });
  }

  // The connect line (a comment), then the events around the attempt.
  const expected = ':\n' + serializeEvent({ id: '1', data: 'before' }) + serializeEvent({ id: '2', data: 'after' });

  it.each<[string, (stream: SseStream) => void]>([
    ['event with CR', (s) => s.send({ event: 'a\rb', data: 'x' })],
    ['event with LF', (s) => s.send({ event: 'a\nb', data: 'x' })],
    ['event with CRLF', (s) => s.send({ event: 'a\r\nb', data: 'x' })],
    ['id with CR', (s) => s.send({ id: 'a\rb', data: 'x' })],
    ['id with LF', (s) => s.send({ id: 'a\nb', data: 'x' })],
    ['id with NUL', (s) => s.send({ id: 'a\0b', data: 'x' })],
    ['a lone surrogate in data', (s) => s.send('x\uD800')],
    ['a lone surrogate in event', (s) => s.send({ event: '\uDC00', data: 'x' })],
    ['a lone surrogate in id', (s) => s.send({ id: '\uD800', data: 'x' })],
    ['a fractional retry on an event', (s) => s.send({ retry: 1.5, data: 'x' })],
    ['retry(-1)', (s) => s.retry(-1)],
    ['a comment with a lone surrogate', (s) => s.comment('\uD800')],
  ])('rejects %s and writes nothing; the next event arrives intact', async (_name, bad) => {
    attempt = bad;
    thrown = undefined;
    const bytes = await body();
    expect(thrown).toBeInstanceOf(SseGuardError);
    expect((thrown as SseGuardError).code).toBe(INVALID);
    expect(bytes.toString('utf8')).toBe(expected);
    expect(receive(bytes.toString('utf8')).events).toEqual([
      { id: '1', data: 'before' },
      { id: '2', data: 'after' },
    ]);
  });

  it('sends multi-line data, a multi-line comment and retry byte for byte', async () => {
    attempt = (s) => {
      s.send({ event: 'e', data: 'a\r\nb\rc' });
      s.comment('x\ny');
      s.retry(0);
    };
    thrown = undefined;
    const bytes = await body();
    expect(thrown).toBeUndefined();
    expect(bytes.toString('utf8')).toBe(
      ':\nid: 1\ndata: before\n\nevent: e\ndata: a\ndata: b\ndata: c\n\n: x\n: y\nretry: 0\n\nid: 2\ndata: after\n\n',
    );
  });
});

describe('seeded fuzz', () => {
  // mulberry32: small, fast and reproducible, so a failure can be replayed from the seed.
  function prng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  const SEED = 0x5eed;
  const COUNT = 5000;
  const random = prng(SEED);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];

  // Heavy in what breaks framing.
  const SAFE = [' ', ' ', ' ', ':', ':', ': ', 'a', 'Z', '0', 'é', '漢', '字', '😀', '𝄞', 'data', 'id', '\t'];
  const BREAKS = ['\r', '\r', '\n', '\n', '\r\n', '\r\n', '\0'];
  const FULL = [...SAFE, ...BREAKS, ...BREAKS];
  // Surrogate halves, now and then: alone they must be refused, as a high-low pair they are one astral character.
  const WITH_HALVES = [...FULL, '\uD83D', '\uDE00'];
  const alphabet = (): readonly string[] => (random() < 0.05 ? WITH_HALVES : FULL);
  const text = (chars: readonly string[], max: number): string => {
    let out = '';
    for (let i = int(max + 1); i > 0; i--) out += pick(chars);
    return out;
  };
  const field = (): string | undefined => {
    const r = random();
    if (r < 0.4) return undefined;
    return text(r < 0.75 ? SAFE : alphabet(), 6);
  };

  function randomEvent(): SseEvent {
    const r = random();
    const data = r < 0.85 ? text(alphabet(), 24) : pick([0, false, null, {}, { s: text(alphabet(), 8) }, [1, 'x']]);
    const ev: SseEvent = { data };
    const event = field();
    if (event !== undefined) ev.event = event;
    const id = random() < 0.15 ? pick([0, -1, 42, 1.5, NaN, Infinity]) : field();
    if (id !== undefined) ev.id = id;
    if (random() < 0.1) ev.retry = pick([0, 10, 1.5, -1, NaN]);
    return ev;
  }

  const LONE_SURROGATE = /\p{Cs}/u;
  /** An independent statement of the rules: which events must be refused. */
  function isValid(ev: SseEvent): boolean {
    if (typeof ev.data === 'string' && LONE_SURROGATE.test(ev.data)) return false;
    if (ev.event !== undefined && (/[\r\n]/.test(ev.event) || LONE_SURROGATE.test(ev.event))) return false;
    if (typeof ev.id === 'string' && (/[\x00-\x1f\x7f]|^[ \t]|[ \t]$/.test(ev.id) || LONE_SURROGATE.test(ev.id))) return false;
    if (typeof ev.id === 'number' && !Number.isFinite(ev.id)) return false;
    if (ev.retry !== undefined && !(Number.isInteger(ev.retry) && ev.retry >= 0 && ev.retry <= 2147483647)) return false;
    return true;
  }

  /** What the client must receive: CR and CRLF come back as LF, an empty event name means "message". */
  function expectedMessage(ev: SseEvent): EventSourceMessage {
    const data = typeof ev.data === 'string' ? ev.data.replace(/\r\n?/g, '\n') : JSON.stringify(ev.data);
    return { data, event: ev.event === '' ? undefined : ev.event, id: ev.id === undefined ? undefined : String(ev.id) };
  }

  // Known fields in a fixed order, LF only, and one blank line: the terminator.
  const FRAME = /^(id: [^\n]*\n)?(event: [^\n]*\n)?(retry: \d+\n)?(data: [^\n]*\n)+\n$/;

  const events = Array.from({ length: COUNT }, randomEvent);
  const valid = events.filter(isValid);

  it(`draws both outcomes and the hard cases (seed ${SEED})`, () => {
    const text = (value: unknown): string => (typeof value === 'string' ? value : '');
    expect(valid.length).toBeGreaterThan(COUNT / 4);
    expect(valid.length).toBeLessThan(COUNT * 0.9);
    expect({
      validWithCR: valid.some((ev) => text(ev.data).includes('\r')),
      validWithSurrogatePair: valid.some((ev) => text(ev.data).includes('\uD83D\uDE00')),
      validNamedWithColon: valid.some((ev) => text(ev.event).includes(':')),
      validWithStringId: valid.some((ev) => text(ev.id) !== ''),
      validWithJson: valid.some((ev) => typeof ev.data === 'object' && ev.data !== null),
      refusedLoneSurrogate: events.some((ev) => LONE_SURROGATE.test(text(ev.data))),
      refusedNulInId: events.some((ev) => text(ev.id).includes('\0')),
    }).toEqual({
      validWithCR: true,
      validWithSurrogatePair: true,
      validNamedWithColon: true,
      validWithStringId: true,
      validWithJson: true,
      refusedLoneSurrogate: true,
      refusedNulInId: true,
    });
  });

  it(`round-trips every valid event and refuses every invalid one (seed ${SEED})`, () => {
    const failures: string[] = [];
    events.forEach((ev, i) => {
      const where = `#${i} ${JSON.stringify(ev, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))}`;
      if (!isValid(ev)) {
        const code = codeOf(() => serializeEvent(ev));
        if (code !== INVALID) failures.push(`${where}: ${code}`);
        return;
      }
      const wire = serializeEvent(ev);
      if (wire.includes('\r') || !FRAME.test(wire)) failures.push(`${where}: framing ${JSON.stringify(wire)}`);
      const got = receive(wire);
      const want = expectedMessage(ev);
      const retries = ev.retry === undefined ? [] : [ev.retry];
      if (
        got.errors.length > 0 ||
        got.events.length !== 1 ||
        got.events[0].data !== want.data ||
        got.events[0].event !== want.event ||
        got.events[0].id !== want.id ||
        JSON.stringify(got.retries) !== JSON.stringify(retries)
      ) {
        failures.push(`${where}: received ${JSON.stringify(got)}`);
      }
    });
    expect(failures.slice(0, 5)).toEqual([]);
  });

  it(`keeps every event whole in one stream cut at random byte offsets (seed ${SEED})`, () => {
    const wire = valid.map((ev) => serializeEvent(ev)).join('');
    const size = Buffer.byteLength(wire);
    const cuts = Array.from({ length: 2000 }, () => int(size)).sort((a, b) => a - b);
    const got = receive(wire, cuts);
    expect(got.errors).toEqual([]);
    expect(got.events).toEqual(valid.map(expectedMessage));
  });
});
