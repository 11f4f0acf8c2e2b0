// What an EventSource parser holds back while an event is unfinished: the current line, and the
// field lines of the event not yet dispatched by a blank line. Counted as EventSource splits lines
// (CR LF, LF or CR), so that a reader of someone else's stream can bound it before feeding the
// parser: comments are not kept and do not count, nor do they end the event.
export class Backlog {
  /** Characters of the unfinished line. */
  line = 0;
  /** Characters of the undispatched event's field lines, their line breaks included. */
  event = 0;
  #afterCr = false;
  #field = false;

  add(text: string): void {
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x0a || c === 0x0d) {
        const lf = c === 0x0a && this.#afterCr;
        this.#afterCr = c === 0x0d;
        if (lf) continue;
        if (this.line === 0) this.event = 0;
        else if (this.#field) this.event++;
        this.line = 0;
      } else {
        this.#afterCr = false;
        if (this.line === 0) this.#field = c !== 0x3a;
        this.line++;
        if (this.#field) this.event++;
      }
    }
  }
}
