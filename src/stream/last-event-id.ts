// Browsers (and Go, and curl) send Last-Event-ID as the UTF-8 bytes of the id; Node hands header
// values over as Latin-1, one character per byte. Read back as Latin-1 the bytes are exact, so
// they can be decoded again.
const utf8 = new TextDecoder('utf-8', { fatal: true });
const NON_ASCII = /[^\x00-\x7f]/;

/** The id the client meant: the header's bytes as UTF-8 when they are valid UTF-8, else its Latin-1 reading. */
export function decodeLastEventId(header: string): string {
  if (!NON_ASCII.test(header)) return header;
  try {
    return utf8.decode(Buffer.from(header, 'latin1'));
  } catch {
    // Not UTF-8 (a client that sent Latin-1 itself): the reading Node gave is the best there is.
    return header;
  }
}
