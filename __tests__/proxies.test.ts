// The README's "Deploying behind a proxy" recipes, each run through the real proxy from its docs/
// file: the test shows what goes wrong without the recipe's key line, and that the recipe is enough.
import fs from 'node:fs';
import path from 'node:path';
import { diagnose, type Diagnosis } from '../src/doctor/diagnose';
import { doctor } from '../src/doctor/doctor';
import { describeWithBinary } from './helpers/binaries';
import { recipe, startProxy, type ProxyProcess } from './helpers/proxy';
import { listen, type TestServer } from './helpers/server';
import { proxiedRoutes } from './helpers/streams';
import { watch } from './helpers/watch';

// Generous for a loaded machine: a held head or clumped events show up as 200 ms or as never.
const PROMPT_MS = 500;

let upstream: TestServer;
beforeAll(async () => {
  upstream = await listen(proxiedRoutes());
});
afterAll(async () => {
  await upstream?.close();
});

/** The gaps between consecutive events: the upstream writes one every 200 ms. */
const gaps = (events: number[]): number[] => events.slice(1).map((t, i) => t - events[i]!);

/** The doctor's verdict on `url`, sampled for `durationMs`, direct (no proxy from the environment). */
async function diagnoseUrl(url: string, durationMs = 1500): Promise<Diagnosis> {
  return diagnose(await doctor(url, { durationMs, proxy: false }));
}

/** Runs `stop` for each started proxy after the describe block. */
function stopAfterAll(proxies: ProxyProcess[]): void {
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
  });
}

