// The one test of "is this Content-Type an event stream", for the guard's header watch, the doctor
// and relay(): the media type `text/event-stream`, in any case, with parameters and the HTTP
// whitespace (space, tab) around it ignored, as EventSource's MIME parsing does.
const EVENT_STREAM = /^[\t ]*text\/event-stream[\t ]*(?:;|$)/i;

/** True for a `Content-Type` value (or the first of several) whose media type is `text/event-stream`. */
export function isEventStreamType(value: unknown): boolean {
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string' || text.length < 17) return false;
  // Most values set on a response are not a type, or another type: out at the first character
  // (the guard asks of every header value an app sets). Lower-cased by setting bit 0x20, which
  // leaves a space as it is and makes a tab (0x09) 0x29.
  const first = text.charCodeAt(0) | 0x20;
  return (first === 0x74 /* t, T */ || first === 0x20 /* space */ || first === 0x29 /* tab */) && EVENT_STREAM.test(text);
}
