// The one test of "is this Content-Type an event stream", shared by guard(), the doctor and relay().
import { isEventStreamType } from '../src/core/media-type';

describe('isEventStreamType', () => {
  it.each([
    'text/event-stream',
    'TEXT/Event-Stream',
    'text/event-stream; charset=utf-8',
    'text/event-stream;charset=utf-8',
    ' text/event-stream ',
    '\ttext/event-stream\t; x=1',
  ])('takes %j', (value) => {
    expect(isEventStreamType(value)).toBe(true);
    // Sent more than once, the header is one list, and the last type that parses decides.
    expect(isEventStreamType(['text/html', value])).toBe(true);
    expect(isEventStreamType([value, 'text/html'])).toBe(false);
  });

  // As Chromium's EventSource reads them (media-type.browser.test.ts asks it).
  it.each([
    ['text/html, text/event-stream', true],
    ['text/event-stream, ', true],
    ['text/event-stream, */*', true],
    ['text/event-stream, nonsense', true],
    ['text/event-stream; x="a, b"', true],
    ['text/event-stream, text/html', false],
    ['text/html; x="a, text/event-stream"', false],
    ['application/json, text/event-stream; charset=utf-8', true],
  ])('reads the list %j as a browser does: %p', (value, expected) => {
    expect(isEventStreamType(value)).toBe(expected);
  });

  it.each([
    'text/event-streams',
    'text/event-stream-x',
    'text/event-stream/x',
    'x text/event-stream',
    'text/html',
    'application/json; charset=utf-8',
    '',
    // Not HTTP whitespace: a browser's MIME parser keeps it, and the type no longer matches.
    'text/event-stream\u00a0',
  ])('refuses %j', (value) => {
    expect(isEventStreamType(value)).toBe(false);
  });

  it.each([undefined, null, 17, ['text/event-stream', 'text/html'], [], [17]])('refuses %p', (value) => {
    expect(isEventStreamType(value)).toBe(false);
  });
});
