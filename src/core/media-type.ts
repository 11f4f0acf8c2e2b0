// The one test of "is this Content-Type an event stream", for the guard's header watch, the doctor
// and relay(): as Fetch's "extract a MIME type" reads the header, which is what Chromium's
// EventSource does with well-formed values. The media type `text/event-stream`, in any case, with
// parameters and the HTTP whitespace around it ignored; of several (a list, or the header sent more
// than once), the last one that parses decides.
const EVENT_STREAM = /^[\t ]*text\/event-stream[\t ]*(?:;|$)/i;
// type/subtype as tokens, which is all a MIME type needs to parse; its essence in group 1.
const MEDIA_TYPE = /^[\t ]*([!#$%&'*+.^_`|~0-9a-z-]+\/[!#$%&'*+.^_`|~0-9a-z-]+)[\t ]*(?:;|$)/i;
const MENTIONS_EVENT_STREAM = /event-stream/i;

/** True for a `Content-Type` value (a string, or the values of a header sent more than once) whose media type is `text/event-stream`. */
export function isEventStreamType(value: unknown): boolean {
  if (Array.isArray(value)) return mentionsEventStream(value) && lastEssence(value.join(',')) === 'text/event-stream';
  if (typeof value !== 'string' || value.length < 17) return false;
  // Most values set on a response are not a type, or another type: out at the first character
  // (the guard asks of every header value an app sets). Lower-cased by setting bit 0x20, which
  // leaves a space as it is and makes a tab (0x09) 0x29.
  const first = value.charCodeAt(0) | 0x20;
  if ((first === 0x74 /* t, T */ || first === 0x20 /* space */ || first === 0x29 /* tab */) && EVENT_STREAM.test(value)) {
    return !value.includes(',') || lastEssence(value) === 'text/event-stream';
  }
  // A list whose last type may be it ("text/html, text/event-stream").
  return value.includes(',') && MENTIONS_EVENT_STREAM.test(value) && lastEssence(value) === 'text/event-stream';
}

/** Whether any of a header's values names the type at all (most arrays set are Set-Cookie); allocates nothing. */
function mentionsEventStream(values: readonly unknown[]): boolean {
  for (const text of values) if (typeof text === 'string' && MENTIONS_EVENT_STREAM.test(text)) return true;
  return false;
}

/** The essence (lower case) of the last media type in a comma-separated list that parses, as Fetch picks it; a comma inside quotes separates nothing. */
function lastEssence(list: string): string | undefined {
  let essence: string | undefined;
  const take = (part: string): void => {
    const match = MEDIA_TYPE.exec(part);
    if (match !== null && match[1] !== '*/*') essence = match[1]!.toLowerCase();
  };
  let start = 0;
  let quoted = false;
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c === '"') quoted = !quoted;
    else if (quoted && c === '\\') i++;
    else if (!quoted && c === ',') {
      take(list.slice(start, i));
      start = i + 1;
    }
  }
  take(list.slice(start));
  return essence;
}
