#!/usr/bin/env node
// `sse-guard doctor <url>`: samples an event stream as a browser would and says what holds it.
import { parseArgs } from 'node:util';
import { count, diagnose, ms, type Diagnosis, type Level } from './diagnose.js';
import type { DoctorResult, Sample } from './doctor.js';
import { maskUrl } from './transport.js';

const USAGE = `Usage: sse-guard doctor <url> [--duration 10s] [--json] [--header 'Name: value']...
                          [--proxy <url>] [--insecure] [--http1.1]

Connects to an event stream as a browser does, samples it, and reports what holds it back.
  --proxy <url>  go through this proxy; by default HTTPS_PROXY / HTTP_PROXY, except for NO_PROXY hosts
  --insecure     accept a certificate that cannot be verified (self-signed, private CA)
  --http1.1      speak HTTP/1.1 even where the server offers HTTP/2
Exit codes: 0 healthy, 1 problems found, 2 could not connect (or bad arguments).`;

const EXIT_CODES = { healthy: 0, problems: 1, unreachable: 2 } as const;
const LABELS: Record<Level, string> = { ok: 'ok  ', info: 'info', warn: 'WARN', fail: 'FAIL' };
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

class UsageError extends Error {}

function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  const value = match === null ? NaN : Number(match[1]) * UNITS[match[2] ?? 's']!;
  // Node's timers cannot wait longer than 2^31 - 1 ms; an hour is more than any idle limit worth checking.
  if (!(value > 0 && value <= 3_600_000)) throw new UsageError(`--duration takes a time up to 60m, such as 10s, 1500ms or 2m, got "${text}".`);
  return value;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Any control character but tab: CR or LF would split the request, the others are refused by servers.
const BAD_VALUE = /[\u0000-\u0008\u000a-\u001f\u007f]/;

function parseHeaders(lines: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (colon <= 0 || !TOKEN.test(name)) throw new UsageError(`--header takes 'Name: value' with a name of letters, digits and -, got ${JSON.stringify(line)}.`);
    if (BAD_VALUE.test(value)) throw new UsageError(`--header ${name}: the value may not contain control characters such as CR or LF, got ${JSON.stringify(value)}.`);
    headers[name] = value;
  }
  return headers;
}

function parseProxy(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (url?.protocol !== 'http:') throw new UsageError(`--proxy takes an http:// proxy URL such as http://proxy.example:3128, got "${maskUrl(text)}".`);
  return text;
}

function parseUrl(text: string | undefined): URL {
  const url = URL.canParse(text ?? '') ? new URL(text!) : undefined;
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new UsageError(`expected an http(s) URL, got ${JSON.stringify(maskUrl(text ?? ''))}.`);
  return url;
}

function progressLine(phase: 'main' | 'control', s: Readonly<Sample>): string {
  const head = s.status !== undefined ? `HTTP ${s.status} after ${ms(s.headersMs!)}` : s.connected ? 'connected, no headers yet' : 'connecting';
  const events = s.arrivals.filter((a) => a.kind === 'event').length;
  const title = phase === 'main' ? 'sampling' : 'sampling again without compression';
  const counts = [count(events, 'event'), count(s.arrivals.length - events, 'comment'), count(s.rawBytes, 'byte')];
  return `${title} ${(s.elapsedMs / 1000).toFixed(1)}/${(s.durationMs / 1000).toFixed(1)} s · ${head} · ${counts.join(' · ')}`;
}

/** Redraws one line on a terminal; elsewhere (a CI log) prints one line a second. */
function progressPrinter(): { update(phase: 'main' | 'control', s: Readonly<Sample>): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = -Infinity;
  return {
    update(phase, s) {
      const now = performance.now();
      if (now - last < (tty ? 100 : 1000)) return;
      last = now;
      process.stderr.write(tty ? `\r\x1b[K${progressLine(phase, s)}` : `${progressLine(phase, s)}\n`);
    },
    done() {
      if (tty && last !== -Infinity) process.stderr.write('\r\x1b[K');
    },
  };
}

function report(result: DoctorResult, diagnosis: Diagnosis): string {
  const sampled = (s: Sample): string => `${ms(s.elapsedMs)} with Accept-Encoding: ${s.acceptEncoding}`;
  const lines = [`sse-guard doctor ${result.url}`];
  const { proxy, protocol } = result.main;
  lines.push(`${proxy === undefined ? 'no proxy' : `through the proxy ${proxy}`}${protocol === undefined ? '' : `, ${protocol}`}`);
  if (result.main.connected) lines.push(`sampled ${sampled(result.main)}${result.control === undefined ? '' : `, then ${sampled(result.control)}`}`);
  lines.push('');
  const width = Math.max(...diagnosis.checks.map((c) => c.name.length));
  for (const check of diagnosis.checks) {
    lines.push(`  ${LABELS[check.level]}  ${check.name.padEnd(width)}  ${check.value}${check.note === undefined ? '' : ` — ${check.note}`}`);
  }
  const summary = { healthy: 'healthy: events arrive as they are written', problems: 'problems found', unreachable: 'could not connect' }[diagnosis.verdict];
  lines.push('', `Diagnosis: ${summary}${diagnosis.verdict === 'healthy' && diagnosis.findings.length > 0 ? ', with warnings' : ''}.`);
  for (const finding of diagnosis.findings) lines.push('', `  ${LABELS[finding.level]}  ${finding.problem}`, `        Fix: ${finding.fix}`);
  return lines.join('\n') + '\n';
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      duration: { type: 'string', default: '10s' },
      json: { type: 'boolean', default: false },
      header: { type: 'string', short: 'H', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h', default: false },
      proxy: { type: 'string' },
      insecure: { type: 'boolean', default: false },
      'http1.1': { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const [command, target, ...extra] = positionals;
  if (command !== 'doctor' || extra.length > 0) throw new UsageError(command === 'doctor' ? `unexpected arguments: ${extra.join(' ')}` : 'the only command is doctor.');
  const url = parseUrl(target);
  const durationMs = parseDuration(values.duration);
  const headers = parseHeaders(values.header);
  const proxy = parseProxy(values.proxy);

  // eventsource-parser is an optional peer of the package, needed by the doctor only.
  let doctor: typeof import('./doctor.js').doctor;
  try {
    ({ doctor } = await import('./doctor.js'));
  } catch (error) {
    if (!String(error).includes('eventsource-parser')) throw error;
    process.stderr.write('sse-guard doctor needs the eventsource-parser package: npm install eventsource-parser\n');
    return 2;
  }
  const progress = progressPrinter();
  const result = await doctor(url, { durationMs, headers, proxy, insecure: values.insecure, http1: values['http1.1'], onProgress: progress.update });
  progress.done();
  const diagnosis = diagnose(result);
  const exitCode = EXIT_CODES[diagnosis.verdict];
  process.stdout.write(values.json ? `${JSON.stringify({ ...diagnosis, exitCode, result }, null, 2)}\n` : report(result, diagnosis));
  return exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const usage = error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(usage ? `sse-guard: ${(error as Error).message}\n\n${USAGE}\n` : `sse-guard: ${String((error as Error).stack ?? error)}\n`);
    process.exitCode = 2;
  },
);
