// The doctor goes where a browser goes: through the proxy the environment names (a real Squid), over
// TLS it may not be able to verify, over HTTP/2 by ALPN; and it shows nothing it should not (a
// password, a server's control characters) nor holds more than a bounded line.
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import express from 'express';
import { diagnose } from '../src/doctor/diagnose';
import { doctor, MAX_ARRIVALS } from '../src/doctor/doctor';
import { bypassesProxy, chooseProxy } from '../src/doctor/transport';
import { describeWithBinary } from './helpers/binaries';
import { cli } from './helpers/cli';
import { recipe, selfSignedCert, startProxy, type ProxyProcess } from './helpers/proxy';
import { listen, type TestServer } from './helpers/server';
import { guardedSse, naiveSse } from './helpers/streams';

interface Report {
  exitCode: number;
  verdict: string;
  checks: Array<{ name: string; value: string }>;
  findings: Array<{ culprit: string; problem: string; fix: string }>;
  result: { url: string; main: { proxy?: string; protocol?: string; headers: Record<string, string> } };
}
const json = (stdout: string): Report => JSON.parse(stdout) as Report;
const check = (report: Report, name: string): string | undefined => report.checks.find((c) => c.name === name)?.value;

let server: TestServer;
beforeAll(async () => {
  const app = express();
  app.get('/events', guardedSse());
  app.get('/naive', naiveSse());
  // An error page that would clear the terminal and ring its bell if printed as it is.
  app.get('/hostile', (_req, res) => {
    res.status(500).type('text/html').send('<h1>oops\x1b[2J\x1b]0;pwned\x07\r</h1> \x9b31m red');
  });
  // An event stream that never sends a line break: 64 KiB at a time, for as long as the client reads.
  app.get('/endless-line', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    const chunk = 'x'.repeat(64 * 1024);
    const timer = setInterval(() => res.write(`data: ${chunk}`), 1);
    res.on('close', () => clearInterval(timer));
  });
  // A gzip bomb: 64 MiB of short data lines with no blank line, in about 100 KiB on the wire.
  app.get('/endless-event', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Content-Encoding': 'gzip' });
    const gzip = zlib.createGzip({ flush: zlib.constants.Z_SYNC_FLUSH });
    gzip.pipe(res);
    const chunk = `data: ${'x'.repeat(57)}\n`.repeat(16 * 1024);
    let sent = 0;
    const timer = setInterval(() => {
      gzip.write(chunk);
      if (++sent === 64) {
        clearInterval(timer);
        gzip.end();
      }
    }, 1);
    res.on('close', () => {
      clearInterval(timer);
      gzip.destroy();
    });
  });
  // Tiny events, more than the doctor records, then nothing: the stream stays open.
  app.get('/flood', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write('data: x\n\n'.repeat(MAX_ARRIVALS + 20_000));
  });
  server = await listen(app);
});
afterAll(async () => {
  await server?.close();
});

