// The fault cases of the soak (soak/faults.ts), one behaviour per test, over real sockets: clients
// that cut, half-close or leave early, user code that ends the response, handlers that throw.
import { stats } from '../src/index';
import { cutMidWrite, faultApp, halfClose, leaveEarly, QUEUED_EVENTS, readRoute, type FaultLog } from '../soak/faults';
import { until } from '../soak/harness';
import { listen, type TestServer } from './helpers/server';

let server: TestServer;
let log: FaultLog;

beforeEach(async () => {
  const fault = faultApp();
  log = fault.log;
  server = await listen(fault.app);
});

afterEach(() => server.close());

const sendsAfterClose = (): number => log.sendAfterClose.false + log.sendAfterClose.true + log.sendAfterClose.threw.length;

describe('a socket destroyed mid-write', () => {
  test("closes its stream with reason 'client'", async () => {
    await cutMidWrite(server.port);
    await until(() => log.closes['/mid-write'].client !== undefined, 5000);
    expect(log.closes['/mid-write']).toEqual({ client: 1 });
  });

  test('leaves send() returning false, never throwing', async () => {
    await cutMidWrite(server.port);
    await until(() => sendsAfterClose() > 0, 5000);
    expect(log.sendAfterClose).toEqual({ false: 1, true: 0, threw: [] });
  });
});

describe('a client that half-closes', () => {
  test('has its socket closed by the server', async () => {
    expect(await halfClose(server.port)).toBe(true);
  });

  test("gets its stream closed with reason 'client'", async () => {
    await halfClose(server.port);
    await until(() => log.closes['/half-close'].client !== undefined, 5000);
    expect(log.closes['/half-close']).toEqual({ client: 1 });
  });
});

describe('res.end() from user code while events are queued', () => {
  test('happens with bytes still queued (the case under test)', async () => {
    await readRoute(server.url, '/end-while-queued');
    expect(log.queuedAtEnd).toEqual([expect.any(Number)]);
    expect(log.queuedAtEnd[0]).toBeGreaterThan(0);
  });

  test('then res.sse.send() returns false and does not throw ERR_STREAM_WRITE_AFTER_END', async () => {
    await readRoute(server.url, '/end-while-queued');
    expect(log.sendAfterEnd).toEqual({ false: 1, true: 0, threw: [] });
  });

  test('the client still gets every queued event, then a clean end', async () => {
    const response = await readRoute(server.url, '/end-while-queued');
    expect(response.complete).toBe(true);
    expect(response.events.map((event) => event.id)).toEqual(Array.from({ length: QUEUED_EVENTS }, (_, i) => String(i)));
  });

  test("the stream closes with reason 'server'", async () => {
    await readRoute(server.url, '/end-while-queued');
    await until(() => log.closes['/end-while-queued'].server !== undefined, 5000);
    expect(log.closes['/end-while-queued']).toEqual({ server: 1 });
  });
});

describe.each([
  ['throws', '/throw-sync', 'sync boom'],
  ['rejects', '/throw-async', 'async boom'],
] as const)('a handler that %s', (_how, route, message) => {
  test('has its response ended cleanly after what it sent', async () => {
    const response = await readRoute(server.url, route);
    expect(response.complete).toBe(true);
    expect(response.events.map((event) => event.data)).toEqual(['before']);
  });

  test("closes its stream with reason 'error'", async () => {
    await readRoute(server.url, route);
    await until(() => log.closes[route].error !== undefined, 5000);
    expect(log.closes[route]).toEqual({ error: 1 });
  });

  test("hands the error to the logger as 'handler-error'", async () => {
    await readRoute(server.url, route);
    await until(() => log.handlerErrors.length > 0, 5000);
    expect(log.handlerErrors).toEqual([message]);
  });

  test('leaves the server serving', async () => {
    await readRoute(server.url, route);
    const next = await readRoute(server.url, '/throw-sync');
    expect(next.status).toBe(200);
  });
});

describe('a client that leaves while middleware before sse() is still at work', () => {
  test("gets its stream closed with reason 'client', and none stays open", async () => {
    await leaveEarly(server.port, () => until(() => log.arrived['/late'] === 1, 5000));
    await until(() => log.closes['/late'].client !== undefined, 5000);
    expect(log.closes['/late']).toEqual({ client: 1 });
    expect(await until(() => stats().open === 0, 5000)).toBe(true);
  });
});
