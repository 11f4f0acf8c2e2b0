import timeout from 'connect-timeout';
import type { ErrorRequestHandler, Express, RequestHandler } from 'express';
import { sse, SseGuardError } from '../src/index';
import { collect } from '../src/testing';
import { expressVersions } from './helpers/express';
import { listen, type TestServer } from './helpers/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const timeoutHandler = require('express-timeout-handler') as { handler(options: { timeout: number }): RequestHandler };

// Waits `ms` with no byte on the wire (heartbeats off), then sends one event and ends.
const lateEvent = (ms: number) =>
  sse(
    (stream) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          stream.send('still here');
          resolve();
        }, ms);
        stream.on('close', () => clearTimeout(timer));
      }),
    { heartbeat: false, timeoutHandler: 'disarm' },
  );

describe.each(expressVersions)('timeout guard (%s)', (_name, express) => {
  let srv: TestServer;
  const errors: unknown[] = [];
  const log: string[] = [];
  const logger = (reason: string) => log.push(reason);

  beforeAll(async () => {
    const app: Express = express();
    const ct = express.Router();
    ct.use(timeout('500ms'));
    ct.get('/refuse', sse({ logger }), (_req, res) => res.sse.send('never'));
    ct.get('/disarm', lateEvent(1500));
    app.use('/ct', ct);

    const eth = express.Router();
    eth.use(timeoutHandler.handler({ timeout: 500 }));
    eth.get('/refuse', sse({ logger }), (_req, res) => res.sse.send('never'));
    eth.get('/disarm', lateEvent(1500));
    app.use('/eth', eth);

    app.get('/server-timeout', lateEvent(1500));
    const onError: ErrorRequestHandler = (err, _req, res, _next) => {
      errors.push(err);
      res.status(err.status ?? 500).json({ code: err.code });
    };
    app.use(onError);
    srv = await listen(app);
  });
  afterAll(() => srv.close());
  beforeEach(() => {
    errors.length = 0;
    log.length = 0;
  });

  it.each([
    ['/ct/refuse', 'connect-timeout'],
    ['/eth/refuse', 'express-timeout-handler'],
  ])('refuses by default at %s (%s): next(err) before any byte of the stream', async (path, middleware) => {
    const result = await collect(srv.url + path, { timeout: 1000 });
    expect(result.status).toBe(500);
    expect(result.headers['content-type']).toMatch(/^application\/json/);
    expect(result.events).toEqual([]);
    expect(errors).toHaveLength(1);
    const err = errors[0] as SseGuardError;
    expect(err).toBeInstanceOf(SseGuardError);
    expect(err.code).toBe('ERR_SSE_TIMEOUT_HANDLER');
    expect(err.status).toBe(500);
    // The message names what was found and both fixes.
    expect(err.message).toContain(middleware);
    expect(err.message).toContain("timeoutHandler: 'disarm'");
    expect(err.message).toMatch(/mount the timeout middleware only on routes that are not event streams/);
    expect(log).toEqual(['timeout-refused']);
  });

  it.each(['/ct/disarm', '/eth/disarm'])("with 'disarm', the stream at %s outlives the 500 ms timeout by seconds", async (path) => {
    const result = await collect(srv.url + path, { count: 1, timeout: 4000 });
    expect(result.status).toBe(200);
    expect(result.events.map((e) => e.data)).toEqual(['still here']);
    expect(result.events[0]!.at).toBeGreaterThan(1400);
    expect(errors).toEqual([]);
  });

  it("disarms a server-wide idle timeout (server.timeout) for the stream", async () => {
    srv.server.timeout = 500;
    try {
      const result = await collect(`${srv.url}/server-timeout`, { count: 1, timeout: 4000 });
      expect(result.events.map((e) => e.data)).toEqual(['still here']);
    } finally {
      srv.server.timeout = 0;
    }
  });
});

describe('the guard decisions reach the logger', () => {
  const [, express] = expressVersions[0]!;

  async function decisions(mount: (app: Express) => void, idleTimeout = 0): Promise<Array<[string, Record<string, unknown>]>> {
    const app = express();
    const log: Array<[string, Record<string, unknown>]> = [];
    mount(app);
    app.get('/e', sse((stream) => stream.close(), { timeoutHandler: 'disarm', logger: (r, d) => log.push([r, d]) }));
    const srv = await listen(app);
    srv.server.timeout = idleTimeout;
    try {
      await collect(`${srv.url}/e`, { timeout: 1000 });
      return log;
    } finally {
      await srv.close();
    }
  }

  it.each([
    ['connect-timeout', () => timeout('5s')],
    ['express-timeout-handler', () => timeoutHandler.handler({ timeout: 5000 })],
  ])('reports timeout-disarmed naming %s', async (name, make) => {
    const log = await decisions((app) => app.use(make()));
    expect(log).toContainEqual(['timeout-disarmed', { url: '/e', middleware: [name] }]);
  });

  it('reports socket-timeout-disarmed for a server-wide idle timer, with its value', async () => {
    const log = await decisions(() => {}, 60_000);
    expect(log).toEqual([['socket-timeout-disarmed', { url: '/e', timeout: 60_000 }]]);
  });

  it('reports nothing when nothing needed guarding', async () => {
    expect(await decisions(() => {})).toEqual([]);
  });
});
