// The doctor's judgement, without a network: samples in, verdicts and findings out.
import { diagnose, deliveryOf, needsControl, type Diagnosis } from '../src/doctor/diagnose';
import type { Arrival, Sample } from '../src/doctor/doctor';

const HEALTHY_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
  'transfer-encoding': 'chunked',
};

/** A 10 s sample of a healthy stream: one event every 250 ms. */
function sample(overrides: Partial<Sample> = {}): Sample {
  return {
    acceptEncoding: 'gzip, deflate, br',
    durationMs: 10_000,
    elapsedMs: 10_000,
    connected: true,
    loopback: true,
    status: 200,
    statusText: 'OK',
    headers: HEALTHY_HEADERS,
    connectMs: 1,
    headersMs: 3,
    firstByteMs: 3,
    firstEventMs: 3,
    rawBytes: 400,
    decodedBytes: 400,
    arrivals: events(Array.from({ length: 40 }, (_, i) => 3 + i * 250)),
    ...overrides,
  };
}

const events = (times: number[]): Arrival[] => times.map((at) => ({ at, kind: 'event' }));
const probes = (times: number[], delay: (i: number) => number): Arrival[] => times.map((at, i) => ({ at, kind: 'probe', delay: delay(i) }));
const judge = (main: Sample, control?: Sample): Diagnosis => diagnose({ url: 'http://example.test/events', main, control });
const check = (diagnosis: Diagnosis, name: string) => diagnosis.checks.find((c) => c.name === name);

describe('delivery', () => {
  it('is prompt for evenly spaced events', () => {
    expect(deliveryOf(sample()).kind).toBe('prompt');
    expect(judge(sample())).toMatchObject({ verdict: 'healthy', findings: [] });
  });

  it('is bursty when several events arrive within a few ms after a long silence', () => {
    const arrivals = events([3, 3000, 3001, 3001, 3002, 6000, 6000, 6001]);
    const diagnosis = judge(sample({ arrivals }));
    expect(deliveryOf(sample({ arrivals }))).toMatchObject({ kind: 'bursty', evidence: expect.stringMatching(/4 events and comments arrived within 2 ms after 3.0 s of silence \(2 such bursts\)/) });
    // A warning, not a failure: a server may send in batches.
    expect(diagnosis.verdict).toBe('healthy');
    expect(diagnosis.findings).toMatchObject([{ culprit: 'buffering', level: 'warn' }]);
  });

  it('is not bursty for pairs, nor for a batch written at connect', () => {
    expect(deliveryOf(sample({ arrivals: events([3, 3, 3, 3, 2000, 2001, 4000, 4001]) })).kind).toBe('prompt');
  });

  it('is held when everything arrived when the response ended', () => {
    const main = sample({ headersMs: 2999, arrivals: events([3000, 3000, 3000]), endMs: 3001, headers: { ...HEALTHY_HEADERS, server: 'nginx/1.22.1' } });
    const diagnosis = judge(main);
    expect(diagnosis.verdict).toBe('problems');
    expect(diagnosis.findings).toMatchObject([{ culprit: 'buffering', level: 'fail', problem: expect.stringMatching(/nginx\/1\.22\.1/) }]);
    // Late headers are part of the hold here, not a finding of their own.
    expect(check(diagnosis, 'time to headers')?.level).toBe('warn');
  });

  it('reads probe delays as absolute on one machine and as a spread across two', () => {
    const times = Array.from({ length: 8 }, (_, i) => 3 + i * 250);
    // A clock 5 s ahead of ours: only the spread counts.
    const remote = sample({ loopback: false, arrivals: probes(times, (i) => -5000 + (i % 2)) });
    expect(deliveryOf(remote).kind).toBe('prompt');
    expect(check(judge(remote), 'hop delay')).toMatchObject({ level: 'ok', value: expect.stringMatching(/^spread 1 ms/) });
    const held = sample({ arrivals: probes(times, (i) => 2000 - i * 250) });
    expect(deliveryOf(held)).toMatchObject({ kind: 'held', evidence: expect.stringMatching(/up to 2.0 s/) });
  });

  it('is silent when only headers came, and says when compressed bytes decode to nothing', () => {
    expect(deliveryOf(sample({ arrivals: [], rawBytes: 10, decodedBytes: 0 }))).toMatchObject({ kind: 'silent', evidence: expect.stringMatching(/10 compressed bytes/) });
  });
});

