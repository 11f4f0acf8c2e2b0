// A real nginx in front of the stream: its defaults and its gzip hold a hand-written stream until the
// response ends, X-Accel-Buffering: no (sent by sse()) and docs/nginx.conf release it, and the
// doctor tells these cases apart.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { createParser } from 'eventsource-parser';
import { diagnose, type Culprit } from '../src/doctor/diagnose';
import { doctor } from '../src/doctor/doctor';
import { describeWithBinary } from './helpers/binaries';
import { listen, sleep, type TestServer } from './helpers/server';
import { guardedSse, naiveSse } from './helpers/streams';

const SNIPPET = path.join(__dirname, '..', 'docs', 'nginx.conf');
// Generous: a stream nginx holds shows up after seconds, or not at all.
const PROMPT_MS = 500;

describeWithBinary('nginx', 'behind nginx', (binary) => {
  let upstream: TestServer;
  let nginx: Nginx;
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

/** Time to the first event of a GET that offers gzip, or undefined when none came within `timeoutMs`. */
function firstEvent(target: string, timeoutMs: number): Promise<{ firstEventMs?: number; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let headers: http.IncomingHttpHeaders = {};
    const done = (firstEventMs?: number): void => {
      clearTimeout(timer);
      req.destroy();
      resolve({ firstEventMs, headers });
    };
    const timer = setTimeout(done, timeoutMs);
    const parser = createParser({ onEvent: () => done(performance.now() - start) });
    const req = http.get(target, { headers: { accept: 'text/event-stream', 'accept-encoding': 'gzip' }, agent: false }, (res) => {
      headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      res.on('error', () => {});
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

interface Nginx {
  ports: number[];
  stop(): Promise<void>;
}

/** Free ports on 127.0.0.1, for a child process that cannot report which port it bound. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => listen(() => {})));
  await Promise.all(servers.map((s) => s.close()));
  return servers.map((s) => s.port);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** nginx in the foreground as one process, with its config, pid, logs and temp files in a temp folder. */
async function startNginx(binary: string, servers: (ports: number[]) => string): Promise<Nginx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-guard-nginx-'));
  const ports = await freePorts(2);
  const conf = path.join(dir, 'nginx.conf');
  const temp = (name: string): string => `${name}_temp_path "${path.join(dir, name)}";`;
  fs.writeFileSync(
    conf,
    `master_process off;
     pid "${path.join(dir, 'nginx.pid')}";
     error_log "${path.join(dir, 'error.log')}" warn;
     events { worker_connections 64; }
     http {
       access_log off;
       ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n')}
       ${servers(ports)}
     }\n`,
  );
  let stderr = '';
  const child = spawn(binary, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      // SIGTERM is nginx's fast shutdown; SIGQUIT would wait for the open streams to end.
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (let attempt = 0; attempt < 50; attempt++) {
    if (child.exitCode !== null) break;
    if ((await Promise.all(ports.map(canConnect))).every(Boolean)) return { ports, stop };
    await sleep(100);
  }
  const log = fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
  await stop();
  throw new Error(`nginx did not start: ${stderr}${log}`);
}
