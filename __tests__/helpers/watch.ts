// A client that records when a stream's head, bytes and events arrive, over HTTP/1.1 or HTTP/2:
// what the proxy suites compare with and without a recipe.
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { createParser } from 'eventsource-parser';

export interface Watched {
  status?: number;
  headers: Record<string, string | string[] | undefined>;
  /** ms from the request to the response head; undefined when none came. */
  headMs?: number;
  /** ms of each event's arrival. */
  events: number[];
  /** ms at which the response ended or broke; undefined when it was still open at the end. */
  endMs?: number;
  error?: string;
}

export interface WatchOptions {
  /** How long to watch. */
  ms: number;
  /** Speak HTTP/2 (over TLS; the certificate is not checked). */
  http2?: boolean;
  headers?: Record<string, string>;
  /** Stop as soon as this many events arrived. */
  events?: number;
}

/** GETs `url` and records it for `ms` (or until `events` events); never rejects. */
export function watch(url: string, options: WatchOptions): Promise<Watched> {
  const start = performance.now();
  const since = (): number => performance.now() - start;
  const w: Watched = { headers: {}, events: [] };
  const headers = { accept: 'text/event-stream', 'accept-encoding': 'gzip', ...options.headers };
  return new Promise((resolve) => {
    let close = (): void => {};
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      close();
      resolve(w);
    };
    const timer = setTimeout(finish, options.ms);
    const parser = createParser({
      onEvent: () => {
        w.events.push(since());
        if (options.events !== undefined && w.events.length >= options.events) finish();
      },
    });
    const onBody = (body: NodeJS.ReadableStream): void => {
      // Compressed bodies are counted as bytes only: the suites that watch events ask for none.
      body.on('data', (chunk: Buffer) => parser.feed(chunk.toString('utf8')));
      body.on('end', () => {
        w.endMs = since();
        finish();
      });
      body.on('error', (error: Error) => {
        w.endMs ??= since();
        w.error = error.message;
        finish();
      });
    };
    const onError = (error: Error): void => {
      w.error = error.message;
      finish();
    };

    if (options.http2) {
      const session = http2.connect(new URL(url).origin, { rejectUnauthorized: false });
      session.on('error', onError);
      const req = session.request({ ':path': new URL(url).pathname, ...headers });
      close = () => {
        req.close();
        session.destroy();
      };
      req.on('response', (head) => {
        w.headMs = since();
        w.status = Number(head[':status']);
        w.headers = head;
      });
      req.on('error', onError);
      onBody(req);
      return;
    }
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { headers, agent: false, rejectUnauthorized: false }, (res) => {
      w.headMs = since();
      w.status = res.statusCode;
      w.headers = res.headers;
      onBody(res);
    });
    close = () => req.destroy();
    req.on('error', onError);
  });
}