describe('the uncompressed control sample', () => {
  const compressed = sample({ headers: { ...HEALTHY_HEADERS, 'content-encoding': 'gzip' }, arrivals: [], rawBytes: 10, decodedBytes: 0 });

  it('is taken when headers never came, or when a compressed stream looks held', () => {
    expect(needsControl(sample({ status: undefined, headersMs: undefined, headers: {}, arrivals: [] }))).toBe(true);
    expect(needsControl(compressed)).toBe(true);
    expect(needsControl(sample({ headers: { ...HEALTHY_HEADERS, 'content-encoding': 'gzip' } }))).toBe(false);
    expect(needsControl(sample({ arrivals: [] }))).toBe(false);
  });

  it('blames compression when the uncompressed stream is prompt', () => {
    const diagnosis = judge(compressed, sample({ acceptEncoding: 'identity' }));
    expect(diagnosis.findings).toMatchObject([{ culprit: 'compression', level: 'fail' }]);
  });

  it('does not, when the uncompressed stream is as quiet', () => {
    const diagnosis = judge(compressed, sample({ acceptEncoding: 'identity', arrivals: [] }));
    expect(diagnosis.findings).toMatchObject([{ culprit: 'silence', level: 'warn', problem: expect.stringMatching(/with or without compression/) }]);
  });
});

describe('heartbeat', () => {
  it.each([
    [15_000, 'ok', /inside the idle limits/],
    [90_000, 'warn', /dropped by load balancers \(60 s, e\.g\. AWS ALB\)$/],
    [120_000, 'warn', /load balancers .* and CDNs/],
  ] as const)('announced every %i ms is %s', (heartbeat, level, note) => {
    expect(check(judge(sample({ heartbeat })), 'heartbeat')).toMatchObject({ level, note: expect.stringMatching(note) });
  });

  it('announced off is a warning with a finding', () => {
    const diagnosis = judge(sample({ heartbeat: false }));
    expect(diagnosis.verdict).toBe('healthy');
    expect(diagnosis.findings).toMatchObject([{ culprit: 'heartbeat', level: 'warn' }]);
  });

  it('is measured from comments, and from silences longer than an idle limit', () => {
    const comments: Arrival[] = [20_000, 40_000, 60_000].map((at) => ({ at, kind: 'comment' }));
    expect(check(judge(sample({ elapsedMs: 70_000, arrivals: comments })), 'heartbeat')).toMatchObject({ level: 'ok', value: 'every 20.0 s (comments seen)' });
    expect(check(judge(sample({ elapsedMs: 70_000, arrivals: events([3]) })), 'heartbeat')).toMatchObject({ level: 'warn', value: 'every 70.0 s (longest silence seen)' });
  });
});

describe('status and headers', () => {
  const answered = (status: number, headers: Record<string, string> = {}): Diagnosis =>
    judge(sample({ status, statusText: '', headers: { 'content-type': 'text/plain', ...headers }, arrivals: [] }));

  it.each([
    [204, {}, 'status', /stop reconnecting/],
    [401, {}, 'status', /--header 'Authorization/],
    [302, { location: '/login' }, 'status', /run it on \/login/],
    [503, { 'retry-after': '5' }, 'status', /Retry-After: 5/],
    [504, {}, 'timeout-middleware', /don't mount the timeout/i],
  ] as const)('%i is a failure that says what to do', (status, headers, culprit, fix) => {
    const diagnosis = answered(status, headers);
    expect(diagnosis.verdict).toBe('problems');
    expect(diagnosis.findings).toMatchObject([{ culprit, fix: expect.stringMatching(fix) }]);
  });

  it('fails a wrong Content-Type and a Content-Length', () => {
    const diagnosis = judge(sample({ headers: { ...HEALTHY_HEADERS, 'content-type': 'text/plain', 'content-length': '100' } }));
    expect(diagnosis.findings.map((f) => f.culprit)).toEqual(['content-type', 'content-length']);
  });

  it('warns about a missing no-cache, and only informs about a missing X-Accel-Buffering on a prompt stream', () => {
    const diagnosis = judge(sample({ headers: { 'content-type': 'text/event-stream', 'transfer-encoding': 'chunked' } }));
    expect(check(diagnosis, 'Cache-Control')?.level).toBe('warn');
    expect(check(diagnosis, 'X-Accel-Buffering')?.level).toBe('info');
    expect(diagnosis.verdict).toBe('healthy');
  });
});

it('is unreachable when no connection was made', () => {
  const diagnosis = judge(sample({ connected: false, status: undefined, headersMs: undefined, error: 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1' }));
  expect(diagnosis).toMatchObject({ verdict: 'unreachable', findings: [{ culprit: 'connection', problem: expect.stringMatching(/^Could not connect: ECONNREFUSED/) }] });
});

it('fails a stream whose connection was cut, after what it delivered', () => {
  const diagnosis = judge(sample({ error: 'the connection was cut before the response ended', elapsedMs: 332 }));
  expect(diagnosis.verdict).toBe('problems');
  // Items kept coming until the cut: a bound on the whole response, not an idle timeout.
  expect(diagnosis.findings).toMatchObject([{ culprit: 'hard-cut', problem: expect.stringMatching(/^The stream was cut 332 ms after the request \(the connection was cut before the response ended\) while it was not quiet/) }]);
});
