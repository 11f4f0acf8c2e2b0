// Issue 11 item 9 in a real browser: Chromium sends Last-Event-ID as UTF-8 bytes, and a non-ASCII id must replay.
import express from 'express';
import { chromium, type Browser } from 'playwright-core';
import { Channel, sse, type SseStream } from '../src/index';
import { describeWithBinary } from './helpers/binaries';
import { listen, waitFor, type TestServer } from './helpers/server';

const PAGE = `<!doctype html><meta charset="utf-8"><script>
  window.got = [];
  const source = new EventSource('/events');
  source.onmessage = (e) => window.got.push(e.lastEventId + '|' + e.data);
  source.addEventListener('resync', () => window.got.push('resync'));
</script>`;

describeWithBinary('chromium', 'Last-Event-ID from Chromium', (chromiumPath) => {
  let browser: Browser | undefined;
  let srv: TestServer | undefined;
  const channel = new Channel({ history: 10 });

  afterAll(async () => {
    await browser?.close();
    await channel.close();
    await srv?.close();
  });

  it('reconnects with "café-2" and is replayed the event it missed, without a resync', async () => {
    const streams: SseStream[] = [];
    const app = express();
    app.get('/', (_req, res) => res.type('html').send(PAGE));
    app.get('/events', sse({ retry: 200, heartbeat: false }), (_req, res) => {
      streams.push(res.sse);
      channel.subscribe(res.sse);
    });
    srv = await listen(app);
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    const page = await browser.newPage();
    await page.goto(`${srv.url}/`);
    const received = async (count: number): Promise<string[]> => {
      await page.waitForFunction(`window.got.length >= ${count}`, undefined, { timeout: 10000 });
      return (await page.evaluate('window.got')) as string[];
    };

    await waitFor('the first connection', () => streams.length === 1, 10000);
    await channel.publish({ id: 'café-1', data: 'a' });
    await channel.publish({ id: 'café-2', data: 'b' });
    await received(2);
    // Cut the stream, and publish while the browser waits its 200 ms before reconnecting.
    streams[0]!.close();
    await channel.publish({ id: '日本-3', data: 'c' });
    await waitFor('the reconnection', () => streams.length === 2, 10000);
    const seen = await received(3);
    expect(streams.map((s) => s.lastEventId)).toEqual([undefined, 'café-2']);
    expect(seen).toEqual(['café-1|a', 'café-2|b', '日本-3|c']);
  });
});
