// The demo in a real browser: live events, chat across two browser profiles, a server-side cut with
// Last-Event-ID catch-up, the naive-vs-guard panel, and a screenshot for the README.
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { createDemoApp, type DemoApp } from '../demo/app';
import { describeWithBinary } from './helpers/binaries';
import { listen, type TestServer } from './helpers/server';

const ARTIFACTS = path.join(__dirname, 'artifacts');
const DOCS_SCREENSHOT = path.join(__dirname, '..', 'docs', 'demo.png');

// Every wait in this file is bounded by one of these.
const SOON = 5_000;
const COMPARE_DONE = 15_000;

describeWithBinary('chromium', 'demo app in Chromium', (chromiumPath) => {
  let demo: DemoApp;
  let server: TestServer;
  let browser: Browser;
  // Two browser profiles, as two people would be: each has its own six-connection pool.
  let contexts: BrowserContext[] = [];
  let alice: Page;
  let bob: Page;
  // Every chat message posted by this suite, in posting order.
  const posted: string[] = [];
  // Uncaught exceptions in the page's script.
  const pageErrors: Error[] = [];

  jest.setTimeout(60_000);

  async function openPage(viewport: { width: number; height: number }): Promise<Page> {
    const context = await browser.newContext({ viewport, colorScheme: 'light', reducedMotion: 'reduce' });
    contexts.push(context);
    const page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error));
    page.setDefaultTimeout(SOON);
    await page.goto(server.url);
    await connectionState(page, 'open');
    return page;
  }

  const connectionState = (page: Page, state: string, timeout = SOON): Promise<unknown> =>
    page.locator(`#conn-state[data-state="${state}"]`).waitFor({ timeout });

  const attributes = async (locator: Locator, name: string): Promise<(string | null)[]> =>
    Promise.all((await locator.all()).map((item) => item.getAttribute(name)));

  const shownMessages = (page: Page): Promise<string[]> => page.locator('#chat-list li.message .text').allTextContents();

  async function post(text: string, author = 'Ops'): Promise<void> {
    const res = await fetch(`${server.url}/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ author, text }),
      signal: AbortSignal.timeout(SOON),
    });
    expect(res.status).toBe(201);
    posted.push(text);
  }

  async function showsExactly(page: Page, texts: string[]): Promise<void> {
    const last = texts[texts.length - 1]!;
    await page.locator('#chat-list li.message .text', { hasText: last }).waitFor({ timeout: SOON });
    expect(await shownMessages(page)).toEqual(texts);
  }

  beforeAll(async () => {
    demo = await createDemoApp();
    server = await listen(demo.app);
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    alice = await openPage({ width: 1280, height: 900 });
    bob = await openPage({ width: 1280, height: 900 });
  });

  afterAll(async () => {
    for (const context of contexts) await context.close();
    contexts = [];
    await browser?.close();
    await demo?.close();
    await server?.close();
  });

  it('shows the clock ticking, with the guard decisions for the stream', async () => {
    const first = (await alice.locator('#clock-time').textContent())!;
    await alice.locator('#clock-time').filter({ hasNotText: first }).waitFor({ timeout: SOON });
    expect(await alice.locator('#clock-delay').textContent()).toMatch(/^arrived \d+ ms after it was sent$/);
    expect(await attributes(alice.locator('#decisions [data-route="/stream"] li'), 'data-reason')).toEqual([
      'timeout-disarmed',
      'compression-bypassed',
    ]);
    await alice.locator('#default-policy:not([hidden])').waitFor();
    expect(await alice.locator('#default-policy .reason').textContent()).toContain('ERR_SSE_TIMEOUT_HANDLER');
  });

  it('shows the guarded events promptly while the naive ones are held, then arrive in one burst', async () => {
    await alice.locator('#compare-run').click();
    // Within a second the guard's lane has events, each a few ms late; the naive one has none.
    await alice.locator('#lane-guard li').nth(1).waitFor({ timeout: SOON });
    expect(await alice.locator('#lane-naive li').count()).toBe(0);
    await alice.locator('#lane-naive[data-state="done"]').waitFor({ timeout: COMPARE_DONE });
    await alice.locator('#lane-guard[data-state="done"]').waitFor({ timeout: COMPARE_DONE });

    const delays = async (lane: string): Promise<number[]> => (await attributes(alice.locator(`#lane-${lane} li`), 'data-delay')).map(Number);
    const guard = await delays('guard');
    const naive = await delays('naive');
    expect(guard).toHaveLength(8);
    expect(Math.max(...guard)).toBeLessThan(500);
    // The naive route's first event waited for the whole run (8 ticks 500 ms apart).
    expect(naive).toHaveLength(8);
    expect(naive[0]).toBeGreaterThan(3000);
    expect(await alice.locator('#lane-naive .lane-status').textContent()).toContain('all in one burst');
    expect(await alice.locator('#lane-guard .lane-status').textContent()).toContain('each on time');
  });

  it('shows the third-party stream paced with guard() and held without it', async () => {
    await alice.locator('#third-run').click();
    await alice.locator('#lane-third-guard li').nth(1).waitFor({ timeout: SOON });
    expect(await alice.locator('#lane-third-plain li').count()).toBe(0);
    await alice.locator('#lane-third-plain[data-state="done"]').waitFor({ timeout: COMPARE_DONE });
    await alice.locator('#lane-third-guard[data-state="done"]').waitFor({ timeout: COMPARE_DONE });
    const delays = async (lane: string): Promise<number[]> => (await attributes(alice.locator(`#lane-${lane} li`), 'data-delay')).map(Number);
    const guarded = await delays('third-guard');
    expect(guarded).toHaveLength(8);
    expect(Math.max(...guarded)).toBeLessThan(500);
    expect((await delays('third-plain'))[0]).toBeGreaterThan(3000);
    expect(await alice.locator('#lane-third-guard .tokens').textContent()).toBe('Once upon a time, a stream arrived on time.');
    expect(await alice.locator('#lane-third-plain .lane-status').textContent()).toContain('all in one burst');
    expect(await alice.locator('#lane-third-guard .lane-status').textContent()).toContain('each on time');
  });

  it('delivers a chat message posted in one browser to the other', async () => {
    await alice.locator('#chat-author').fill('Alice');
    await alice.locator('#chat-text').fill('Hello from Alice');
    await alice.locator('#chat-text').press('Enter');
    posted.push('Hello from Alice');
    await showsExactly(bob, posted);
    await showsExactly(alice, posted);
    expect(await alice.locator('#chat-text').inputValue()).toBe('');

    await bob.locator('#chat-author').fill('Bob');
    await bob.locator('#chat-text').fill('Hi Alice, Bob here');
    await bob.locator('#chat-form button[type="submit"]').click();
    posted.push('Hi Alice, Bob here');
    await showsExactly(alice, posted);
  });

  it('catches up after the server cuts every stream, with nothing missing or repeated', async () => {
    const lastSeen = await bob.locator('#chat-list li.message').last().getAttribute('data-id');
    // A 3 s retry hint keeps the browsers away long enough to publish behind their backs.
    const drop = await fetch(`${server.url}/admin/drop`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ retry: 3000 }),
      signal: AbortSignal.timeout(SOON),
    });
    expect(((await drop.json()) as { dropped: number }).dropped).toBe(2);
    await connectionState(bob, 'reconnecting');
    for (let n = 1; n <= 5; n++) await post(`Sent while you were offline (${n}/5)`);
    expect(await bob.locator('#conn-state').getAttribute('data-state')).toBe('reconnecting');

    await connectionState(bob, 'open');
    await showsExactly(bob, posted);
    await showsExactly(alice, posted);
    expect(await bob.locator('#chat-status').textContent()).toBe(`Reconnected: replaying what came after #${lastSeen} (Last-Event-ID).`);
    expect(await bob.locator('#reconnects').textContent()).toBe('1');
  });

  it('catches up after a reload from where the tab left off', async () => {
    await bob.goto('about:blank');
    await post('Posted while Bob was reloading');
    await bob.goto(server.url);
    await connectionState(bob, 'open');
    await showsExactly(bob, posted);
  });

  it('streams a model answer and stops the model with Stop: 0 tokens generated after it', async () => {
    await alice.locator('#answer-ask').click();
    // A few tokens in (one every 80 ms), well before the answer's end.
    await alice.locator('#answer-received').filter({ hasText: /^([3-9]|\d\d)$/ }).waitFor({ timeout: SOON });
    expect(await alice.locator('#answer-text').textContent()).toMatch(/^Server-Sent Events/);
    await alice.locator('#answer-stop').click();
    await alice.locator('#answer-state[data-state="stopped"]').waitFor({ timeout: SOON });
    expect(await alice.locator('#answer-after-stop').textContent()).toBe('0');
    // Stopped mid-answer: the page did not simply wait for the end.
    expect(await alice.locator('#answer-text').textContent()).not.toMatch(/between two tokens\.$/);
    expect(await alice.locator('#answer-stop').isDisabled()).toBe(true);
  });

  it('streams a whole model answer to its end', async () => {
    await bob.locator('#answer-ask').click();
    await bob.locator('#answer-state[data-state="finished"]').waitFor({ timeout: 15_000 });
    expect(await bob.locator('#answer-text').textContent()).toMatch(/^Server-Sent Events[\s\S]*between two tokens\.$/);
    expect(await bob.locator('#answer-stop').isDisabled()).toBe(true);
  });

  it('looks right at desktop and phone width (screenshots)', async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await alice.locator('#lane-naive[data-state="done"]').waitFor({ timeout: COMPARE_DONE });
    const desktop = await alice.screenshot({ path: path.join(ARTIFACTS, 'demo-desktop.png'), fullPage: true });

    await alice.setViewportSize({ width: 390, height: 844 });
    // Nothing wider than the screen: no sideways scrolling on a phone.
    expect(await alice.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await alice.screenshot({ path: path.join(ARTIFACTS, 'demo-phone.png'), fullPage: true });

    expect(pageErrors).toEqual([]);

    // The README's copy changes only on request, so that test runs leave the working tree clean.
    if (!fs.existsSync(DOCS_SCREENSHOT) || process.env.SSE_GUARD_UPDATE_DOCS === '1') {
      fs.mkdirSync(path.dirname(DOCS_SCREENSHOT), { recursive: true });
      fs.writeFileSync(DOCS_SCREENSHOT, desktop);
    }
  });
});
