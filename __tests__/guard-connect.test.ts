// guard()'s connect line: a producer that sends its head and then waits gets one comment line once
// the head is out, so that proxies holding the head until the first body byte let it go (the proxy
// suites show that through nginx over HTTP/2 and Caddy with encode); a producer that writes at once
// is left byte for byte as it was.
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import { createParser } from 'eventsource-parser';
import { guard } from '../src/index';
import { listen, type TestServer } from './helpers/server';

/** A producer as libraries write one: its head, then (after `waitMs`, or at once) one event. */
function producer(waitMs: number | undefined, first: string, status = 200) {
  return (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(status, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    const write = (): void => {
      res.write(first);
      res.end();
    };
    if (waitMs === undefined) {
      write();
      return;
    }
    res.flushHeaders();
    const timer = setTimeout(write, waitMs);
    res.on('close', () => clearTimeout(timer));
  };
}

function body(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { accept: 'text/event-stream' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        // As EventSource decodes the stream ("UTF-8 decode"): a byte order mark at the very start is dropped.
        res.on('end', () => resolve(new TextDecoder().decode(Buffer.concat(chunks))));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

function dataOf(text: string): string[] {
  const data: string[] = [];
  const parser = createParser({ onEvent: (event) => data.push(event.data) });
  parser.feed(text);
  return data;
}

describe("guard()'s connect line", () => {
  let srv: TestServer;
  beforeAll(async () => {
    const app = express();
    for (const [prefix, middleware] of [['/plain', []], ['/guarded', [guard({ heartbeat: false })]]] as const) {
      app.get(`${prefix}/waits`, ...middleware, producer(300, 'data: one\n\n'));
      app.get(`${prefix}/at-once`, ...middleware, producer(undefined, 'data: one\n\n'));
      app.get(`${prefix}/bom`, ...middleware, producer(300, '\uFEFFdata: one\n\n'));
      app.get(`${prefix}/refused`, ...middleware, producer(300, 'data: one\n\n', 401));
    }
    srv = await listen(app);
  });
  afterAll(() => srv.close());

  it('is written once the head is out with no body byte, before the first event', async () => {
    expect(await body(`${srv.url}/plain/waits`)).toBe('data: one\n\n');
    expect(await body(`${srv.url}/guarded/waits`)).toBe(':\ndata: one\n\n');
  });

  it('is not written when the producer writes at once: the stream is byte for byte as without guard()', async () => {
    expect(await body(`${srv.url}/guarded/at-once`)).toBe(await body(`${srv.url}/plain/at-once`));
  });

  it("drops a byte order mark opening the producer's first write, which after the line would spoil the first event", async () => {
    const plain = await body(`${srv.url}/plain/bom`);
    const guarded = await body(`${srv.url}/guarded/bom`);
    expect(plain).toBe('data: one\n\n');
    expect(dataOf(plain)).toEqual(['one']);
    expect(guarded).toBe(':\ndata: one\n\n');
    expect(dataOf(guarded)).toEqual(['one']);
    // The control: the line with the mark left in place loses the event.
    expect(dataOf(':\n\uFEFFdata: one\n\n')).toEqual([]);
  });

  it('is not written on a response that is not 2xx', async () => {
    expect(await body(`${srv.url}/guarded/refused`)).toBe('data: one\n\n');
  });
});