describe('the doctor keeps what it prints safe', () => {
  it('masks the password of the URL in the text report and in --json', async () => {
    const url = `http://alice:s3cret@127.0.0.1:${server.port}/events`;
    const text = await cli(['doctor', url, '--duration', '800ms']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('alice:****@');
    const asJson = await cli(['doctor', url, '--duration', '800ms', '--json']);
    expect(json(asJson.stdout).result.url).toBe(`http://alice:****@127.0.0.1:${server.port}/events`);
    for (const run of [text, asJson]) expect(run.stdout + run.stderr).not.toContain('s3cret');
  });

  it("strips a server's control characters from what it prints", async () => {
    const run = await cli(['doctor', `http://127.0.0.1:${server.port}/hostile`, '--duration', '800ms']);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('oops');
    // eslint-disable-next-line no-control-regex
    expect(run.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });

  it('stops at a line that grows past 1 MiB without a break, and says so', async () => {
    const started = performance.now();
    const result = await doctor(`http://127.0.0.1:${server.port}/endless-line`, { durationMs: 10_000 });
    // It stops at the bound, long before the sample's end, having held a bounded amount.
    expect(performance.now() - started).toBeLessThan(8000);
    expect(result.main.decodedBytes).toBeLessThan(4 * 1024 * 1024);
    expect(diagnose(result).findings).toMatchObject([{ culprit: 'long-line', problem: expect.stringMatching(/without a line break/) }]);
  });

  it('stops at an event whose short lines pass 16 MiB without a blank line, even from a gzip bomb', async () => {
    const result = await doctor(`http://127.0.0.1:${server.port}/endless-event`, { durationMs: 20_000 });
    // The server sends 64 MiB; the doctor stops a little past the bound, holding no more than that.
    expect(result.main.longEvent).toBeGreaterThan(16 * 1024 * 1024);
    expect(result.main.decodedBytes).toBeLessThan(24 * 1024 * 1024);
    expect(result.main.endMs).toBeUndefined();
    expect(diagnose(result).findings).toMatchObject([{ culprit: 'long-event', problem: expect.stringMatching(/without the blank line/) }]);
  });

  it('stops recording at MAX_ARRIVALS events instead of growing for the whole sample', async () => {
    const started = performance.now();
    const result = await doctor(`http://127.0.0.1:${server.port}/flood`, { durationMs: 15_000 });
    expect(result.main.arrivals).toHaveLength(MAX_ARRIVALS);
    expect(result.main.error).toBeUndefined();
    // The server never ends: only the cap stops the sample before its 15 s.
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(diagnose(result).verdict).toBe('healthy');
  });

  it.each([
    ['a CR LF in the value', 'X-Test: a\r\nInjected: 1'],
    ['a bad name', 'Bad Name: 1'],
    ['no name', ': 1'],
  ])('refuses --header with %s as a usage error, without a stack trace', async (_title, header) => {
    const run = await cli(['doctor', `http://127.0.0.1:${server.port}/events`, '--header', header]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--header/);
    expect(run.stderr).toMatch(/Usage:/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('takes proxy credentials with a stray % as they are written, without a stack trace', async () => {
    const run = await cli(['doctor', `http://127.0.0.1:${server.port}/events`, '--duration', '300ms', '--proxy', 'http://a%zz:b%@127.0.0.1:9']);
    expect(run.code).toBe(2);
    expect(run.stdout + run.stderr).toMatch(/proxy/i);
    expect(run.stdout + run.stderr).not.toMatch(/URIError|\n\s+at /);
  });
});

describeWithBinary('openssl', 'the doctor over TLS and HTTP/2', () => {
  let server: TlsServer;
  let cert: string;
  let origin: string;
  beforeAll(async () => {
    server = await tlsServer();
    ({ cert, origin } = server);
  });
  afterAll(() => server?.close());

  it('names --insecure and NODE_EXTRA_CA_CERTS when the certificate cannot be verified', async () => {
    const run = await cli(['doctor', `${origin}/events`, '--duration', '800ms']);
    expect(run.code).toBe(2);
    expect(run.stdout).toMatch(/TLS failed/);
    expect(run.stdout).toMatch(/--insecure/);
    expect(run.stdout).toMatch(/NODE_EXTRA_CA_CERTS/);
  });

  it('samples the stream over HTTP/2 with NODE_EXTRA_CA_CERTS, and reports the protocol', async () => {
    const run = await cli(['doctor', `${origin}/events`, '--duration', '800ms', '--json'], { NODE_EXTRA_CA_CERTS: cert });
    expect(run.code).toBe(0);
    expect(json(run.stdout).result.main.protocol).toBe('HTTP/2');
  });

  it('with --insecure, and --http1.1 to force HTTP/1.1', async () => {
    const h2run = await cli(['doctor', `${origin}/events`, '--duration', '800ms', '--insecure']);
    expect(h2run.code).toBe(0);
    expect(h2run.stdout).toMatch(/HTTP\/2/);
    const h1run = await cli(['doctor', `${origin}/events`, '--duration', '800ms', '--insecure', '--http1.1', '--json']);
    expect(h1run.code).toBe(0);
    expect(json(h1run.stdout).result.main.protocol).toBe('HTTP/1.1');
  });
});

describeWithBinary('squid', 'the doctor through a forward proxy (Squid, docs/squid.conf)', (binary) => {
  let squid: ProxyProcess;
  let proxyUrl: string;
  beforeAll(async () => {
    squid = await startProxy({
      name: 'squid',
      binary,
      ports: 1,
      setup(dir, [port]) {
        const conf = path.join(dir, 'squid.conf');
        // Where the test's Squid keeps its files, and a stop that does not wait for open streams.
        const local = [
          `pid_filename ${path.join(dir, 'squid.pid')}`,
          `cache_log ${path.join(dir, 'cache.log')}`,
          'access_log none',
          `coredump_dir ${dir}`,
          'shutdown_lifetime 0 seconds',
          'pinger_enable off',
          'visible_hostname sse-guard-test',
        ];
        fs.writeFileSync(conf, `${recipe('squid.conf', { 'http_port 3128': `http_port 127.0.0.1:${port}` })}\n${local.join('\n')}\n`);
        fs.chmodSync(dir, 0o777);
        return ['-N', '-f', conf];
      },
    });
    proxyUrl = `http://127.0.0.1:${squid.ports[0]}`;
  });
  afterAll(async () => {
    await squid?.stop();
  });

  it('honours HTTP_PROXY, says so, and finds Squid in the way', async () => {
    const run = await cli(['doctor', `${server.url}/events`, '--duration', '800ms', '--json'], { HTTP_PROXY: proxyUrl });
    const report = json(run.stdout);
    expect(run.code).toBe(0);
    expect(report.result.main.proxy).toBe(`${proxyUrl}/ (HTTP_PROXY)`);
    expect(check(report, 'layers')).toMatch(/Squid/);
  });

  it('goes direct for a host in NO_PROXY', async () => {
    const run = await cli(['doctor', `${server.url}/events`, '--duration', '800ms', '--json'], { HTTP_PROXY: proxyUrl, NO_PROXY: 'localhost,127.0.0.1' });
    const report = json(run.stdout);
    expect(report.result.main.proxy).toBeUndefined();
    expect(check(report, 'layers')).toBe('none recognised');
  });

  it('takes --proxy, and masks its password in the report', async () => {
    const withCredentials = proxyUrl.replace('http://', 'http://bob:hunter2@');
    const run = await cli(['doctor', `${server.url}/events`, '--duration', '800ms', '--proxy', withCredentials]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('through the proxy http://bob:****@127.0.0.1');
    expect(run.stdout + run.stderr).not.toContain('hunter2');
  });

  describeWithBinary('openssl', 'an https stream through a CONNECT tunnel', () => {
    let server: TlsServer;
    let origin: string;
    beforeAll(async () => {
      server = await tlsServer();
      ({ origin } = server);
    });
    afterAll(() => server?.close());

    it('honours HTTPS_PROXY and still negotiates HTTP/2 end to end', async () => {
      const run = await cli(['doctor', `${origin}/events`, '--duration', '800ms', '--insecure', '--json'], { HTTPS_PROXY: proxyUrl });
      const report = json(run.stdout);
      expect(run.code).toBe(0);
      expect(report.result.main.proxy).toBe(`${proxyUrl}/ (HTTPS_PROXY)`);
      expect(report.result.main.protocol).toBe('HTTP/2');
      const h1run = await cli(['doctor', `${origin}/events`, '--duration', '800ms', '--insecure', '--http1.1', '--json'], { HTTPS_PROXY: proxyUrl });
      expect(h1run.code).toBe(0);
      expect(json(h1run.stdout).result.main.protocol).toBe('HTTP/1.1');
    });
  });
});

describe('which proxy the doctor takes', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy']) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });
  const target = (url: string): URL => new URL(url);

  it.each([
    ['*', 'http://example.com/', true],
    ['example.com', 'http://api.example.com/', true],
    ['.example.com', 'http://example.com/', true],
    ['example.com', 'http://notexample.com/', false],
    ['127.0.0.1:8080', 'http://127.0.0.1:8080/', true],
    ['127.0.0.1:8080', 'http://127.0.0.1:9090/', false],
    ['[::1]', 'http://[::1]:3000/', true],
    [' localhost , 10.0.0.1 ', 'http://10.0.0.1/', true],
  ])('NO_PROXY=%j exempts %s: %s', (noProxy, url, expected) => {
    expect(bypassesProxy(target(url), noProxy)).toBe(expected);
  });

  it('takes HTTPS_PROXY for https and HTTP_PROXY for http, lower case too, and a bare host:port', () => {
    process.env.HTTPS_PROXY = 'proxy.internal:3128';
    process.env.http_proxy = 'http://other:8080';
    expect(chooseProxy(target('https://example.com/'), undefined)).toMatchObject({ source: 'HTTPS_PROXY', url: new URL('http://proxy.internal:3128') });
    expect(chooseProxy(target('http://example.com/'), undefined)).toMatchObject({ source: 'HTTP_PROXY', url: new URL('http://other:8080') });
    expect(chooseProxy(target('http://example.com/'), false)).toBeUndefined();
    expect(chooseProxy(target('http://example.com/'), 'http://flag:1')).toMatchObject({ source: '--proxy' });
  });

  it('reports an https:// proxy it cannot speak to instead of connecting around it', async () => {
    const result = await doctor(`${server.url}/events`, { durationMs: 800, proxy: 'https://proxy.invalid:3128' });
    expect(diagnose(result)).toMatchObject({ verdict: 'unreachable', findings: [{ problem: expect.stringMatching(/not an http:\/\/ proxy/) }] });
  });
});

interface TlsServer {
  origin: string;
  /** The self-signed certificate's file, for NODE_EXTRA_CA_CERTS. */
  cert: string;
  close(): Promise<void>;
}

/** An sse() route over TLS with a self-signed certificate: HTTP/2 with HTTP/1.1 as fallback, as browsers and proxies meet it. */
async function tlsServer(): Promise<TlsServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-guard-tls-'));
  const { key, cert } = selfSignedCert(dir);
  const route = guardedSse();
  // sse() on Node's HTTP/2 compatibility API.
  const h2 = http2.createSecureServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert), allowHTTP1: true }, (req, res) => {
    route(req as never, res as never, () => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  return {
    origin: `https://127.0.0.1:${(h2.address() as { port: number }).port}`,
    cert,
    close: async () => {
      await new Promise((resolve) => h2.close(resolve));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
