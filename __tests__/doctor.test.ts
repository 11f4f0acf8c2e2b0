// `sse-guard doctor` against real setups on 127.0.0.1: it names what holds a stream, and stays quiet
// about streams that arrive as they are written. The proxy cases are in nginx.test.ts and doctor-proxies.test.ts.
import fs from 'node:fs';
import compression from 'compression';
import timeout from 'connect-timeout';
import express from 'express';
import { diagnose, type Culprit, type Diagnosis } from '../src/doctor/diagnose';
import { doctor, type DoctorResult } from '../src/doctor/doctor';
import { CLI, cli as runCli, type CliRun } from './helpers/cli';
import { listen, type TestServer } from './helpers/server';
import { guardedSse, naiveSse } from './helpers/streams';

let server: TestServer;

beforeAll(async () => {
  const app = express();
  app.get('/naive', naiveSse());
  app.get('/late', naiveSse({ delay: 1500 }));
  app.get('/timeout', timeout('1s'), naiveSse({ delay: 1500 }));
  app.use('/compressed', compression());
  app.get('/compressed/naive', naiveSse());
  app.get('/compressed/guarded', guardedSse());
  app.get('/compressed/flushed', guardedSse({ compression: 'flush' }));
  // Content-Type sent twice: a browser reads the last, and takes the stream.
  app.get('/type-twice', (_req, res) => {
    res.setHeader('Content-Type', ['text/html', 'text/event-stream']);
    res.setHeader('Cache-Control', 'no-cache');
    res.write('data: hi\n\n');
    const timer = setInterval(() => res.write('data: more\n\n'), 200);
    res.on('close', () => clearInterval(timer));
  });
  server = await listen(app);
});

afterAll(() => server?.close());

async function run(route: string, durationMs = 1500, headers?: Record<string, string>): Promise<{ result: DoctorResult; diagnosis: Diagnosis }> {
  const result = await doctor(`${server.url}${route}`, { durationMs, headers });
  return { result, diagnosis: diagnose(result) };
}

const culprits = (diagnosis: Diagnosis): Culprit[] => diagnosis.findings.map((f) => f.culprit);
const check = (diagnosis: Diagnosis, name: string) => diagnosis.checks.find((c) => c.name === name);

describe('the doctor finds what holds a stream', () => {
  it('compression gzipping a hand-written stream', async () => {
    const { diagnosis, result } = await run('/compressed/naive', 1500, { 'Accept-Encoding': 'gzip, deflate' });
    expect(diagnosis.verdict).toBe('problems');
    expect(culprits(diagnosis)).toEqual(['compression']);
    expect(check(diagnosis, 'Content-Encoding')).toMatchObject({ level: 'fail', value: 'gzip' });
    // The gzip header came through; the events stayed in zlib.
    expect(result.main.rawBytes).toBeGreaterThan(0);
    expect(result.main.firstEventMs).toBeUndefined();
    expect(result.control?.firstEventMs).toBeLessThan(500);
  });

  it('compression with br, which holds even the headers', async () => {
    const { diagnosis, result } = await run('/compressed/naive');
    expect(result.main.acceptEncoding).toBe('gzip, deflate, br');
    expect(result.main.headersMs).toBeUndefined();
    expect(diagnosis.verdict).toBe('problems');
    expect(culprits(diagnosis)).toEqual(['compression']);
    expect(diagnosis.findings[0]!.fix).toMatch(/no-transform/);
  });

  it('connect-timeout answering 503 before the route wrote anything', async () => {
    const { diagnosis, result } = await run('/timeout');
    expect(result.main.status).toBe(503);
    expect(diagnosis.verdict).toBe('problems');
    expect(culprits(diagnosis)).toEqual(['timeout-middleware']);
    expect(diagnosis.findings[0]!.problem).toMatch(/Response timeout/);
  });

  it('headers sent only with the first event, 1.5 s in', async () => {
    const { diagnosis } = await run('/late', 2500);
    expect(diagnosis.verdict).toBe('problems');
    expect(culprits(diagnosis)).toEqual(['late-headers']);
    expect(check(diagnosis, 'delivery')?.level).toBe('ok');
  });
});

describe('the doctor raises no false alarm', () => {
  it('for sse() behind compression', async () => {
    const { diagnosis, result } = await run('/compressed/guarded');
    expect(diagnosis).toMatchObject({ verdict: 'healthy', findings: [] });
    expect(diagnosis.checks.filter((c) => c.level === 'warn' || c.level === 'fail')).toEqual([]);
    expect(result.control).toBeUndefined();
    expect(check(diagnosis, 'heartbeat')?.value).toBe('every 15.0 s (server says)');
  });

  it("for sse() in compression: 'flush' mode, which only warns that the stream is compressed", async () => {
    const { diagnosis } = await run('/compressed/flushed');
    expect(diagnosis).toMatchObject({ verdict: 'healthy', findings: [] });
    expect(check(diagnosis, 'Content-Encoding')).toMatchObject({ level: 'warn', value: 'br' });
  });

  it('for a hand-written stream with nothing in front', async () => {
    const { diagnosis } = await run('/naive');
    expect(diagnosis).toMatchObject({ verdict: 'healthy', findings: [] });
  });

  it('for a stream whose Content-Type is sent twice, the last one text/event-stream (read as a browser reads it)', async () => {
    const { result, diagnosis } = await run('/type-twice', 800);
    expect(result.main.headers['content-type']).toBe('text/html, text/event-stream');
    expect(diagnosis).toMatchObject({ verdict: 'healthy', findings: [] });
  });
});

describe('npx sse-guard doctor', () => {
  const cli = (...args: string[]): Promise<CliRun> => runCli(args);

  beforeAll(() => {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first.`);
  });

  it('exits 0 for a healthy stream, with the report as JSON on stdout and progress on stderr', async () => {
    const { code, stdout, stderr } = await cli('doctor', `${server.url}/compressed/guarded`, '--json', '--duration', '2s');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ verdict: 'healthy', exitCode: 0, result: { main: { status: 200 } } });
    expect(stderr).toMatch(/sampling/);
  });

  it('exits 1 when something holds the stream', async () => {
    const { code, stdout } = await cli('doctor', `${server.url}/compressed/naive`, '--json', '--duration', '2s');
    expect(code).toBe(1);
    expect(JSON.parse(stdout)).toMatchObject({ verdict: 'problems', findings: [{ culprit: 'compression' }] });
  });

  it('exits 2 when nothing listens', async () => {
    const closed = await listen(() => {});
    await closed.close();
    const { code, stdout } = await cli('doctor', closed.url, '--json', '--duration', '2s');
    expect(code).toBe(2);
    expect(JSON.parse(stdout)).toMatchObject({ verdict: 'unreachable', findings: [{ culprit: 'connection' }] });
  });

  it('exits 2 with the usage on bad arguments', async () => {
    const { code, stderr } = await cli('doctor', 'not a url');
    expect(code).toBe(2);
    expect(stderr).toMatch(/Usage: sse-guard doctor <url>/);
  });

  it('prints a readable report without --json', async () => {
    const { code, stdout } = await cli('doctor', `${server.url}/naive`, '--duration', '1s', '--header', 'X-Test: 1');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^ {2}ok {4}Content-Type +text\/event-stream$/m);
    expect(stdout).toMatch(/Diagnosis: healthy/);
  });
});