describeWithBinary('caddy', 'behind Caddy (docs/Caddyfile)', (binary) => {
  // Caddy's admin endpoint is a fixed port on the machine: off, so that runs in parallel do not collide.
  const GLOBAL = '{\n\tadmin off\n}\n';
  const caddy = (name: string, caddyfile: (port: number) => string): Promise<ProxyProcess> =>
    startProxy({
      name,
      binary,
      ports: 1,
      setup(dir, [port]) {
        fs.writeFileSync(path.join(dir, 'Caddyfile'), GLOBAL + caddyfile(port!));
        return ['run', '--config', path.join(dir, 'Caddyfile'), '--adapter', 'caddyfile'];
      },
    });
  const proxies: ProxyProcess[] = [];
  const origin: { encode?: string; recipe?: string } = {};
  beforeAll(async () => {
    // What Caddy's docs show for a proxy that compresses: encode, then reverse_proxy.
    const plain = await caddy('caddy', (port) => `http://127.0.0.1:${port} {\n\tencode gzip\n\treverse_proxy 127.0.0.1:${upstream.port}\n}\n`);
    const docs = await caddy('caddy', (port) => recipe('Caddyfile', { 'example.com': `http://127.0.0.1:${port}`, '127.0.0.1:3000': `127.0.0.1:${upstream.port}` }));
    proxies.push(plain, docs);
    origin.encode = `http://127.0.0.1:${plain.ports[0]}`;
    origin.recipe = `http://127.0.0.1:${docs.ports[0]}`;
  });
  stopAfterAll(proxies);

  it("with `encode gzip`, releases a quiet sse() stream's head at once, thanks to the line sse() writes at connect", async () => {
    const w = await watch(`${origin.encode}/quiet`, { ms: 1500 });
    expect(w.status).toBe(200);
    expect(w.headMs).toBeLessThan(PROMPT_MS);
  });

  it('with `encode gzip`, releases the head of a producer that writes no body byte once guard() is mounted', async () => {
    const w = await watch(`${origin.encode}/head-only/guarded`, { ms: 1500 });
    expect(w.status).toBe(200);
    expect(w.headMs).toBeLessThan(PROMPT_MS);
  });

  it('with `encode gzip`, holds the head of a stream that writes no body byte (the control)', async () => {
    const w = await watch(`${origin.encode}/head-only`, { ms: 2000 });
    expect(w.headMs).toBeUndefined();
  });

  it("the doctor names Caddy's encode when it holds the head, and the recipe as the fix", async () => {
    const diagnosis = await diagnoseUrl(`${origin.encode}/head-only`, 1000);
    const finding = diagnosis.findings.find((f) => f.culprit === 'no-response');
    expect(finding?.fix).toMatch(/Caddy's `encode` holds the head/);
    expect(finding?.fix).toMatch(/docs\/Caddyfile/);
  });

  it('with the recipe, releases even that head at once, and events are not compressed', async () => {
    const held = await watch(`${origin.recipe}/head-only`, { ms: 1500 });
    expect(held.headMs).toBeLessThan(PROMPT_MS);
    const events = await watch(`${origin.recipe}/events`, { ms: 3000, events: 5 });
    expect(events.headers['content-encoding']).toBeUndefined();
    expect(events.events).toHaveLength(5);
    expect(Math.max(...gaps(events.events))).toBeLessThan(PROMPT_MS);
  });
});

describeWithBinary('haproxy', 'behind HAProxy (docs/haproxy.cfg)', (binary) => {
  const haproxy = (config: (port: number) => string): Promise<ProxyProcess> =>
    startProxy({
      name: 'haproxy',
      binary,
      ports: 1,
      setup(dir, [port]) {
        fs.writeFileSync(path.join(dir, 'haproxy.cfg'), config(port!));
        // -db: foreground, no daemon; -W is not needed for one process.
        return ['-db', '-f', path.join(dir, 'haproxy.cfg')];
      },
    });
  const docs = (port: number): string => recipe('haproxy.cfg', { 'bind :8080': `bind 127.0.0.1:${port}`, '127.0.0.1:3000': `127.0.0.1:${upstream.port}` });
  const proxies: ProxyProcess[] = [];
  const origin: { recipe?: string; without?: string } = {};
  beforeAll(async () => {
    const withRecipe = await haproxy(docs);
    // The same recipe without its key line.
    const without = await haproxy((port) => docs(port).replace(/^\s*option http-no-delay\s*$/m, ''));
    proxies.push(withRecipe, without);
    origin.recipe = `http://127.0.0.1:${withRecipe.ports[0]}`;
    origin.without = `http://127.0.0.1:${without.ports[0]}`;
  });
  stopAfterAll(proxies);

  it('without `option http-no-delay`, events arrive clumped (the failure the recipe fixes)', async () => {
    const w = await watch(`${origin.without}/events`, { ms: 4000, events: 12 });
    // Events are written 200 ms apart; HAProxy lets some pairs out together (gaps near 0 and 400 ms).
    expect(w.events.length).toBeGreaterThanOrEqual(6);
    expect(Math.min(...gaps(w.events))).toBeLessThan(50);
  });

  it('the doctor finds the clumping and names option http-no-delay', async () => {
    const diagnosis = await diagnoseUrl(`${origin.without}/events`, 2500);
    expect(diagnosis.findings).toMatchObject([{ culprit: 'buffering', level: 'warn', problem: expect.stringMatching(/clumped/), fix: expect.stringMatching(/option http-no-delay/) }]);
  });

  it('the doctor finds nothing wrong with the recipe', async () => {
    const diagnosis = await diagnoseUrl(`${origin.recipe}/events`, 2500);
    expect(diagnosis.findings).toEqual([]);
  });

  it('with the recipe, every event arrives on its own, about 200 ms apart', async () => {
    const w = await watch(`${origin.recipe}/events`, { ms: 4000, events: 12 });
    expect(w.headMs).toBeLessThan(PROMPT_MS);
    expect(w.events.length).toBe(12);
    // Each gap well above 0 ms: no two events came out of one read.
    expect(Math.min(...gaps(w.events))).toBeGreaterThan(100);
  });
});

describeWithBinary('apache2', 'behind Apache httpd with mod_deflate (docs/apache.conf)', (binary) => {
  const MODULES = '/usr/lib/apache2/modules';
  const modules = ['mpm_event', 'authz_core', 'proxy', 'proxy_http', 'deflate', 'filter', 'setenvif'];
  const apache = (vhost: (port: number) => string): Promise<ProxyProcess> =>
    startProxy({
      name: 'apache2',
      binary,
      ports: 1,
      setup(dir, [port]) {
        const conf = path.join(dir, 'httpd.conf');
        fs.writeFileSync(
          conf,
          [
            `ServerRoot "${dir}"`,
            'ServerName 127.0.0.1',
            `PidFile "${path.join(dir, 'httpd.pid')}"`,
            `ErrorLog "${path.join(dir, 'error.log')}"`,
            'LogLevel warn',
            `Listen 127.0.0.1:${port}`,
            ...modules.map((m) => `LoadModule ${m}_module "${MODULES}/mod_${m}.so"`),
            // A server that compresses every text response, the stream's type included.
            'AddOutputFilterByType DEFLATE text/html text/plain text/event-stream',
            vhost(port!),
          ].join('\n'),
        );
        // -X: one process in the foreground, no children.
        return ['-X', '-d', dir, '-f', conf];
      },
      // SIGWINCH is httpd's graceful stop, which would wait for the open streams; SIGTERM is at once.
      stopSignal: 'SIGTERM',
    });
  const docs = (port: number): string => recipe('apache.conf', { '*:80': `127.0.0.1:${port}`, 'http://127.0.0.1:3000/': `http://127.0.0.1:${upstream.port}/` });
  const proxies: ProxyProcess[] = [];
  const origin: { recipe?: string; without?: string } = {};
  beforeAll(async () => {
    const withRecipe = await apache(docs);
    const without = await apache((port) => docs(port).replace(/^\s*SetEnvIfNoCase .*$/m, ''));
    proxies.push(withRecipe, without);
    origin.recipe = `http://127.0.0.1:${withRecipe.ports[0]}`;
    origin.without = `http://127.0.0.1:${without.ports[0]}`;
  });
  stopAfterAll(proxies);

  it("without the recipe, mod_deflate compresses the stream despite sse()'s no-transform (and still flushes)", async () => {
    const w = await watch(`${origin.without}/events`, { ms: 1500 });
    expect(String(w.headers['cache-control'])).toMatch(/no-transform/);
    expect(w.headers['content-encoding']).toBe('gzip');
  });

  it("the doctor names Apache's mod_deflate and the recipe's line, not compression()'s advice", async () => {
    const diagnosis = await diagnoseUrl(`${origin.without}/events`);
    expect(diagnosis.verdict).toBe('healthy');
    expect(diagnosis.findings).toMatchObject([{ culprit: 'compression', level: 'warn', fix: expect.stringMatching(/mod_deflate.*SetEnvIfNoCase Accept "text\/event-stream" no-gzip/) }]);
    expect(diagnosis.findings[0]!.fix).not.toMatch(/res\.flush/);
  });

  it('with the recipe, the stream is not compressed and events arrive promptly', async () => {
    const w = await watch(`${origin.recipe}/events`, { ms: 3000, events: 5 });
    expect(w.headers['content-encoding']).toBeUndefined();
    expect(w.headMs).toBeLessThan(PROMPT_MS);
    expect(w.events).toHaveLength(5);
    expect(Math.max(...gaps(w.events))).toBeLessThan(PROMPT_MS);
  });
});

describeWithBinary('varnishd', 'behind Varnish (docs/varnish.vcl)', (binary) => {
  // send_timeout scaled down from its 600 s default, so the cut shows within the test.
  const SEND_TIMEOUT_S = 2;
  const varnish = (vcl: string): Promise<ProxyProcess> =>
    startProxy({
      name: 'varnish',
      binary,
      ports: 1,
      setup(dir, [port]) {
        fs.writeFileSync(path.join(dir, 'default.vcl'), vcl);
        // -F: foreground; -n: its working folder; -T none: no management port to collide on.
        return ['-F', '-n', path.join(dir, 'work'), '-a', `127.0.0.1:${port}`, '-f', path.join(dir, 'default.vcl'), '-T', 'none', '-s', 'malloc,16m', '-p', `send_timeout=${SEND_TIMEOUT_S}`];
      },
    });
  const proxies: ProxyProcess[] = [];
  const origin: { recipe?: string; without?: string } = {};
  beforeAll(async () => {
    const vcl = recipe('varnish.vcl', { '"3000"': `"${upstream.port}"` });
    const withRecipe = await varnish(vcl);
    // The same VCL without its vcl_deliver: the builtin behaviour.
    const without = await varnish(vcl.slice(0, vcl.indexOf('sub vcl_deliver')));
    proxies.push(withRecipe, without);
    origin.recipe = `http://127.0.0.1:${withRecipe.ports[0]}`;
    origin.without = `http://127.0.0.1:${without.ports[0]}`;
  });
  stopAfterAll(proxies);

  it('without the recipe, cuts a stream after send_timeout even while events flow', async () => {
    const w = await watch(`${origin.without}/events`, { ms: SEND_TIMEOUT_S * 1000 + 2000 });
    expect(w.headMs).toBeLessThan(PROMPT_MS);
    expect(w.endMs).toBeGreaterThan(SEND_TIMEOUT_S * 1000 - 500);
    expect(w.endMs).toBeLessThan(SEND_TIMEOUT_S * 1000 + 1500);
  });

  it("the doctor calls it a hard cut, not an idle one, and names Varnish's send_timeout", async () => {
    const diagnosis = await diagnoseUrl(`${origin.without}/events`, SEND_TIMEOUT_S * 1000 + 2000);
    expect(diagnosis.findings).toMatchObject([{ culprit: 'hard-cut', fix: expect.stringMatching(/sess\.send_timeout/) }]);
    expect(diagnosis.checks.find((c) => c.name === 'layers')?.value).toMatch(/Varnish/);
  });

  it('with the recipe, the stream outlives send_timeout, events arriving promptly', async () => {
    const w = await watch(`${origin.recipe}/events`, { ms: SEND_TIMEOUT_S * 1000 + 2000 });
    expect(w.endMs).toBeUndefined();
    expect(w.headMs).toBeLessThan(PROMPT_MS);
    expect(w.events.length).toBeGreaterThan(10);
    expect(Math.max(...gaps(w.events))).toBeLessThan(PROMPT_MS);
  });
});

describeWithBinary('haproxy', 'an idle cut: a proxy timeout shorter than the heartbeat (HAProxy)', (binary) => {
  // Scaled down: HAProxy's timeouts at 1.5 s stand for the 10 s some tutorials use, against a quiet
  // stream. Well above the doctor's 1 s floor for an idle cut: at exactly 1 s, a last byte seen late
  // by a busy client made the quiet read 9xx ms, and the doctor called it a hard cut.
  const TIMEOUT_MS = 1500;
  let proxy: ProxyProcess;
  let origin: string;
  beforeAll(async () => {
    proxy = await startProxy({
      name: 'haproxy',
      binary,
      ports: 1,
      setup(dir, [port]) {
        const config = recipe('haproxy.cfg', { 'bind :8080': `bind 127.0.0.1:${port}`, '127.0.0.1:3000': `127.0.0.1:${upstream.port}` })
          .replace(/timeout client \S+/, `timeout client ${TIMEOUT_MS}ms`)
          .replace(/timeout server \S+/, `timeout server ${TIMEOUT_MS}ms`);
        fs.writeFileSync(path.join(dir, 'haproxy.cfg'), config);
        return ['-db', '-f', path.join(dir, 'haproxy.cfg')];
      },
    });
    origin = `http://127.0.0.1:${proxy.ports[0]}`;
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('cuts a stream whose heartbeat is slower than the timeout', async () => {
    const w = await watch(`${origin}/heartbeat/3000`, { ms: 3000 });
    expect(w.headMs).toBeLessThan(PROMPT_MS);
    expect(w.endMs).toBeGreaterThan(TIMEOUT_MS - 300);
    expect(w.endMs).toBeLessThan(TIMEOUT_MS + 1500);
  });

  it('keeps a stream whose heartbeat is faster than the timeout (the control)', async () => {
    const w = await watch(`${origin}/heartbeat/300`, { ms: 3000 });
    expect(w.endMs).toBeUndefined();
  });

  it('the doctor calls it an idle cut, says how long the stream was quiet, and how to fix the heartbeat', async () => {
    const diagnosis = await diagnoseUrl(`${origin}/heartbeat/3000`, 3000);
    const finding = diagnosis.findings.find((f) => f.culprit === 'idle-cut');
    expect(finding?.problem).toMatch(/cut after being quiet for (?:1\.[3-9]|2\.\d) s/);
    expect(finding?.problem).toMatch(/No heartbeat came/);
    expect(finding?.fix).toMatch(/sse\(\{ heartbeat: /);
  });
});
