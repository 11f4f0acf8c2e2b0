// The wire format, pure: event in, text out. WHATWG HTML § 9.2 "Server-sent events".
import { SseGuardError } from '../core/errors.js';
import { MAX_TIMER_MS } from '../core/limits.js';
import type { SseEvent } from '../core/types.js';
import { describe } from '../core/describe.js';

const LINE_BREAK = /\r\n|\r|\n/;
// What an id must not contain to come back unchanged in the Last-Event-ID header: CR or LF would
// inject fields, the client drops an id with NUL (§ 9.2.6), Node answers 400 to a header with any
// other C0 control or DEL (and Chromium then gives up on the EventSource), and browsers and Node
// trim leading and trailing spaces and tabs from header values.
const HEADER_UNSAFE = /[\x00-\x1f\x7f]/;
const EDGE_SPACE = /^[ \t]|[ \t]$/;

// Every event's data passes here: on short texts two native substring scans cost a fraction of a
// regular expression call.
function hasLineBreak(text: string): boolean {
  return text.includes('\n') || text.includes('\r');
}

function invalid(message: string): SseGuardError {
  return new SseGuardError('ERR_SSE_INVALID_FIELD', message);
}

// A lone surrogate has no UTF-8 encoding: it would reach the client as U+FFFD, not as sent.
function checkText(field: string, value: string): void {
  if (!value.isWellFormed()) {
    throw invalid(`${field} contains a lone UTF-16 surrogate, which cannot be sent as UTF-8; send well-formed text (String.prototype.toWellFormed()).`);
  }
}

function checkRetry(retry: unknown): asserts retry is number {
  // The client accepts ASCII digits only (§ 9.2.6): no sign, fraction or exponent.
  if (typeof retry !== 'number' || !Number.isSafeInteger(retry) || retry < 0 || retry > MAX_TIMER_MS) {
    throw invalid(`retry must be an integer number of ms from 0 to ${MAX_TIMER_MS} (above it clients reconnect at once), got ${describe(retry)}.`);
  }
}

/** `retry: <ms>` as one self-contained block. */
export function serializeRetry(ms: number): string {
  checkRetry(ms);
  return `retry: ${ms}\n\n`;
}

/** One `:` line per line of `text`; comments are ignored by clients, so they are safe for heartbeats. */
export function serializeComment(text: string = ''): string {
  if (text === '') return ':\n';
  if (typeof text !== 'string') throw invalid(`a comment must be a string, got ${text === null ? 'null' : typeof text}.`);
  checkText('comment', text);
  let out = '';
  for (const line of text.split(LINE_BREAK)) out += line === '' ? ':\n' : `: ${line}\n`;
  return out;
}

/** The `id:` line, or '' when there is none; an id the Last-Event-ID header could not carry back unchanged is rejected. */
export function serializeId(id: string | number | undefined): string {
  if (id === undefined) return '';
  if (typeof id === 'number') {
    if (!Number.isFinite(id)) throw invalid(`id must be a finite number or a string, got ${id}.`);
    return `id: ${id}\n`;
  }
  if (typeof id !== 'string') throw invalid(`id must be a string or a number, got ${typeof id}.`);
  if (HEADER_UNSAFE.test(id)) throw invalid(`id must not contain control characters (CR, LF, NUL, tab, other C0, DEL): the client could not send it back in Last-Event-ID: ${JSON.stringify(id)}.`);
  if (EDGE_SPACE.test(id)) throw invalid(`id must not start or end with a space: clients trim it from Last-Event-ID, and the replay would miss: ${JSON.stringify(id)}.`);
  checkText('id', id);
  return `id: ${id}\n`;
}

/** Everything of an event but its id: `event:`, `retry:`, the `data:` lines and the closing blank line. */
export function serializeBody(ev: SseEvent, serialize: (data: unknown) => string = JSON.stringify): string {
  if (ev === null || typeof ev !== 'object') {
    throw invalid(`an event must be an object such as { data: 'text' } or a string, got ${ev === null ? 'null' : typeof ev}.`);
  }
  let out = '';
  if (ev.event !== undefined) {
    const name = ev.event;
    if (typeof name !== 'string') throw invalid(`event must be a string, got ${typeof name}.`);
    if (hasLineBreak(name)) throw invalid(`event must not contain CR or LF (it would inject fields): ${JSON.stringify(name)}.`);
    checkText('event', name);
    out += `event: ${name}\n`;
  }
  if (ev.retry !== undefined) {
    checkRetry(ev.retry);
    out += `retry: ${ev.retry}\n`;
  }
  const { data } = ev;
  if (data === undefined) throw invalid('data is required; send null or an empty string for an event without payload.');
  let text: unknown;
  try {
    text = typeof data === 'string' ? data : serialize(data);
  } catch (cause) {
    // BigInt, circular structures, a throwing toJSON: the caller gets the contract's error, with the original as cause.
    throw new SseGuardError('ERR_SSE_INVALID_FIELD', `serialize() could not encode this data (${describe(cause)}); pass data it can encode, or a serialize option that can.`, { cause });
  }
  if (typeof text !== 'string') {
    throw invalid(`serialize() returned ${typeof text} for this data; give data it can encode, or a serialize option that returns a string.`);
  }
  return out + serializeData(text);
}

/** The `data:` lines of one text and the blank line that ends the event: a string sent as is. */
export function serializeData(text: string): string {
  checkText('data', text);
  // Always "data: " with the space: the client strips exactly one, so leading spaces survive.
  if (!hasLineBreak(text)) return `data: ${text}\n\n`;
  let out = '';
  for (const line of text.split(LINE_BREAK)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/**
 * Serializes one event, or throws `ERR_SSE_INVALID_FIELD` before producing anything.
 * `data` becomes one `data:` line per line (CRLF, CR and LF all break a line, and the client
 * rejoins them with LF); `event` and `id` are rejected when they could inject fields.
 */
export function serializeEvent(ev: SseEvent, serialize: (data: unknown) => string = JSON.stringify): string {
  const body = serializeBody(ev, serialize);
  return ev.id === undefined ? body : serializeId(ev.id) + body;
}
