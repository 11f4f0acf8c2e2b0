// A real nginx in front of the stream: its defaults and its gzip hold a hand-written stream until the
// response ends, X-Accel-Buffering: no (sent by sse()) and docs/nginx.conf release it, and the
// doctor tells these cases apart.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { diagnose, type Culprit } from '../src/doctor/diagnose';
import { guard, sse } from '../src/index';
import { doctor } from '../src/doctor/doctor';
import { describeWithBinary } from './helpers/binaries';
import { firstEvent, recipe, selfSignedCert, startNginx, type ProxyProcess } from './helpers/proxy';
import { listen, type TestServer } from './helpers/server';
import { guardedSse, headOnly, naiveSse } from './helpers/streams';
import { watch } from './helpers/watch';

const SNIPPET = path.join(__dirname, '..', 'docs', 'nginx.conf');
// Generous: a stream nginx holds shows up after seconds, or not at all.
const PROMPT_MS = 500;

describeWithBinary('nginx', 'behind nginx', (binary) => {
  let upstream: TestServer;
  let nginx: ProxyProcess;
  // `plain`: nginx's defaults (proxy_http_version 1.0, proxy_buffering on).
  // `gzip`: gzip on for text/event-stream, with an HTTP/1.1 upstream so that gzip is the only holder.
  // `snippet`: the same gzip server, with docs/nginx.conf included in the location.
  let url: { plain: string; gzip: string; snippet: string };

  beforeAll(async () => {
    const app = express();
    app.get('/guarded', guardedSse());
    app.get('/naive', naiveSse());
    app.get('/naive-ends', naiveSse({ endAfter: 1500 }));
    app.get('/naive-unbuffered', naiveSse({ headers: { 'X-Accel-Buffering': 'no' } }));
    upstream = await listen(app);
    const pass = `proxy_pass http://127.0.0.1:${upstream.port}/;`;
    nginx = await startNginx(
      binary,
      2,
      ([plain, gzip]) => `
        server {
          listen 127.0.0.1:${plain};
          location /plain/ { ${pass} }
        }
        server {
          listen 127.0.0.1:${gzip};
          gzip on;
          gzip_types text/event-stream;
          location /gzip/ { ${pass} proxy_http_version 1.1; proxy_set_header Connection ''; }
          location /snippet/ { ${pass} include "${SNIPPET}"; }
        }`,
    );
    const [plain, gzip] = nginx.ports.map((port) => `http://127.0.0.1:${port}`);
    url = { plain: `${plain}/plain`, gzip: `${gzip}/gzip`, snippet: `${gzip}/snippet` };
  });

  afterAll(async () => {
    await nginx?.stop();
    await upstream?.close();
  });

  describe('sse() with nginx defaults in front (HTTP/1.0 upstream, proxy_buffering on)', () => {
    it('delivers the first event at once', async () => {
      const { firstEventMs } = await firstEvent(`${url.plain}/guarded`, 3000);
      expect(firstEventMs).toBeLessThan(PROMPT_MS);
    });

    it('while a hand-written stream on the same nginx arrives only when its response ends', async () => {
      // The route ends 1.5 s after its first event; nginx releases everything then.
      const { firstEventMs } = await firstEvent(`${url.plain}/naive-ends`, 3000);
      expect(firstEventMs).toBeGreaterThan(1000);
    });
  });

  describe('docs/nginx.conf', () => {
    it('releases a hand-written stream at once, even with gzip on in the server', async () => {
      const { firstEventMs, headers } = await firstEvent(`${url.snippet}/naive`, 3000);
      expect(firstEventMs).toBeLessThan(PROMPT_MS);
      expect(headers['content-encoding']).toBeUndefined();
    });
  });

  describe('the doctor, through nginx', () => {
    const run = async (target: string, durationMs = 1500) => {
      const result = await doctor(target, { durationMs });
      return { result, diagnosis: diagnose(result) };
    };
    const culprits = (findings: Array<{ culprit: Culprit }>): Culprit[] => findings.map((f) => f.culprit);

    it('finds nginx holding a hand-written stream with its default HTTP/1.0 upstream', async () => {
      const { diagnosis } = await run(`${url.plain}/naive-ends`, 2500);
      expect(diagnosis.verdict).toBe('problems');
      expect(culprits(diagnosis.findings)).toEqual(['buffering']);
      expect(diagnosis.findings[0]!.problem).toMatch(/nginx/);
      expect(diagnosis.findings[0]!.fix).toMatch(/X-Accel-Buffering: no/);
    });

    it('finds no headers at all when that stream never ends', async () => {
      const { diagnosis, result } = await run(`${url.plain}/naive`);
      expect(diagnosis.verdict).toBe('problems');
      expect(culprits(diagnosis.findings)).toEqual(['no-response']);
      // Compression was ruled out with an uncompressed second sample.
      expect(result.control?.headersMs).toBeUndefined();
    });

    it("finds nginx's gzip holding a hand-written stream", async () => {
      const { diagnosis, result } = await run(`${url.gzip}/naive`);
      expect(diagnosis.verdict).toBe('problems');
      expect(culprits(diagnosis.findings)).toEqual(['compression']);
      expect(diagnosis.findings[0]!.problem).toMatch(/nginx/);
      expect(result.main.headersMs).toBeUndefined();
      expect(result.control?.firstEventMs).toBeLessThan(PROMPT_MS);
    });

    it.each([
      ['a hand-written stream with X-Accel-Buffering: no, default upstream', 'plain', '/naive-unbuffered'],
      ['a hand-written stream with X-Accel-Buffering: no, gzip on', 'gzip', '/naive-unbuffered'],
      ['an sse() stream, default upstream', 'plain', '/guarded'],
      ['an sse() stream, gzip on', 'gzip', '/guarded'],
      ['a hand-written stream through docs/nginx.conf', 'snippet', '/naive'],
    ] as const)('raises no alarm for %s', async (_title, server, route) => {
      const { diagnosis, result } = await run(`${url[server]}${route}`);
      expect(diagnosis.findings.filter((f) => f.level === 'fail')).toEqual([]);
      expect(diagnosis.verdict).toBe('healthy');
      expect(result.main.firstEventMs).toBeLessThan(PROMPT_MS);
    });

    it('measures the delay nginx adds with the probe', async () => {
      const { diagnosis } = await run(`${url.plain}/guarded`);
      expect(diagnosis.findings).toEqual([]);
      expect(diagnosis.checks.find((c) => c.name === 'hop delay')).toMatchObject({ level: 'ok', value: expect.stringMatching(/same machine/) });
    });
  });
});

