// sse({ probe: true }): timestamped comments for the doctor, only when it asks, and no timer left behind.
import http from 'node:http';
import express from 'express';
import { sse, SseGuardError, type CloseReason } from '../src/index';
import { parseProbe, probeComment, PROBE_HEADER, startProbe } from '../src/guards/probe';
import { listen, sleep, type TestServer } from './helpers/server';

describe('probe comments', () => {
  it('carry the server clock and heartbeat, and parse back', () => {
    expect(probeComment({ t: 1700000000000, heartbeat: 15000 })).toBe('probe t=1700000000000 heartbeat=15000');
    expect(parseProbe(' probe t=1700000000000 heartbeat=off')).toEqual({ t: 1700000000000, heartbeat: false });
    expect(parseProbe('heartbeat')).toBeUndefined();
    expect(parseProbe('probe t=soon heartbeat=1')).toBeUndefined();
  });
});

describe('startProbe', () => {
  beforeEach(() => jest.useFakeTimers({ now: 1_000 }));
  afterEach(() => jest.useRealTimers());

  const fakeStream = () => {
    const closers: Array<(reason: CloseReason) => void> = [];
    const stream = {
      comment: jest.fn(() => true),
      on(_event: 'close', listener: (reason: CloseReason) => void) {
        closers.push(listener);
        return stream;
      },
    };
    return { stream, close: () => closers.forEach((fn) => fn('client')) };
  };
  const request = (headers: http.IncomingHttpHeaders) => ({ headers }) as http.IncomingMessage;

  it('stamps at once and every 250 ms, and clears its timer on close', () => {
    const { stream, close } = fakeStream();
    startProbe(stream, request({ 'sse-guard-probe': '1' }), 15000);
    jest.advanceTimersByTime(1000);
    expect(stream.comment).toHaveBeenCalledTimes(5);
    expect(stream.comment).toHaveBeenLastCalledWith('probe t=2000 heartbeat=15000');
    close();
    expect(jest.getTimerCount()).toBe(0);
  });

  it('does nothing for a request without the header', () => {
    const { stream } = fakeStream();
    startProbe(stream, request({}), false);
    expect(stream.comment).not.toHaveBeenCalled();
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('sse({ probe })', () => {
  let server: TestServer;

  beforeAll(async () => {
    const app = express();
    app.get('/middleware', sse({ probe: true }), (_req, res) => res.sse.send('hi'));
    app.get('/handler', sse((stream) => void stream.send('hi'), { probe: true, heartbeat: false }));
    app.get('/off', sse(), (_req, res) => res.sse.send('hi'));
    server = await listen(app);
  });

  afterAll(() => server.close());

  /** The body received within `ms`, as text. */
  const read = (route: string, headers: http.OutgoingHttpHeaders, ms: number): Promise<string> =>
    new Promise((resolve, reject) => {
      let body = '';
      const req = http.get(`${server.url}${route}`, { headers, agent: false }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('error', () => {});
      });
      req.on('error', reject);
      void sleep(ms).then(() => {
        req.destroy();
        resolve(body);
      });
    });
  const stamps = (body: string): number[] => [...body.matchAll(/^: (probe .*)$/gm)].map((m) => parseProbe(m[1]!)!.t);

  it.each([
    ['middleware', '/middleware', 'heartbeat=15000'],
    ['handler', '/handler', 'heartbeat=off'],
  ])('writes a stamp every 250 ms in the %s form when the doctor asks', async (_form, route, heartbeat) => {
    const before = Date.now();
    const body = await read(route, { [PROBE_HEADER]: '1' }, 700);
    const times = stamps(body);
    expect(times.length).toBeGreaterThanOrEqual(2);
    expect(times.length).toBeLessThanOrEqual(4);
    expect(times[0]).toBeGreaterThanOrEqual(before);
    expect(body).toContain(heartbeat);
    expect(body).toContain('data: hi\n\n');
  });

  it('writes none without the header, nor when the option is off', async () => {
    expect(stamps(await read('/middleware', {}, 400))).toEqual([]);
    expect(stamps(await read('/off', { [PROBE_HEADER]: '1' }, 400))).toEqual([]);
  });

  it('must be a boolean', () => {
    expect(() => sse({ probe: 'yes' as unknown as boolean })).toThrow(SseGuardError);
    expect(() => sse({ probe: 'yes' as unknown as boolean })).toThrow(/probe must be true or false/);
  });
});
