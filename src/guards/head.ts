// The response head of an event stream, merged once per sse() call and sent in one call.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';

export interface StreamHead {
  http1: OutgoingHttpHeaders;
  /**
   * `Connection: close`: for HTTP/1.0 (no chunked framing, the body ends when the connection closes),
   * a client that asked to close, or a connection's last request (`server.maxRequestsPerSocket`).
   */
  closing: OutgoingHttpHeaders;
  /** Without `Connection`: hop-by-hop headers are forbidden on HTTP/2. */
  http2: OutgoingHttpHeaders;
}

/**
 * The defaults, then the user's `headers` option, then what no option may change (a closing head's
 * `Connection: close`: Node closes the connection whatever it says); a later name replaces an
 * earlier one in any case, as setHeader() would.
 */
export function streamHead(cacheControl: string, extra: Readonly<Record<string, string | number | readonly string[]>>): StreamHead {
  const merge = (defaults: OutgoingHttpHeaders, fixed: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => {
    const head: OutgoingHttpHeaders = {};
    for (const [name, value] of [...Object.entries(defaults), ...Object.entries(extra), ...Object.entries(fixed)]) {
      for (const key of Object.keys(head)) if (key.toLowerCase() === name.toLowerCase()) delete head[key];
      head[name] = value as OutgoingHttpHeaders[string];
    }
    return head;
  };
  const common = { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': cacheControl, 'X-Accel-Buffering': 'no' };
  return { http1: merge({ ...common, Connection: 'keep-alive' }), closing: merge(common, { Connection: 'close' }), http2: merge(common) };
}

/**
 * Whether Node keeps this HTTP/1.x response's connection open after it: an explicit
 * `Connection: keep-alive` overrides Node's own choice, so it is sent only where Node would keep it
 * and nothing before sse() (a server draining its connections) set `Connection: close`.
 */
export function keepsConnection(res: ServerResponse): boolean {
  const set = res.getHeader('connection');
  return (
    res.shouldKeepAlive &&
    (res as { maxRequestsOnConnectionReached?: boolean }).maxRequestsOnConnectionReached !== true &&
    !(set !== undefined && /(?:^|,)[\t ]*close[\t ]*(?:,|$)/i.test(String(set)))
  );
}

/**
 * Sends status 200 and `head`. When nothing set a header before, they go out through writeHead()
 * and are not kept on the response: a header map costs ~0.6 KiB per idle stream (bench/README.md,
 * scenario C). Otherwise (Express's X-Powered-By, CORS, a compression layer's hooks) they join the
 * response's headers, where getHeader() and the middleware upstream can read them.
 */
export function sendHead(res: ServerResponse, head: OutgoingHttpHeaders): void {
  if (res.getHeaderNames().length === 0) {
    res.writeHead(200, head);
  } else {
    res.statusCode = 200;
    for (const [name, value] of Object.entries(head)) res.setHeader(name, value!);
  }
  res.flushHeaders();
}