describeWithBinary('nginx', 'behind nginx over HTTPS and HTTP/2 (docs/nginx-http2.conf)', (binary) => {
  let upstream: TestServer;
  let nginx: ProxyProcess;
  let origin: string;
  let certDir: string;

  beforeAll(async () => {
    const app = express();
    // A quiet sse() stream: no event, no heartbeat, only the line sse() writes at connect.
    app.get('/quiet', sse(() => {}, { heartbeat: false }));
    app.get('/head-only', headOnly());
    app.get('/head-only/guarded', guard({ heartbeat: false }), headOnly());
    upstream = await listen(app);
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-guard-cert-'));
    const { key, cert } = selfSignedCert(certDir);
    nginx = await startNginx(binary, 1, ([port]) =>
      recipe('nginx-http2.conf', {
        'listen 443': `listen 127.0.0.1:${port}`,
        '/etc/ssl/certs/example.pem': cert,
        '/etc/ssl/private/example.key': key,
        'snippets/sse.conf': SNIPPET,
        '127.0.0.1:3000': `127.0.0.1:${upstream.port}`,
      }),
    );
    origin = `https://127.0.0.1:${nginx.ports[0]}`;
  });

  afterAll(async () => {
    await nginx?.stop();
    await upstream?.close();
    if (certDir !== undefined) fs.rmSync(certDir, { recursive: true, force: true });
  });

  it("releases a quiet sse() stream's head at once over HTTP/2, thanks to the line sse() writes at connect", async () => {
    const w = await watch(`${origin}/quiet`, { ms: 1500, http2: true });
    expect(w.status).toBe(200);
    expect(w.headMs).toBeLessThan(PROMPT_MS);
  });

  it('releases the head of a producer that writes no body byte once guard() is mounted (its connect line)', async () => {
    const w = await watch(`${origin}/head-only/guarded`, { ms: 1500, http2: true });
    expect(w.status).toBe(200);
    expect(w.headMs).toBeLessThan(PROMPT_MS);
  });

  it('holds the head of a stream that flushes its head but writes no body byte (the control)', async () => {
    const w = await watch(`${origin}/head-only`, { ms: 2000, http2: true });
    expect(w.headMs).toBeUndefined();
  });

  it('the doctor negotiates HTTP/2 as a browser does, sees the held head and names nginx over HTTP/2; with --http1.1 it does not', async () => {
    const h2 = await doctor(`${origin}/head-only`, { durationMs: 1000, insecure: true, proxy: false });
    // Negotiated by ALPN, so known although no response head came.
    expect(h2.main.protocol).toBe('HTTP/2');
    expect(h2.main.headersMs).toBeUndefined();
    const finding = diagnose(h2).findings.find((f) => f.culprit === 'no-response');
    expect(finding?.fix).toMatch(/nginx over HTTP\/2 sends the head only with the first body byte/);
    const h1 = await doctor(`${origin}/head-only`, { durationMs: 1000, insecure: true, proxy: false, http1: true });
    expect(h1.main).toMatchObject({ protocol: 'HTTP/1.1', status: 200 });
    const quiet = await doctor(`${origin}/quiet`, { durationMs: 1000, insecure: true, proxy: false });
    expect(quiet.main).toMatchObject({ protocol: 'HTTP/2', status: 200 });
  });

  it('passes the same head-only stream over HTTP/1.1: the hold is HTTP/2 only', async () => {
    const w = await watch(`${origin}/head-only`, { ms: 2000 });
    expect(w.headMs).toBeLessThan(PROMPT_MS);
  });
});
