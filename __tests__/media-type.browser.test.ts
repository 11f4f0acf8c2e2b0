// Which Content-Type values make an event stream is the browser's call: Chromium's EventSource is
// asked for each of these well-formed spellings, and guard() must guard exactly those it accepts (a
// list, or the header sent twice, is read as Fetch reads it: the last type that parses decides).
// Malformed entries (a space right after the subtype, say) Chromium reads by rules of its own.
import type { OutgoingHttpHeader } from 'node:http';
import express from 'express';
import { chromium, type Browser } from 'playwright-core';
import { guard } from '../src/index';
import { isEventStreamType } from '../src/core/media-type';
import { describeWithBinary } from './helpers/binaries';
import { listen, type TestServer } from './helpers/server';

const TYPES: OutgoingHttpHeader[] = [
  'text/event-stream',
  'TEXT/EVENT-STREAM; charset=utf-8',
  '\ttext/event-stream ;',
  'text/event-streams',
  'application/text/event-stream',
  'text/html, text/event-stream',
  'text/event-stream, text/html',
  'text/event-stream, ',
  'text/event-stream; x="a, b"',
  'text/html; x="a, text/event-stream"',
  ['text/html', 'text/event-stream'],
  ['text/event-stream', 'text/html'],
];

describeWithBinary('chromium', 'Content-Type spellings, as Chromium reads them', (chromiumPath) => {
  let browser: Browser | undefined;
  let srv: TestServer | undefined;
  const guarded = new Map<number, boolean>();

  beforeAll(async () => {
    const app = express();
    app.get('/', (_req, res) => res.type('html').send('<!doctype html>'));
    app.use(guard({ heartbeat: false }));
    app.get('/events/:n', (req, res) => {
      const n = Number(req.params.n);
      res.setHeader('Content-Type', TYPES[n]!);
      guarded.set(n, res.getHeader('x-accel-buffering') === 'no');
      res.end('retry: 60000\ndata: ok\n\n');
    });
    srv = await listen(app);
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
  });

  afterAll(async () => {
    await browser?.close();
    await srv?.close();
  });

  it('guard() guards exactly the responses EventSource takes as event streams, and isEventStreamType() says the same', async () => {
    const page = await browser!.newPage();
    await page.goto(`${srv!.url}/`);
    const verdicts: Array<[OutgoingHttpHeader, string, boolean, boolean]> = [];
    for (const [n, type] of TYPES.entries()) {
      const got = (await page.evaluate(
        (url) =>
          new Promise<string>((resolve) => {
            const source = new EventSource(url);
            const timer = setTimeout(() => finish('no answer'), 5000);
            function finish(what: string): void {
              clearTimeout(timer);
              source.close();
              resolve(what);
            }
            source.onmessage = (e) => finish(`message ${e.data}`);
            source.onerror = () => finish('error');
          }),
        `/events/${n}`,
      )) as string;
      verdicts.push([type, got, guarded.get(n)!, isEventStreamType(type)]);
    }
    // Both kinds present, or the comparison below would prove nothing.
    expect(verdicts.filter(([, got]) => got === 'message ok').length).toBeGreaterThanOrEqual(4);
    expect(verdicts.filter(([, got]) => got === 'error').length).toBeGreaterThanOrEqual(4);
    for (const [type, got, wasGuarded, said] of verdicts) {
      const accepted = got === 'message ok';
      expect({ type, guarded: wasGuarded, isEventStreamType: said }).toEqual({ type, guarded: accepted, isEventStreamType: accepted });
    }
  });
});
