// The demo app over plain HTTP: pages, chat, and streams that stay uncompressed behind its compression().
import { createDemoApp, type DemoApp, type GuardInfo } from '../demo/app';
import { collect } from '../src/testing';
import { listen, sleep, type TestServer } from './helpers/server';

// What browsers send: compression() would pick br.
const BROWSER_ENCODINGS = { 'accept-encoding': 'gzip, deflate, br' };

let demo: DemoApp;
let server: TestServer;

beforeAll(async () => {
  demo = await createDemoApp({ compare: { events: 3, intervalMs: 100 }, tokenMs: 20 });
  server = await listen(demo.app);
});

afterAll(async () => {
  await demo.close();
  await server.close();
});

const postChat = (body: unknown): Promise<Response> =>
  fetch(`${server.url}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

it('serves the page and its script', async () => {
  const page = await fetch(server.url);
  expect(page.status).toBe(200);
  expect(page.headers.get('content-type')).toMatch(/^text\/html/);
  expect(await page.text()).toContain('<script src="app.js"');
  const script = await fetch(`${server.url}/app.js`);
  expect(script.status).toBe(200);
  expect(script.headers.get('content-type')).toMatch(/javascript/);
});

it('streams the clock uncompressed, first telling what the guard did', async () => {
  const got = await collect(`${server.url}/stream`, { count: 2, headers: BROWSER_ENCODINGS });
  expect(got.status).toBe(200);
  expect(got.headers['content-type']).toBe('text/event-stream; charset=utf-8');
  expect(got.headers['content-encoding']).toBeUndefined();
  expect(got.retries).toEqual([1000]);
  const [guard, clock] = got.events;
  expect(guard!.event).toBe('guard');
  const info = JSON.parse(guard!.data) as GuardInfo;
  expect(info.route).toBe('/stream');
  expect(info.decisions.map((d) => d.reason)).toEqual(['timeout-disarmed', 'compression-bypassed']);
  expect(info.decisions[0]!.details.middleware).toEqual(['connect-timeout']);
  expect(clock!.event).toBe('clock');
  expect(clock!.id).toBeUndefined();
});

it('accepts chat messages and rejects malformed ones', async () => {
  const ok = await postChat({ author: ' Ada ', text: ' hello ' });
  expect(ok.status).toBe(201);
  expect(await ok.json()).toEqual({ id: expect.any(String) });
  expect((await postChat({ text: '   ' })).status).toBe(400);
  expect((await postChat({ text: 'x'.repeat(501) })).status).toBe(400);
  expect((await postChat({ author: 42, text: 'hi' })).status).toBe(400);
});

it('replays the chat after the Last-Event-ID, from the header or the query string', async () => {
  const first = (await (await postChat({ text: 'one' })).json()) as { id: string };
  await postChat({ author: 'Grace', text: 'two' });
  await postChat({ text: 'three' });
  const chatOf = (events: { event: string; data: string }[]): unknown[] =>
    events.filter((e) => e.event === 'chat').map((e) => JSON.parse(e.data) as unknown);
  const expected = [
    { author: 'Grace', text: 'two', sentAt: expect.any(Number) },
    { author: 'anonymous', text: 'three', sentAt: expect.any(Number) },
  ];

  const byHeader = await collect(`${server.url}/stream`, { count: 4, headers: { 'last-event-id': first.id } });
  expect(chatOf(byHeader.events)).toEqual(expected);
  expect((JSON.parse(byHeader.events[0]!.data) as GuardInfo).resumedAfter).toBe(first.id);

  const byQuery = await collect(`${server.url}/stream?lastEventId=${first.id}`, { count: 4 });
  expect(chatOf(byQuery.events)).toEqual(expected);
});

it('lets the page cut every chat stream, with a retry hint', async () => {
  const reading = collect(`${server.url}/stream`, { timeout: 5000 });
  let ended = false;
  void reading.then(() => (ended = true));
  // The stream joins the chat a moment after the request: drop until it is gone.
  for (let i = 0; i < 50 && !ended; i++) {
    await fetch(`${server.url}/admin/drop`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ retry: 3000 }),
    });
    await sleep(50);
  }
  const got = await reading;
  expect(got.ended).toBe(true);
  expect(got.retries).toEqual([1000, 3000]);

  const bad = await fetch(`${server.url}/admin/drop`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"retry":-1}' });
  expect(bad.status).toBe(400);
});

it('compares a naive route, compressed and held, with the guarded one', async () => {
  const [naive, guarded] = await Promise.all([
    collect(`${server.url}/compare/naive`, { timeout: 5000, headers: BROWSER_ENCODINGS }),
    collect(`${server.url}/compare/guarded`, { timeout: 5000, headers: BROWSER_ENCODINGS }),
  ]);
  // compression() is really there: it took over the naive route...
  expect(naive.headers['content-encoding']).toBe('br');
  expect(naive.events.map((e) => e.event)).toEqual(['tick', 'tick', 'tick', 'done']);
  // ...and held every event until the response ended.
  expect(naive.events[3]!.at - naive.events[0]!.at).toBeLessThan(50);
  // The guarded route gets the same schedule, uncompressed and paced.
  expect(guarded.headers['content-encoding']).toBeUndefined();
  expect(guarded.events.map((e) => e.event)).toEqual(['guard', 'tick', 'tick', 'tick', 'done']);
  expect(guarded.events[3]!.at - guarded.events[1]!.at).toBeGreaterThan(150);
  expect(naive.ended && guarded.ended).toBe(true);
});

it('compares a third-party-style stream behind compression(), held without guard() and paced with it', async () => {
  const [plain, guarded] = await Promise.all([
    collect(`${server.url}/third-party/plain`, { timeout: 5000, headers: BROWSER_ENCODINGS }),
    collect(`${server.url}/third-party/guarded`, { timeout: 5000, headers: BROWSER_ENCODINGS }),
  ]);
  expect(plain.headers['content-encoding']).toBe('br');
  expect(plain.events.map((e) => e.event)).toEqual(['tick', 'tick', 'tick', 'done']);
  expect(plain.events[3]!.at - plain.events[0]!.at).toBeLessThan(50);
  expect(guarded.headers['content-encoding']).toBeUndefined();
  expect(guarded.headers['cache-control']).toBe('no-cache, no-transform');
  expect(guarded.events.map((e) => e.event)).toEqual(['tick', 'tick', 'tick', 'done']);
  expect(guarded.events.map((e) => (JSON.parse(e.data) as { token?: string }).token).join('')).toBe('Once upon a ');
  expect(guarded.events[2]!.at - guarded.events[0]!.at).toBeGreaterThan(150);
});

it("shows that sse()'s default policy refuses this app's connect-timeout", async () => {
  const res = await fetch(`${server.url}/stream/default-policy`);
  expect(res.status).toBe(500);
  const body = (await res.json()) as { code: string; error: string; decisions: { reason: string }[] };
  expect(body.code).toBe('ERR_SSE_TIMEOUT_HANDLER');
  expect(body.error).toMatch(/connect-timeout/);
  expect(body.decisions.map((d) => d.reason)).toEqual(['timeout-refused']);
});

describe('model answer', () => {
  interface Stats { state: string; generated: number; total: number; afterClose: number | null }
  const statsOf = async (id: string): Promise<Stats> => (await (await fetch(`${server.url}/answer/stats/${id}`)).json()) as Stats;

  it('streams the whole answer through pipe(), then says it is done', async () => {
    const got = await collect(`${server.url}/answer`, { timeout: 10_000, headers: BROWSER_ENCODINGS });
    expect(got.headers['content-encoding']).toBeUndefined();
    const [start, ...rest] = got.events;
    const { id, total } = JSON.parse(start!.data) as { id: string; total: number };
    expect(rest.map((e) => e.event)).toEqual([...Array<string>(total).fill('token'), 'answer-done']);
    expect(rest.slice(0, -1).map((e) => e.data).join('')).toMatch(/^Server-Sent Events are one long HTTP response/);
    expect(await statsOf(id)).toMatchObject({ state: 'finished', generated: total, afterClose: 0 });
  });

  it('stops generating when the client leaves: no token made after the stream closed', async () => {
    const got = await collect(`${server.url}/answer`, { count: 4, timeout: 5000 });
    const { id, total } = JSON.parse(got.events[0]!.data) as { id: string; total: number };
    // Bounded: 50 polls, 20 ms apart.
    let stopped = false;
    for (let tries = 0; tries < 50 && !stopped; tries++) {
      stopped = (await statsOf(id)).state === 'stopped';
      if (!stopped) await sleep(20);
    }
    // Several token intervals later, the count has not moved.
    await sleep(200);
    const stats = await statsOf(id);
    expect(stats).toMatchObject({ state: 'stopped', afterClose: 0 });
    expect(stats.generated).toBeLessThan(total);
  });

  it('answers 404 for an unknown answer id', async () => {
    expect((await fetch(`${server.url}/answer/stats/nope`)).status).toBe(404);
  });
});
