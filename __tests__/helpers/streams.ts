// Event-stream routes for the doctor and proxy suites: a hand-written one, as found in the wild, and sse-guard's.
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Express } from 'express';
import { guard, sse, type SseOptions } from '../../src/index';

export interface NaiveOptions {
  /** ms between events. Default 200. */
  interval?: number;
  /** ms before the route writes anything (headers included). Default 0. */
  delay?: number;
  /** ms after the first event at which the response ends; never by default. */
  endAfter?: number;
  /** Extra response headers. */
  headers?: Record<string, string>;
}

/** SSE as usually hand-written: headers set with writeHead and sent with the first event, no flushing. */
export function naiveSse({ interval = 200, delay = 0, endAfter, headers = {} }: NaiveOptions = {}) {
  return (_req: IncomingMessage, res: ServerResponse): void => {
    const timers: NodeJS.Timeout[] = [];
    const begin = (): void => {
      // A timeout middleware may have answered already.
      if (res.headersSent || res.closed) return;
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', ...headers });
      let n = 0;
      const write = (): void => {
        res.write(`data: ${n++}\n\n`);
      };
      write();
      timers.push(setInterval(write, interval));
      if (endAfter !== undefined) timers.push(setTimeout(() => res.end(), endAfter));
    };
    timers.push(setTimeout(begin, delay));
    res.on('close', () => timers.forEach(clearTimeout));
  };
}

/** An sse-guard route with the doctor's probe on, sending an event at once and then every `interval` ms. */
export function guardedSse(options: SseOptions = {}, interval = 200) {
  return sse(
    (stream) => {
      let n = 0;
      const send = (): void => {
        stream.send({ data: n++ });
      };
      send();
      const timer = setInterval(send, interval);
      stream.on('close', () => clearInterval(timer));
    },
    { probe: true, ...options },
  );
}

/**
 * A hand-written route that sends its head (flushHeaders) and then no body byte until `after` ms,
 * the way sse() did before it wrote a line at connect: the control for proxies that hold the head.
 */
export function headOnly(after = 60_000) {
  return (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
    res.flushHeaders();
    const timer = setTimeout(() => res.write('data: late\n\n'), after);
    res.on('close', () => clearTimeout(timer));
  };
}

/** The routes the proxy suites put behind each proxy. */
export function proxiedRoutes(): Express {
  const app = express();
  app.get('/events', guardedSse());
  // A quiet stream: nothing after the connect line but its heartbeat (off here, so only the connect line counts).
  app.get('/quiet', sse(() => {}, { heartbeat: false }));
  app.get('/head-only', headOnly());
  // The same producer under guard(), which writes one comment line once the head is out with no body byte.
  app.get('/head-only/guarded', guard({ heartbeat: false }), headOnly());
  app.get('/naive', naiveSse());
  // A quiet stream with the heartbeat given in ms, no probe: what an idle timeout sees.
  app.get('/heartbeat/:ms', (req, res, next) => sse(() => {}, { heartbeat: Number(req.params.ms) })(req, res, next));
  return app;
}
